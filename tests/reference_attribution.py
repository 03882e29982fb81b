"""Pure-Python reference implementation of partner revenue attribution.

This is the oracle the SQL (dbt) models are tested against. It favours clarity
over speed: datasets are small (a few thousand rows at most), every rule is a
few plain lines, and nothing here needs a database (except `from_database`,
which only reads the raw tables into a `RawData`).

The rules, numbered as in the specification:

1. Current state. A record's current version is the one with the greatest
   `updated_at`; ties go to the version loaded last (greatest
   `(batch_id, line_no)`). Keys: organizations `org_id`, partners `partner_id`,
   deals `deal_id`. Touchpoints are events: for a repeated `touchpoint_id` the
   row loaded last wins, whatever its `occurred_at`. fx_rates: key
   `(currency, rate_date)`, the row loaded last wins.
2. Eligible touchpoints of a closed deal (status won/lost with a `closed_at`):
   current touchpoints with the deal's `deal_id` and `org_id`, whose partner is
   a current partner of the deal's org, with
   `closed_at - lookback <= occurred_at <= closed_at`; ordered by
   `(occurred_at, touchpoint_id)`. Only won deals are attributed.
3. Credit models (see `model_credits`); a partner's credit on a deal is the sum
   over its eligible touchpoints, and only partners with credit > 0 get a row.
   W-shaped's milestones are positions 1, n and the creation touch: the last
   eligible touchpoint with `occurred_at <= created_at`, else position 1
   (`creation_position`). Data-driven credits are each touchpoint's channel
   weight (rule 11) over the sum of the deal's, or linear when the deal falls
   back.
4. Currency: `amount * usd_per_unit` of the latest rate dated on or before the
   reference date (UTC date of `closed_at`, or of `created_at` for open deals);
   USD is always 1; no rate means `amount_usd` is None and no attribution rows.
5. Attribution rows, keyed `(deal_id, partner_id, attribution_model)`.
6. Sourcing partner: partner of the earliest referral / deal registration of
   the deal (same org, partner of the org) that happened no later than 24 hours
   after the deal was created.
7. Per-deal facts.
8. Per-partner performance: a partner *touched* a deal when one of its current
   touchpoints, recorded in the partner's org, is on a current deal of that org
   (whatever its date); won/lost counts, win rate, sourced and influenced
   revenue, attributed revenue per model, first and last touch.
9. Organizations: active partners (current partners of the org with status
   `active`) and the size tier.
10. Numbers for people (docs/contract.md §5.7): USD amounts in cents, halves
   away from zero; per deal and model the partners' amounts are the deal's
   cents split by largest remainder (each partner's exact share rounded down,
   the cents left over one each to the largest remainders, ties to the smaller
   partner_id); credits and rates rounded to 10 decimals.
11. Data-driven weights, per organization and UTC month M in which it has a
   won deal with eligible touchpoints. Training paths: the org's won and lost
   deals closed in [start of M - 12 months, start of M) with >= 1 eligible
   touchpoint (relative to their own close); a path is their touchpoint types
   in rule 2 order, a repeat of the previous type collapsed; won converts,
   lost does not. The month falls back to linear, in this order, with fewer
   than `min_paths` paths, with no won path, with more than `max_channels`
   channels; otherwise `markov_chain` gives each channel's removal effect RE
   and weight RE / sum(RE), stored rounded to 10 decimals (from the exact
   values). A won deal closed in M credits touchpoint i with w10(type_i) /
   sum_j w10(type_j) (a channel outside the training paths weighs 0), and
   falls back to linear when that sum is 0.

Credits are exact fractions (`Fraction`): the contract defines them as
fractions, and only exact shares make the largest-remainder ties of rule 10
well defined. Time-decay weights are floats (0.5^x is irrational), each taken
as the exact fraction it is before they are summed and divided, so equal
weights still give equal credits. The Markov chain is solved over exact
fractions too, from its definition (one linear system per removed channel),
not with the shortcut the SQL solver takes, so the two check each other.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

MODELS = (
    "first_touch",
    "last_touch",
    "linear",
    "time_decay",
    "position_based",
    "w_shaped",
    "data_driven",
)

DEFAULT_LOOKBACK_DAYS = 365
DEFAULT_HALF_LIFE_DAYS = 7.0
# Rule 11: the dbt vars data_driven_min_paths and data_driven_max_channels.
DEFAULT_MIN_PATHS = 20
DEFAULT_MAX_CHANNELS = 32
# Rule 11: months of closed deals that train the weights of the month after them.
TRAINING_MONTHS = 12

# Touchpoint types that can make a partner the source of a deal (rule 6).
SOURCING_TYPES = frozenset({"referral", "deal_registration"})
# A sourcing touchpoint may come at most this long after the deal was created.
SOURCING_WINDOW = timedelta(hours=24)

SECONDS_PER_DAY = 86400

# Rule 10: decimals kept for money (cents) and for credits and rates.
MONEY_PLACES = 2
CREDIT_PLACES = 10

Row = dict[str, Any]


@dataclass(frozen=True)
class RawData:
    """Rows of the five raw tables, each a dict with `batch_id` and `line_no`."""

    organizations: list[Row]
    partners: list[Row]
    deals: list[Row]
    touchpoints: list[Row]
    fx_rates: list[Row]


# --------------------------------------------------------------------------
# Rule 1: current versions
# --------------------------------------------------------------------------


def load_order(row: Row) -> tuple[int, int]:
    """Position of a row in the load: a greater value was loaded later."""
    return (row["batch_id"], row["line_no"])


def version_order(row: Row) -> tuple[datetime, int, int]:
    """Greatest `updated_at` wins; ties go to the row loaded last."""
    return (row["updated_at"], row["batch_id"], row["line_no"])


def _keep_greatest(
    rows: Iterable[Row],
    key: Callable[[Row], Hashable],
    order: Callable[[Row], Any],
) -> list[Row]:
    """One row per key: the row with the greatest `order`, sorted by key."""
    best: dict[Hashable, Row] = {}
    for row in rows:
        k = key(row)
        if k not in best or order(row) > order(best[k]):
            best[k] = row
    return [best[k] for k in sorted(best)]


def current_versions(data: RawData) -> RawData:
    """Apply rule 1: exactly one row per key (the current version)."""
    return RawData(
        organizations=_keep_greatest(data.organizations, lambda r: r["org_id"], version_order),
        partners=_keep_greatest(data.partners, lambda r: r["partner_id"], version_order),
        deals=_keep_greatest(data.deals, lambda r: r["deal_id"], version_order),
        touchpoints=_keep_greatest(data.touchpoints, lambda r: r["touchpoint_id"], load_order),
        fx_rates=_keep_greatest(
            data.fx_rates, lambda r: (r["currency"], r["rate_date"]), load_order
        ),
    )


# --------------------------------------------------------------------------
# Rule 3: credit models
# --------------------------------------------------------------------------


def model_credits(
    model: str,
    ages_days: list[float],
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    creation_position: int = 1,
    channel_weights: Sequence[Fraction | Decimal] | None = None,
) -> list[Fraction]:
    """Credit of each eligible touchpoint, in order (oldest first), as exact fractions.

    `ages_days[i]` is the age of the i-th touchpoint at close, in fractional
    days; only `time_decay` uses the ages, the other models only their count.
    `creation_position` (1-based, see `creation_position`) is W-shaped's
    creation touch. `channel_weights[i]` is the data-driven weight of the i-th
    touchpoint's channel; None (the deal falls back) or weights summing to 0
    give linear credits. The credits of a non-empty list sum to exactly 1.
    """
    if model not in MODELS:
        raise ValueError(f"unknown attribution model {model!r}; expected one of {MODELS}")
    n = len(ages_days)
    if n == 0:
        return []
    zero, one = Fraction(0), Fraction(1)
    if model == "first_touch":
        return [one] + [zero] * (n - 1)
    if model == "last_touch":
        return [zero] * (n - 1) + [one]
    if model == "linear":
        return [Fraction(1, n)] * n
    if model == "position_based":
        if n == 1:
            return [one]
        if n == 2:
            return [Fraction(1, 2)] * 2
        end, middle = Fraction(2, 5), Fraction(1, 5) / (n - 2)
        return [end] + [middle] * (n - 2) + [end]
    if model == "w_shaped":
        if not 1 <= creation_position <= n:
            raise ValueError(f"creation_position must be in 1..{n}, got {creation_position!r}")
        milestones = {1, creation_position, n}
        others = n - len(milestones)
        if others == 0:
            return [Fraction(1, n)] * n
        return [
            Fraction(9, 10 * len(milestones)) if i in milestones else Fraction(1, 10 * others)
            for i in range(1, n + 1)
        ]
    if model == "data_driven":
        if channel_weights is None:
            return model_credits("linear", ages_days)
        if len(channel_weights) != n or any(w < 0 for w in channel_weights):
            raise ValueError(f"need {n} channel weights >= 0, got {channel_weights!r}")
        weights = [Fraction(w) for w in channel_weights]
        total = sum(weights, Fraction(0))
        if total == 0:
            return model_credits("linear", ages_days)
        return [w / total for w in weights]
    # time_decay: w_i = 0.5 ** (age_i / H), c_i = w_i / sum(w).
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days!r}")
    # Measuring ages from the youngest touchpoint multiplies every weight by the
    # same factor, which the normalisation cancels; it only keeps the largest
    # weight at 1 so that very old touchpoints cannot underflow the sum to 0.
    youngest = min(ages_days)
    weights = [Fraction(0.5 ** ((age - youngest) / half_life_days)) for age in ages_days]
    total = sum(weights, Fraction(0))
    return [w / total for w in weights]


def creation_position(occurred_at: Sequence[datetime], created_at: datetime) -> int:
    """W-shaped's creation touch among touchpoints in rule 2 order (1-based): the
    last one that occurred at or before the deal's creation, else the first."""
    before = [i for i, moment in enumerate(occurred_at, start=1) if moment <= created_at]
    return before[-1] if before else 1


