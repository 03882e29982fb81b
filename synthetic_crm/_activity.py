"""Deals with their whole lifecycle, touchpoints, and daily exchange rates.

Every deal created on day ``d`` is drawn from the random stream ``(seed, d)``,
and its complete future (amount change, close, status flips, touchpoints,
late and duplicate deliveries) is decided at that moment.  Rows that belong to
a later day's file are handed to the spool; rows beyond the horizon are
dropped without affecting any random draw, which makes the output for a day
independent of how many days are generated.
"""

from __future__ import annotations

from bisect import bisect_right

from ._clock import DAY, Clock
from ._names import deal_name
from ._rand import Weighted, exp, lognormal, normal, rng_for, stochastic_round, weighted
from ._world import BASE_USD_PER_UNIT, CURRENCIES, HOME_CURRENCY, World

# Mean-one weekly pattern, Monday first.
WEEKDAY_FACTOR = (1.15, 1.2, 1.2, 1.15, 1.05, 0.65, 0.6)
# UTC hour of activity: the overlap of European and American business hours.
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11) + (11, 12, 13, 13, 12, 10, 8, 6, 4, 3, 2, 1)
HOUR = Weighted(range(24), _HOUR_WEIGHTS)

# Deal lifecycle.
P_HOME_CURRENCY = 0.85
AMOUNT_SIGMA = 1.1
AMOUNT_MIN_USD, AMOUNT_MAX_USD = 150.0, 5_000_000.0
P_NEVER_CLOSES = 0.07
CLOSE_MU, CLOSE_SIGMA = 3.04452, 0.8  # days to close: log-normal, median 21
MAX_CLOSE_DAYS = 365
P_WON = 0.25
P_AMOUNT_CHANGE = 0.07
P_WON_TO_LOST = 0.08
P_BACK_TO_WON = 0.35
P_LOST_TO_WON = 0.015
FLIP_MU, FLIP_SIGMA = 1.94591, 0.7  # days until a flip: median 7

# Touchpoints.
TOUCHPOINTS_PER_DEAL = Weighted(
    range(26),
    (15.0, 22.1, 18.7, 13.6, 7.6, 5.1, 3.4, 2.5, 2.1, 1.7, 1.7, 1.3, 1.0, 0.85, 0.7, 0.6)
    + (0.3,) * 10,
)
PARTNERS_PER_DEAL = Weighted((1, 2, 3), (50, 30, 20))
FIRST_TYPES = weighted([("referral", 40), ("deal_registration", 35), ("intro", 25)])
LATER_TYPES = weighted(
    [
        ("meeting", 35),
        ("demo", 25),
        ("co_sell", 15),
        ("intro", 10),
        ("referral", 8),
        ("deal_registration", 7),
    ]
)
EARLY_TYPES = ("referral", "deal_registration")
LOOKBACK = 30 * DAY  # touchpoints may precede the deal by up to 30 days
OPEN_WINDOW = 90 * DAY  # activity window of deals that never close
P_LATE = 0.06
LATENESS_DAYS = Weighted((1, 2, 3, 4, 5, 7, 10, 14), (40, 25, 15, 8, 5, 4, 2, 1))
P_DUPLICATE = 0.004
P_FOREIGN_PARTNER = 0.0025  # a partner of another org
P_UNKNOWN_PARTNER = 0.0025  # a partner id that does not exist

# Exchange rates: mean-reverting random walk of log(rate / base).
FX_REVERSION = 0.98
FX_DAILY_SIGMA = 0.004
FX_INITIAL_SIGMA = 0.02


def _amount(usd: float, currency: str) -> str:
    if usd < AMOUNT_MIN_USD:
        usd = AMOUNT_MIN_USD
    elif usd > AMOUNT_MAX_USD:
        usd = AMOUNT_MAX_USD
    local = usd / BASE_USD_PER_UNIT[currency]
    if currency == "JPY":
        return f"{round(local)}.00"
    return f"{local:.2f}"


