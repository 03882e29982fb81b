"""Organizations and partners: the slowly-changing "world" that deals happen in.

The world depends only on ``(seed, number of orgs, start date)``; the later
versions (plan changes, partners going inactive, ...) are drawn per day from
``(seed, day)`` and applied in day order, so day ``D``'s update file does not
depend on how many days are generated.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate

from . import _names
from ._rand import Weighted, lognormal, normal, rng_for, stochastic_round, weighted

DAY = 86_400

# Tier bounds by *active* partner count.
TIERS = (("small", 0, 49), ("medium", 50, 199), ("large", 200, 499), ("enterprise", 500, None))

# With >= 8 orgs the first four orgs anchor one tier each: (partners, inactive).
# The random status changes never push an anchor out of its tier.
ANCHOR_MIN_ORGS = 8
_ANCHORS = ((750, 75, 500, None), (320, 32, 200, 499), (110, 11, 50, 199), (12, 1, 0, 49))

PLANS = ("free", "starter", "growth", "business", "enterprise")
PARTNER_TYPES = weighted(
    [("reseller", 35), ("referral", 30), ("agency", 20), ("technology", 13), ("", 2)]
)
INACTIVE_SHARE = 0.10

CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "SEK")
# Rough USD value of one unit, the centre of the simulated exchange rates.
BASE_USD_PER_UNIT = {
    "USD": 1.0,
    "EUR": 1.09,
    "GBP": 1.27,
    "CAD": 0.73,
    "AUD": 0.66,
    "JPY": 0.0067,
    "CHF": 1.13,
    "SEK": 0.096,
}
HOME_CURRENCY = Weighted(CURRENCIES, (55, 16, 10, 6, 5, 4, 2, 2))

# Org size (partners): a log-normal body (median 3.2 = e**1.16315, sigma 1.35, capped at
# 199) plus explicit tails: 0.08 % enterprise orgs (500-1,500 partners) and 0.32 % large
# ones (200-499).  Mean ~10 partners per org.
_SIZE_MU, _SIZE_SIGMA, _SIZE_BODY_MAX = 1.16315, 1.35, 199
_P_ENTERPRISE, _P_LARGE = 0.0008, 0.0032
# ln(median deal size in USD) per tier: 4,000 / 6,400 / 8,800 / 12,000.
_TIER_AMOUNT_MU = {"small": 8.29405, "medium": 8.76405, "large": 9.08251, "enterprise": 9.39266}


def _random_org_size(rng) -> int:
    r = rng.random()
    u = rng.random()
    if r < _P_ENTERPRISE:
        return 500 + int(u * 1_001)
    if r < _P_ENTERPRISE + _P_LARGE:
        return 200 + int(u * 300)
    return max(1, min(_SIZE_BODY_MAX, round(lognormal(rng, _SIZE_MU, _SIZE_SIGMA))))


def tier_of(active_partners: int) -> str:
    for name, lo, hi in TIERS:
        if active_partners >= lo and (hi is None or active_partners <= hi):
            return name
    raise AssertionError(active_partners)


@dataclass
class World:
    org_ids: list[str] = field(default_factory=list)
    org_rows: list[tuple[str, ...]] = field(default_factory=list)  # current versions
    org_currency: list[str] = field(default_factory=list)
    org_amount_mu: list[float] = field(default_factory=list)
    org_partner_start: list[int] = field(default_factory=list)  # first global partner index
    org_size: list[int] = field(default_factory=list)
    org_active: list[int] = field(default_factory=list)  # active partner count
    org_active_bounds: list[tuple[int, int | None]] = field(default_factory=list)
    org_partner_cum: list[list[float]] = field(default_factory=list)  # activity weights
    partner_ids: list[str] = field(default_factory=list)
    partner_org: list[int] = field(default_factory=list)
    partner_rows: list[tuple[str, ...]] = field(default_factory=list)  # current versions
    partner_active: list[bool] = field(default_factory=list)
    deal_cum: list[float] = field(default_factory=list)  # org weights for deal volume

    @property
    def n_orgs(self) -> int:
        return len(self.org_ids)

    @property
    def n_partners(self) -> int:
        return len(self.partner_ids)


def build_world(seed: int, n_orgs: int, clock) -> World:
    """Draw all orgs and partners (first versions, all dated before day 0)."""
    rng = rng_for(seed, "world")
    rand = rng.random
    world = World()
    anchored = n_orgs >= ANCHOR_MIN_ORGS
    for o in range(n_orgs):
        if anchored and o < len(_ANCHORS):
            size, n_inactive, lo, hi = _ANCHORS[o]
            inactive = set(rng.sample(range(size), n_inactive))
            bounds: tuple[int, int | None] = (lo, hi)
        else:
            size = _random_org_size(rng)
            inactive = {j for j in range(size) if rand() < INACTIVE_SHARE}
            bounds = (0, None)
        active = size - len(inactive)
        tier = tier_of(active)
        org_id = f"org_{o + 1:05d}"
        # Plans loosely follow size.
        plan_index = {"small": 0, "medium": 2, "large": 3, "enterprise": 4}[tier]
        plan_index = max(0, min(len(PLANS) - 1, plan_index + int(rand() * 3) - 1))
        plan = PLANS[plan_index] if rand() >= 0.03 else ""
        org_created = -DAY * (30 + int(rand() * 5 * 365)) + int(rand() * DAY)
        org_updated = org_created + int(rand() * (-org_created))
        world.org_ids.append(org_id)
        world.org_rows.append(
            (org_id, _names.company_name(rng), plan, clock.ts(org_created), clock.ts(org_updated))
        )
        home = HOME_CURRENCY.pick(rng)
        # The tier anchors are US-based so that USD dominates even in small demos.
        world.org_currency.append("USD" if anchored and o < len(_ANCHORS) else home)
        world.org_amount_mu.append(_TIER_AMOUNT_MU[tier] + 0.3 * normal(rng))
        world.org_partner_start.append(len(world.partner_ids))
        world.org_size.append(size)
        world.org_active.append(active)
        world.org_active_bounds.append(bounds)
        weights = []
        for j in range(size):
            g = len(world.partner_ids)
            partner_id = f"ptn_{g + 1:07d}"
            is_active = j not in inactive
            created = org_created + int(rand() * (-org_created))
            updated = created + int(rand() * (-created))
            world.partner_ids.append(partner_id)
            world.partner_org.append(o)
            world.partner_active.append(is_active)
            world.partner_rows.append(
                (
                    partner_id,
                    org_id,
                    _names.partner_name(rng),
                    PARTNER_TYPES.pick(rng),
                    "active" if is_active else "inactive",
                    clock.ts(created),
                    clock.ts(updated),
                )
            )
            # A few partners bring most of an org's deals; inactive ones rarely appear.
            w = lognormal(rng, 0.0, 1.0)
            weights.append(w if is_active else 0.2 * w)
        world.org_partner_cum.append(list(accumulate(weights)))
    if world.n_partners >= 9_000_000:  # "ptn_9xxxxxx" is reserved for unknown partners
        raise ValueError("too many partners for the partner id scheme")
    # Deal volume grows with org size, with a floor so one-partner orgs still sell.
    world.deal_cum = list(accumulate(s + 3.0 * math.sqrt(s) for s in world.org_size))
    return world


def pick_partner(world: World, org: int, rand) -> int:
    """Global index of a partner of ``org``, weighted by partner activity."""
    cum = world.org_partner_cum[org]
    j = bisect_right(cum, rand() * cum[-1], 0, len(cum) - 1)
    return world.org_partner_start[org] + j


def world_updates(
    world: World, seed: int, day: int, clock
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """New org and partner versions on ``day`` (>= 1); mutates ``world``.

    Must be called for every day in order, starting at day 1.
    """
    rng = rng_for(seed, "world-updates", day)
    rand = rng.random
    base = day * DAY

    org_events: list[tuple[int, int]] = []  # (org, kind)
    seen_orgs: set[int] = set()  # membership only, never iterated
    for _ in range(stochastic_round(world.n_orgs * 0.003, rng)):
        o = int(rand() * world.n_orgs)
        kind = 0 if rand() < 0.8 else 1  # 0 plan change, 1 rename
        if o not in seen_orgs:
            seen_orgs.add(o)
            org_events.append((o, kind))
    org_rows = []
    times = sorted(base + 8 * 3600 + int(rand() * 10 * 3600) for _ in org_events)
    for (o, kind), t in zip(org_events, times, strict=True):
        org_id, name, plan, created, _ = world.org_rows[o]
        if kind == 0:
            i = PLANS.index(plan) if plan else 1
            i = i + 1 if (rand() < 0.7 and i < len(PLANS) - 1) or i == 0 else i - 1
            plan = PLANS[i]
        else:
            name = _names.company_name(rng)
        row = (org_id, name, plan, created, clock.ts(t))
        world.org_rows[o] = row
        org_rows.append(row)

    # Status toggles keep the inactive share stationary at ~10 %: an active partner
    # is deactivated with p=0.1, an inactive one reactivated with p=0.9.
    partner_events: list[tuple[int, int]] = []  # (partner, kind)
    seen_partners: set[int] = set()
    for _ in range(stochastic_round(world.n_partners * 0.004, rng)):
        p = int(rand() * world.n_partners)
        r = rand()
        if p in seen_partners:
            continue
        o = world.partner_org[p]
        lo, hi = world.org_active_bounds[o]
        if world.partner_active[p]:
            if r < 0.1 and world.org_active[o] - 1 >= lo:
                kind = 0  # deactivate
            elif r > 0.97:
                kind = 2  # rename
            else:
                continue
        else:
            if r < 0.9 and (hi is None or world.org_active[o] + 1 <= hi):
                kind = 1  # reactivate
            else:
                continue
        seen_partners.add(p)
        partner_events.append((p, kind))
    partner_rows = []
    times = sorted(base + 7 * 3600 + int(rand() * 12 * 3600) for _ in partner_events)
    for (p, kind), t in zip(partner_events, times, strict=True):
        pid, org_id, name, ptype, status, created, _ = world.partner_rows[p]
        o = world.partner_org[p]
        if kind == 0:
            status = "inactive"
            world.partner_active[p] = False
            world.org_active[o] -= 1
        elif kind == 1:
            status = "active"
            world.partner_active[p] = True
            world.org_active[o] += 1
        else:
            name = _names.partner_name(rng)
        row = (pid, org_id, name, ptype, status, created, clock.ts(t))
        world.partner_rows[p] = row
        partner_rows.append(row)
    return org_rows, partner_rows