def age_in_days(occurred_at: datetime, closed_at: datetime) -> float:
    """`closed_at - occurred_at` in fractional days (seconds / 86400)."""
    return (closed_at - occurred_at).total_seconds() / SECONDS_PER_DAY


# --------------------------------------------------------------------------
# Rule 10: numbers for people
# --------------------------------------------------------------------------


def round_half_away(value: Fraction | Decimal | int, places: int) -> Decimal:
    """`value` rounded to `places` decimals, halves away from zero."""
    exact = Fraction(value)
    units = math.floor(abs(exact) * 10**places + Fraction(1, 2))
    return Decimal(units if exact >= 0 else -units).scaleb(-places)


def cents(value: Fraction | Decimal | int) -> Decimal:
    """A USD amount as the marts show it: rounded to cents."""
    return round_half_away(value, MONEY_PLACES)


def shown_ratio(value: Fraction) -> Decimal:
    """A credit or a rate as the marts show it: rounded to 10 decimals."""
    return round_half_away(value, CREDIT_PLACES)


def largest_remainder(total_cents: int, shares: dict[str, Fraction]) -> dict[str, int]:
    """`total_cents` split by key: each key's exact share (the shares add up to
    `total_cents`) rounded down, then the cents left over one each to the keys
    with the largest remainders, ties to the smaller key."""
    floors = {key: math.floor(share) for key, share in shares.items()}
    leftover = total_cents - sum(floors.values())
    # Exact shares that add up to the total leave fewer cents than keys.
    assert 0 <= leftover < len(shares), (total_cents, shares)
    by_remainder = sorted(shares, key=lambda key: (-(shares[key] - floors[key]), key))
    for key in by_remainder[:leftover]:
        floors[key] += 1
    return floors