def _other_org(world: World, o: int, rand) -> int:
    """Random org other than ``o`` (``o`` itself if it is the only one)."""
    n = world.n_orgs
    if n == 1:
        return o
    return (o + 1 + int(rand() * (n - 1))) % n


class DayActivity:
    """Rows produced by one day's new deals."""

    __slots__ = ("deals", "touchpoints", "created")

    def __init__(self) -> None:
        self.deals: list[tuple] = []
        self.touchpoints: list[tuple] = []
        self.created = 0


def deals_for_day(
    world: World,
    clock: Clock,
    seed: int,
    day: int,
    horizon: int,
    deals_per_day: float,
    spool,
) -> DayActivity:
    """Create the day's deals; today's rows are returned, later ones spooled.

    Items are ``(sort_seconds, id, row)``.
    """
    rng = rng_for(seed, "deals", day)
    rand = rng.random
    out = DayActivity()
    n = stochastic_round(deals_per_day * WEEKDAY_FACTOR[clock.weekday(day)], rng)
    out.created = n
    ymd = clock.date(day).replace("-", "")
    base = day * DAY
    ts = clock.ts

    deal_cum, deal_total, last_org = world.deal_cum, world.deal_cum[-1], world.n_orgs - 1
    org_ids, org_currency, org_mu = world.org_ids, world.org_currency, world.org_amount_mu
    partner_ids = world.partner_ids
    org_partner_cum, org_partner_start = world.org_partner_cum, world.org_partner_start
    hour_cum, hour_total, hour_hi = HOUR.cum, HOUR.total, HOUR.hi
    tp_cum, tp_total, tp_hi = (
        TOUCHPOINTS_PER_DEAL.cum,
        TOUCHPOINTS_PER_DEAL.total,
        TOUCHPOINTS_PER_DEAL.hi,
    )
    deals_now, tps_now = out.deals, out.touchpoints
    spool_deal = spool.adder("deals")
    spool_tp = spool.adder("touchpoints")

    def tod() -> int:
        return 3600 * bisect_right(hour_cum, rand() * hour_total, 0, hour_hi) + int(rand() * 3600)

    for i in range(n):
        o = bisect_right(deal_cum, rand() * deal_total, 0, last_org)
        org_id = org_ids[o]
        created = base + tod()
        created_ts = ts(created)
        deal_id = f"deal_{ymd}_{i + 1:06d}"
        currency = org_currency[o] if rand() < P_HOME_CURRENCY else HOME_CURRENCY.pick(rng)
        usd = exp(org_mu[o] + AMOUNT_SIGMA * normal(rng))
        amount = _amount(usd, currency)
        name = deal_name(rng)
        deals_now.append(
            (
                created,
                deal_id,
                (deal_id, org_id, name, amount, currency, "open", created_ts, "", created_ts),
            )
        )

        # --- lifecycle: (day offset, status, amount) of every later version ---
        if rand() < P_NEVER_CLOSES:
            close_after = 0
        else:
            close_after = round(lognormal(rng, CLOSE_MU, CLOSE_SIGMA))
            close_after = 1 if close_after < 1 else min(close_after, MAX_CLOSE_DAYS)
        won = rand() < P_WON
        versions: list[tuple[int, str, str]] = []
        if rand() < P_AMOUNT_CHANGE:
            span = close_after - 1 if close_after else 60
            if span >= 1:
                amount = _amount(usd * (0.5 + rand()), currency)
                versions.append((1 + int(rand() * span), "open", amount))
        if close_after:
            status = "won" if won else "lost"
            versions.append((close_after, status, amount))
            k = close_after
            if won and rand() < P_WON_TO_LOST:
                k += max(1, round(lognormal(rng, FLIP_MU, FLIP_SIGMA)))
                versions.append((k, "lost", amount))
                if rand() < P_BACK_TO_WON:
                    k += max(1, round(lognormal(rng, FLIP_MU, FLIP_SIGMA)))
                    versions.append((k, "won", amount))
            elif not won and rand() < P_LOST_TO_WON:
                k += max(1, round(lognormal(rng, FLIP_MU, FLIP_SIGMA)))
                versions.append((k, "won", amount))
        close_secs = 0
        for k, status, amt in versions:
            secs = base + k * DAY + tod()
            if status != "open" and not close_secs:
                close_secs = secs
            if day + k < horizon:
                t = ts(secs)
                closed_ts = "" if status == "open" else t
                row = (deal_id, org_id, name, amt, currency, status, created_ts, closed_ts, t)
                spool_deal(day + k, (secs, deal_id, row))

        # --- touchpoints ---
        n_tp = bisect_right(tp_cum, rand() * tp_total, 0, tp_hi)
        if not n_tp:
            continue
        lo = created - LOOKBACK
        hi = close_secs if close_secs else created + OPEN_WINDOW
        cum = org_partner_cum[o]
        first_partner, cum_total, cum_hi = org_partner_start[o], cum[-1], len(cum) - 1
        involved = [
            first_partner + bisect_right(cum, rand() * cum_total, 0, cum_hi)
            for _ in range(PARTNERS_PER_DEAL.pick(rng))
        ]
        for j in range(n_tp):
            tp_type = FIRST_TYPES.pick(rng) if j == 0 else LATER_TYPES.pick(rng)
            if tp_type in EARLY_TYPES:
                u = rand()
                if rand() < 0.85:  # shortly before the deal was created
                    occurred = created - int(u * u * 14 * DAY)
                else:
                    occurred = created + int(u * 2 * DAY)
            elif rand() < 0.25:
                occurred = lo + int(rand() * (created - lo))
            else:
                occurred = created + int(rand() * (hi - created))
            if occurred > hi:
                occurred = hi
            r = rand()
            if r < P_FOREIGN_PARTNER:
                other = _other_org(world, o, rand)
                c = org_partner_cum[other]
                p = org_partner_start[other] + int(rand() * len(c))
                partner_id = partner_ids[p]
            elif r < P_FOREIGN_PARTNER + P_UNKNOWN_PARTNER:
                partner_id = f"ptn_9{int(rand() * 1_000_000):06d}"
            else:
                partner_id = partner_ids[involved[int(rand() * len(involved))]]
            occurred_day = occurred // DAY
            if occurred_day < day:  # known before the deal: arrives with it
                file_day = day
            else:
                file_day = occurred_day
                if rand() < P_LATE:
                    file_day += LATENESS_DAYS.pick(rng)
            duplicate_day = file_day + 1 + int(rand() * 5) if rand() < P_DUPLICATE else 0
            if file_day >= horizon:
                continue
            tp_id = f"tp_{ymd}_{i + 1:06d}_{j + 1:02d}"
            item = (occurred, tp_id, (tp_id, org_id, deal_id, partner_id, tp_type, ts(occurred)))
            if file_day == day:
                tps_now.append(item)
            else:
                spool_tp(file_day, item)
            if duplicate_day and duplicate_day < horizon:
                spool_tp(duplicate_day, item)
    return out


class FxWalk:
    """Daily USD value of each non-USD currency; advance with ``step`` in day order."""

    currencies = tuple(c for c in CURRENCIES if c != "USD")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.day = -1
        self.log_dev = [0.0] * len(self.currencies)

    def step(self) -> None:
        self.day += 1
        rng = rng_for(self.seed, "fx", self.day)
        if self.day == 0:
            self.log_dev = [FX_INITIAL_SIGMA * normal(rng) for _ in self.currencies]
        else:
            self.log_dev = [FX_REVERSION * x + FX_DAILY_SIGMA * normal(rng) for x in self.log_dev]

    def rows(self, clock: Clock) -> list[tuple[str, str, str]]:
        rate_date = clock.date(self.day)
        out = []
        for currency, x in zip(self.currencies, self.log_dev, strict=True):
            rate = BASE_USD_PER_UNIT[currency] * exp(x)
            out.append((currency, rate_date, f"{rate:.6f}" if rate >= 0.01 else f"{rate:.8f}"))
        return out