# --------------------------------------------------------------------------
# The current state, indexed for the rules below
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    deals: list[Row]
    partners_by_id: dict[str, Row]
    touchpoints_by_deal: dict[str, list[Row]]
    fx_by_currency: dict[str, list[Row]]

    @classmethod
    def of(cls, data: RawData) -> _State:
        current = current_versions(data)
        touchpoints_by_deal: dict[str, list[Row]] = defaultdict(list)
        for tp in current.touchpoints:
            touchpoints_by_deal[tp["deal_id"]].append(tp)
        fx_by_currency: dict[str, list[Row]] = defaultdict(list)
        for rate in current.fx_rates:
            fx_by_currency[rate["currency"]].append(rate)
        return cls(
            deals=current.deals,
            partners_by_id={p["partner_id"]: p for p in current.partners},
            touchpoints_by_deal=dict(touchpoints_by_deal),
            fx_by_currency=dict(fx_by_currency),
        )

    def is_partner_of_org(self, partner_id: str, org_id: str) -> bool:
        """A known (current) partner whose org is `org_id`; status is not considered."""
        partner = self.partners_by_id.get(partner_id)
        return partner is not None and partner["org_id"] == org_id

    def touchpoints_of(self, deal: Row) -> list[Row]:
        """Current touchpoints of the deal, in its org, by a partner of its org."""
        return [
            tp
            for tp in self.touchpoints_by_deal.get(deal["deal_id"], [])
            if tp["org_id"] == deal["org_id"]
            and self.is_partner_of_org(tp["partner_id"], deal["org_id"])
        ]


def _touch_order(tp: Row) -> tuple[datetime, str]:
    return (tp["occurred_at"], tp["touchpoint_id"])


# --------------------------------------------------------------------------
# Rule 2: eligible touchpoints
# --------------------------------------------------------------------------


def is_closed(deal: Row) -> bool:
    """Won or lost, with a close time (the deals that have eligible touchpoints)."""
    return deal["status"] in ("won", "lost") and deal["closed_at"] is not None


def _eligible_touchpoints(state: _State, deal: Row, lookback_days: int) -> list[Row]:
    if not is_closed(deal):
        return []
    closed_at = deal["closed_at"]
    window_start = closed_at - timedelta(days=lookback_days)
    eligible = [
        tp for tp in state.touchpoints_of(deal) if window_start <= tp["occurred_at"] <= closed_at
    ]
    return sorted(eligible, key=_touch_order)


# --------------------------------------------------------------------------
# Rule 11: data-driven weights
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainResult:
    """The first-order Markov chain of a set of paths, solved exactly.

    `conversion_probability`: P, from the start state. `removal_effects[c]`:
    RE(c) = 1 - P_-c / P. `weights[c]`: RE(c) / sum(RE). With P = 0 every
    removal effect and weight is 0 (the deals fall back to linear).
    """

    conversion_probability: Fraction
    removal_effects: dict[str, Fraction]
    weights: dict[str, Fraction]


def collapse(channels: Sequence[str]) -> tuple[str, ...]:
    """A path's channels with a repeat of the previous channel dropped."""
    return tuple(c for i, c in enumerate(channels) if i == 0 or channels[i - 1] != c)


@dataclass(frozen=True)
class _ChainCounts:
    """Steps seen in the paths: start -> c, a -> b, c -> conversion, c -> null."""

    starts: Counter[str]
    transitions: Counter[tuple[str, str]]
    converted: Counter[str]
    lost: Counter[str]

    @property
    def channels(self) -> list[str]:
        return sorted(set(self.starts) | {b for _, b in self.transitions})

    def leaving(self, channel: str) -> int:
        """Every step out of `channel`: to another channel or to an end."""
        moves = sum(n for (a, _), n in self.transitions.items() if a == channel)
        return moves + self.converted[channel] + self.lost[channel]


def _solve(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """x with matrix . x = rhs, by Gaussian elimination over exact fractions."""
    size = len(rhs)
    rows = [[*row, b] for row, b in zip(matrix, rhs, strict=True)]
    for col in range(size):
        pivot = next((r for r in range(col, size) if rows[r][col] != 0), None)
        if pivot is None:
            raise ValueError("singular chain: a channel never reaches conversion or null")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(size):
            factor = rows[r][col] / rows[col][col]
            if r != col and factor != 0:
                rows[r] = [x - factor * y for x, y in zip(rows[r], rows[col], strict=True)]
    return [rows[i][size] / rows[i][i] for i in range(size)]


def _conversion_probability(counts: _ChainCounts, removed: str | None = None) -> Fraction:
    """P from the start state; with `removed`, every step into that channel
    (from start or from another channel) is sent to null instead.

    x_a, the probability of converting from channel a, solves
    x_a = conv(a) / out(a) + sum_b count(a -> b) / out(a) * x_b over the kept
    channels b; P = sum_a starts(a) / all starts * x_a.
    """
    kept = [c for c in counts.channels if c != removed]
    index = {c: i for i, c in enumerate(kept)}
    out = {c: counts.leaving(c) for c in kept}
    matrix = [[Fraction(int(i == j)) for j in range(len(kept))] for i in range(len(kept))]
    for (a, b), n in counts.transitions.items():
        if a in index and b in index:
            matrix[index[a]][index[b]] -= Fraction(n, out[a])
    x = _solve(matrix, [Fraction(counts.converted[c], out[c]) for c in kept])
    total_starts = sum(counts.starts.values())
    return sum((Fraction(counts.starts[c], total_starts) * x[index[c]] for c in kept), Fraction(0))


def markov_chain(paths: Iterable[tuple[Sequence[str], bool]]) -> ChainResult:
    """Removal effects and weights of the channels of `paths`: (channels in
    order, converted?) pairs. Each path is collapsed here (a repeat of the
    previous channel counts once), so callers may pass raw or collapsed paths.

    States start, one per channel, conversion and null; P(a -> b) = count(a -> b)
    / every step out of a. P and each P_-c are solved from the chain's linear
    equations, one system each (docs/contract.md §4.7, from the definition).
    """
    counts = _ChainCounts(Counter(), Counter(), Counter(), Counter())
    for channels, converted in paths:
        path = collapse(channels)
        if not path:
            raise ValueError("a training path needs at least one channel")
        counts.starts[path[0]] += 1
        counts.transitions.update(pairwise(path))
        (counts.converted if converted else counts.lost)[path[-1]] += 1
    channels = counts.channels
    probability = _conversion_probability(counts) if channels else Fraction(0)
    if probability == 0:
        zeros = {c: Fraction(0) for c in channels}
        return ChainResult(probability, zeros, dict(zeros))
    effects = {c: 1 - _conversion_probability(counts, c) / probability for c in channels}
    total = sum(effects.values(), Fraction(0))
    # P > 0: some path converts, and removing its first channel loses it.
    assert total > 0, effects
    return ChainResult(probability, effects, {c: e / total for c, e in effects.items()})


FEWER_PATHS = "fewer than {min_paths} training paths"
NO_WON_DEAL = "no won deal in the training window"
TOO_MANY_CHANNELS = "more than {max_channels} channels in the training window"
CHANNELS_WEIGH_ZERO = "its channels weigh 0 in its month"


@dataclass(frozen=True)
class Training:
    """One (organization, month)'s training set and what it gives (rule 11).

    `paths[c]` / `conversions[c]`: training paths through channel c / those won.
    `chain` is None when the month falls back (`fallback_reason`).
    """

    training_paths: int
    training_conversions: int
    paths: dict[str, int]
    conversions: dict[str, int]
    fallback_reason: str | None
    chain: ChainResult | None

    def stored(self) -> dict[str, tuple[Decimal, Decimal]]:
        """{channel: (removal_effect, weight)} as stored, rounded to 10 decimals
        from the exact values; empty when the month falls back."""
        if self.chain is None:
            return {}
        return {
            c: (shown_ratio(effect), shown_ratio(self.chain.weights[c]))
            for c, effect in self.chain.removal_effects.items()
        }


def train(
    paths: Sequence[tuple[Sequence[str], bool]],
    min_paths: int = DEFAULT_MIN_PATHS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> Training:
    """A month's training set (its (channels, won?) paths) assessed: the first
    fallback reason that applies, in rule 11's order, else the solved chain."""
    collapsed = [(collapse(channels), won) for channels, won in paths]
    through: Counter[str] = Counter()
    won_through: Counter[str] = Counter()
    for path, won in collapsed:
        through.update(set(path))
        if won:
            won_through.update(set(path))
    conversions = sum(1 for _, won in collapsed if won)
    reason = None
    if len(collapsed) < min_paths:
        reason = FEWER_PATHS.format(min_paths=min_paths)
    elif conversions == 0:
        reason = NO_WON_DEAL
    elif len(through) > max_channels:
        reason = TOO_MANY_CHANNELS.format(max_channels=max_channels)
    return Training(
        training_paths=len(collapsed),
        training_conversions=conversions,
        paths=dict(through),
        conversions={c: won_through[c] for c in through},
        fallback_reason=reason,
        chain=markov_chain(collapsed) if reason is None else None,
    )


def month_of(moment: datetime) -> date:
    """First day of the UTC month of `moment`."""
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def add_months(month: date, months: int) -> date:
    """The first day of the month `months` after (or before) `month`."""
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _trainings(
    state: _State, lookback_days: int, min_paths: int, max_channels: int
) -> dict[tuple[str, date], Training]:
    """Rule 11 for every (organization, month) with a won deal to credit."""
    paths: dict[tuple[str, date], list[tuple[tuple[str, ...], bool]]] = defaultdict(list)
    credited: set[tuple[str, date]] = set()
    for deal in state.deals:
        eligible = _eligible_touchpoints(state, deal, lookback_days)
        if not eligible:
            continue
        key = (deal["org_id"], month_of(deal["closed_at"]))
        won = deal["status"] == "won"
        paths[key].append((tuple(tp["touchpoint_type"] for tp in eligible), won))
        if won:
            credited.add(key)
    return {
        (org, month): train(
            [
                path
                for back in range(1, TRAINING_MONTHS + 1)
                for path in paths.get((org, add_months(month, -back)), [])
            ],
            min_paths,
            max_channels,
        )
        for org, month in sorted(credited)
    }


def _deal_channel_weights(
    trainings: dict[tuple[str, date], Training], deal: Row, eligible: list[Row]
) -> tuple[list[Decimal] | None, str | None]:
    """A won deal's stored channel weights per eligible touchpoint, or why it falls back."""
    training = trainings[(deal["org_id"], month_of(deal["closed_at"]))]
    if training.fallback_reason is not None:
        return None, training.fallback_reason
    stored = training.stored()
    weights = [stored.get(tp["touchpoint_type"], (0, Decimal(0)))[1] for tp in eligible]
    if sum(weights) == 0:
        return None, CHANNELS_WEIGH_ZERO
    return weights, None


def expected_channel_weights(
    data: RawData,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    min_paths: int = DEFAULT_MIN_PATHS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> dict[tuple[str, date, str], dict]:
    """The weights in use (marts.attribution_channel_weights), keyed by
    `(org_id, month, channel)`: paths, conversions, removal_effect and weight
    (Decimals of 10 decimals). Months that fall back have no rows."""
    trainings = _trainings(_State.of(data), lookback_days, min_paths, max_channels)
    rows: dict[tuple[str, date, str], dict] = {}
    for (org, month), training in trainings.items():
        for channel, (effect, weight) in training.stored().items():
            rows[(org, month, channel)] = {
                "paths": training.paths[channel],
                "conversions": training.conversions[channel],
                "removal_effect": effect,
                "weight": weight,
            }
    return rows


# --------------------------------------------------------------------------
# Rule 4: currency
# --------------------------------------------------------------------------


def reference_date(deal: Row) -> date:
    """UTC date of `closed_at` for closed deals, of `created_at` otherwise."""
    moment = deal["closed_at"] if is_closed(deal) else deal["created_at"]
    return moment.astimezone(UTC).date()


def _amount_usd(state: _State, deal: Row) -> Decimal | None:
    if deal["currency"] == "USD":
        return deal["amount"]
    on_date = reference_date(deal)
    candidates = [
        r for r in state.fx_by_currency.get(deal["currency"], []) if r["rate_date"] <= on_date
    ]
    if not candidates:
        return None
    latest = max(candidates, key=lambda r: r["rate_date"])
    return deal["amount"] * latest["usd_per_unit"]


def _amount_usd_cents(state: _State, deal: Row) -> Decimal | None:
    """The USD amount as the marts show it (rule 10)."""
    amount_usd = _amount_usd(state, deal)
    return None if amount_usd is None else cents(amount_usd)


# --------------------------------------------------------------------------
# Rule 6: sourcing
# --------------------------------------------------------------------------


def _sourcing_touchpoint(state: _State, deal: Row) -> Row | None:
    deadline = deal["created_at"] + SOURCING_WINDOW
    candidates = [
        tp
        for tp in state.touchpoints_of(deal)
        if tp["touchpoint_type"] in SOURCING_TYPES and tp["occurred_at"] <= deadline
    ]
    return min(candidates, key=_touch_order, default=None)


# --------------------------------------------------------------------------
# Rules 3 and 5: attribution rows
# --------------------------------------------------------------------------


def expected_attribution(
    data: RawData,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    min_paths: int = DEFAULT_MIN_PATHS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> dict[tuple[str, str, str], dict]:
    """Attribution rows keyed by `(deal_id, partner_id, attribution_model)`.

    Each value: org_id, credit (Decimal, 10 decimals), attributed_amount_usd
    (Decimal cents, the deal's cents split by largest remainder), deal_amount_usd
    (Decimal cents), closed_at, touchpoint_count.
    """
    state = _State.of(data)
    trainings = _trainings(state, lookback_days, min_paths, max_channels)
    rows: dict[tuple[str, str, str], dict] = {}
    for deal in state.deals:
        if deal["status"] != "won":
            continue
        amount_usd = _amount_usd(state, deal)
        if amount_usd is None:
            continue
        eligible = _eligible_touchpoints(state, deal, lookback_days)
        if not eligible:
            continue
        closed_at = deal["closed_at"]
        ages = [age_in_days(tp["occurred_at"], closed_at) for tp in eligible]
        creation = creation_position([tp["occurred_at"] for tp in eligible], deal["created_at"])
        channel_weights, _ = _deal_channel_weights(trainings, deal, eligible)
        touchpoint_count: dict[str, int] = defaultdict(int)
        for tp in eligible:
            touchpoint_count[tp["partner_id"]] += 1
        deal_cents = cents(amount_usd)
        total_cents = int(deal_cents * 100)
        for model in MODELS:
            credit_of: dict[str, Fraction] = defaultdict(Fraction)
            credits = model_credits(model, ages, half_life_days, creation, channel_weights)
            for tp, c in zip(eligible, credits, strict=True):
                credit_of[tp["partner_id"]] += c
            credited = {p: c for p, c in credit_of.items() if c > 0}
            split = largest_remainder(
                total_cents, {p: c * total_cents for p, c in credited.items()}
            )
            for partner_id, credit in credited.items():
                rows[(deal["deal_id"], partner_id, model)] = {
                    "org_id": deal["org_id"],
                    "credit": shown_ratio(credit),
                    "attributed_amount_usd": Decimal(split[partner_id]).scaleb(-MONEY_PLACES),
                    "deal_amount_usd": deal_cents,
                    "closed_at": closed_at,
                    "touchpoint_count": touchpoint_count[partner_id],
                }
    return rows


# --------------------------------------------------------------------------
# Rule 7: per-deal facts
# --------------------------------------------------------------------------


def spreadsheet_safe(text: str | None) -> str | None:
    """Display text as the marts show it: a leading quote before =, +, -, @, tab or CR."""
    if text and text.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + text
    return text


def expected_deals(
    data: RawData,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    min_paths: int = DEFAULT_MIN_PATHS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> dict[str, dict]:
    """One row of facts per current deal (any status), keyed by deal_id.

    `data_driven_fallback` (and its reason) is None unless the deal is won with
    eligible touchpoints, whatever its USD amount (rule 11)."""
    state = _State.of(data)
    trainings = _trainings(state, lookback_days, min_paths, max_channels)
    facts: dict[str, dict] = {}
    for deal in state.deals:
        eligible = _eligible_touchpoints(state, deal, lookback_days)
        source = _sourcing_touchpoint(state, deal)
        fallback, reason = None, None
        if deal["status"] == "won" and eligible:
            _, reason = _deal_channel_weights(trainings, deal, eligible)
            fallback = reason is not None
        facts[deal["deal_id"]] = {
            "deal_id": deal["deal_id"],
            "org_id": deal["org_id"],
            "deal_name": spreadsheet_safe(deal["name"]),
            "status": deal["status"],
            "amount": deal["amount"],
            "currency": deal["currency"],
            "amount_usd": _amount_usd_cents(state, deal),
            "created_at": deal["created_at"],
            "closed_at": deal["closed_at"],
            "is_won": deal["status"] == "won",
            "eligible_touchpoint_count": len(eligible),
            "touching_partner_count": len({tp["partner_id"] for tp in eligible}),
            "sourced_partner_id": source["partner_id"] if source else None,
            "is_partner_sourced": source is not None,
            "is_partner_influenced": source is None and len(eligible) >= 1,
            "data_driven_fallback": fallback,
            "data_driven_fallback_reason": reason,
        }
    return facts


# --------------------------------------------------------------------------
# Rule 8: partner performance
# --------------------------------------------------------------------------


def _sum_known(values: Iterable[Decimal | None]) -> Decimal | None:
    """SQL `sum`: nulls ignored, null when nothing is left."""
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if known else None


def expected_partner_performance(
    data: RawData,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    min_paths: int = DEFAULT_MIN_PATHS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> dict[str, dict]:
    """One row per current partner, keyed by partner_id (money in Decimal cents,
    the win rate a Decimal of 10 decimals). Sums add up the cents of the deals
    and attribution rows (rule 10), so they add up for the reader too."""
    current = current_versions(data)
    deals = expected_deals(data, lookback_days, min_paths, max_channels)
    attribution = expected_attribution(
        data, lookback_days, min_paths=min_paths, max_channels=max_channels
    )
    out: dict[str, dict] = {}
    for partner in current.partners:
        pid, org = partner["partner_id"], partner["org_id"]
        touches = [
            tp
            for tp in current.touchpoints
            if tp["partner_id"] == pid
            and tp["org_id"] == org
            and tp["deal_id"] in deals
            and deals[tp["deal_id"]]["org_id"] == org
        ]
        touched = [deals[d] for d in sorted({tp["deal_id"] for tp in touches})]
        won = [d for d in touched if d["status"] == "won"]
        lost = [d for d in touched if d["status"] == "lost"]
        won_amounts = [d["amount_usd"] for d in won if d["amount_usd"] is not None]
        sourced = [d for d in deals.values() if d["is_won"] and d["sourced_partner_id"] == pid]
        row = {
            "org_id": org,
            "partner_name": partner["name"],
            "partner_type": partner["partner_type"],
            "partner_status": partner["status"],
            "deals_touched": len(touched),
            "deals_won": len(won),
            "deals_lost": len(lost),
            "win_rate": shown_ratio(Fraction(len(won), len(won) + len(lost)))
            if won or lost
            else None,
            "sourced_deals_won": len(sourced),
            "sourced_revenue_usd": _sum_known(d["amount_usd"] for d in sourced) or Decimal(0),
            "influenced_revenue_usd": _sum_known(
                d["amount_usd"] for d in won if d["sourced_partner_id"] != pid
            )
            or Decimal(0),
            "avg_won_deal_size_usd": (
                cents(Fraction(sum(won_amounts, Decimal(0))) / len(won_amounts))
                if won_amounts
                else None
            ),
            "first_touch_at": min((tp["occurred_at"] for tp in touches), default=None),
            "last_touch_at": max((tp["occurred_at"] for tp in touches), default=None),
        }
        for model in MODELS:
            row[f"attributed_revenue_usd_{model}"] = sum(
                (
                    r["attributed_amount_usd"]
                    for (_, p, m), r in attribution.items()
                    if p == pid and m == model
                ),
                Decimal("0.00"),
            )
        out[pid] = row
    return out


# --------------------------------------------------------------------------
# Rule 9: organizations
# --------------------------------------------------------------------------

TIERS = ((500, "enterprise"), (200, "large"), (50, "medium"), (0, "small"))


def expected_organizations(data: RawData) -> dict[str, dict]:
    """One row per current organization, keyed by org_id."""
    current = current_versions(data)
    out: dict[str, dict] = {}
    for org in current.organizations:
        active = sum(
            1 for p in current.partners if p["org_id"] == org["org_id"] and p["status"] == "active"
        )
        tier = next(name for floor, name in TIERS if active >= floor)
        out[org["org_id"]] = {
            "org_name": org["name"],
            "plan": org["plan"],
            "active_partner_count": active,
            "tier": tier,
            "requires_pagination": tier in ("large", "enterprise"),
        }
    return out


# --------------------------------------------------------------------------
# Reading the raw tables
# --------------------------------------------------------------------------

_RAW_QUERIES = {
    "organizations": (
        "select batch_id, line_no, org_id, name, plan, created_at, updated_at"
        " from raw.organizations order by batch_id, line_no"
    ),
    "partners": (
        "select batch_id, line_no, partner_id, org_id, name, partner_type, status,"
        " created_at, updated_at from raw.partners order by batch_id, line_no"
    ),
    "deals": (
        "select batch_id, line_no, deal_id, org_id, name, amount, currency, status,"
        " created_at, closed_at, updated_at from raw.deals order by batch_id, line_no"
    ),
    "touchpoints": (
        "select batch_id, line_no, touchpoint_id, org_id, deal_id, partner_id,"
        " touchpoint_type, occurred_at from raw.touchpoints order by batch_id, line_no"
    ),
    "fx_rates": (
        "select batch_id, line_no, currency, rate_date, usd_per_unit"
        " from raw.fx_rates order by batch_id, line_no"
    ),
}


def _in_utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def from_database(conn: psycopg.Connection) -> RawData:
    """Every row of the five raw tables (timestamps converted to UTC)."""
    from psycopg.rows import dict_row

    tables: dict[str, list[Row]] = {}
    for table, query in _RAW_QUERIES.items():
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query)
            tables[table] = [{k: _in_utc(v) for k, v in row.items()} for row in cur.fetchall()]
    return RawData(**tables)
