"""Commission plans: each organization's default plan, partner overrides, rate changes.

The plans in place when the export starts are drawn from ``(seed, "plans")`` and
written in day 0's file; each later day's changes from ``(seed, "plans", day)``,
applied in day order. Their own streams: the other files' bytes do not depend on
the plans, and day ``D``'s plan file does not depend on how many days are generated.

A rate change closes the org's current default plan (a new version of it, with an
``effective_to`` and a later ``updated_at``) and starts a new plan that day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingestion.contracts import COMMISSION_MODELS, SOURCED_MODEL

from ._clock import DAY, Clock
from ._contract import FIELDS
from ._rand import Weighted, rng_for, stochastic_round
from ._world import World

_FIELDS = FIELDS["commission_plans"]

# Default plans pay by a multi-touch model; the models the contract no longer
# knows are left out.
_MODEL_WEIGHTS = (
    ("linear", 30),
    ("position_based", 25),
    ("w_shaped", 15),
    ("time_decay", 15),
    ("data_driven", 15),
)
MODELS = Weighted(*zip(*((m, w) for m, w in _MODEL_WEIGHTS if m in COMMISSION_MODELS), strict=True))
HOLDING_DAYS = Weighted((0, 14, 30, 45), (15, 25, 40, 20))
# A 30-day plan is sometimes written without holding_days: the contract's default.
P_HOLDING_LEFT_EMPTY = 0.3
# Rates in per mille (exact decimals): defaults 5-20 %, sourced plans 10-25 %, other
# overrides the default plus 1-5 points, at most 25 %.
DEFAULT_RATE = (50, 200)
SOURCED_RATE = (100, 250)
OVERRIDE_BONUS = (10, 50)
MAX_OVERRIDE_RATE = 250
RATE_STEP = 5
P_OVERRIDE = 0.08  # partners with a plan of their own from the start
P_SOURCED = 0.45  # of those overrides, pay the sourcing partner on the whole deal
P_MODEL_CHANGE = 0.2  # a rate change also moves the org to another model
RATE_CHANGES_PER_ORG_DAY = 0.004
NEW_OVERRIDES_PER_PARTNER_DAY = 0.0004


def _rate(per_mille: int) -> str:
    return f"{per_mille // 1000}.{per_mille % 1000:03d}"


def _draw_rate(rand, low: int, high: int) -> int:
    return low + RATE_STEP * int(rand() * ((high - low) // RATE_STEP + 1))


@dataclass
class Plans:
    """The current version of every plan, and what a change needs to know."""

    rows: dict[str, tuple[str, ...]] = field(default_factory=dict)  # plan_id -> row
    default_plan: list[str] = field(default_factory=list)  # per org
    default_rate: list[int] = field(default_factory=list)  # per org, per mille
    next_number: list[int] = field(default_factory=list)  # per org
    has_override: set[int] = field(default_factory=set)  # global partner indexes

    def new_id(self, org: int) -> str:
        self.next_number[org] += 1
        return f"plan_{org + 1:05d}_{self.next_number[org]:03d}"

    def add(self, **values: str) -> tuple[str, ...]:
        """A plan's new current version, as a row in the contract's field order."""
        row = tuple(values[name] for name in _FIELDS)
        self.rows[values["plan_id"]] = row
        return row


def _holding(rng) -> str:
    days = HOLDING_DAYS.pick(rng)
    return "" if days == 30 and rng.random() < P_HOLDING_LEFT_EMPTY else str(days)


def _override(plans: Plans, world: World, p: int, rng, starts: str, updated: str) -> tuple:
    """A plan of partner ``p``'s own: a sourced plan, or its org's model at a higher rate."""
    rand = rng.random
    o = world.partner_org[p]
    if rand() < P_SOURCED:
        model, rate = SOURCED_MODEL, _draw_rate(rand, *SOURCED_RATE)
    else:
        default = plans.rows[plans.default_plan[o]]
        model = default[_FIELDS.index("attribution_model")]
        rate = min(MAX_OVERRIDE_RATE, plans.default_rate[o] + _draw_rate(rand, *OVERRIDE_BONUS))
    plans.has_override.add(p)
    return plans.add(
        plan_id=plans.new_id(o),
        org_id=world.org_ids[o],
        partner_id=world.partner_ids[p],
        attribution_model=model,
        rate=_rate(rate),
        effective_from=starts,
        effective_to="",
        holding_days=_holding(rng),
        updated_at=updated,
    )


def initial_plans(world: World, seed: int) -> tuple[Plans, list[tuple[str, ...]]]:
    """The plans in place on day 0: a default plan per org from the day it was
    created, and overrides for some partners from the day each was created."""
    rng = rng_for(seed, "plans")
    rand = rng.random
    plans = Plans(next_number=[0] * world.n_orgs)
    rows = []
    for o, org_row in enumerate(world.org_rows):
        created = org_row[3]  # organizations.created_at
        rate = _draw_rate(rand, *DEFAULT_RATE)
        plans.default_rate.append(rate)
        plan_id = plans.new_id(o)
        plans.default_plan.append(plan_id)
        rows.append(
            plans.add(
                plan_id=plan_id,
                org_id=world.org_ids[o],
                partner_id="",
                attribution_model=MODELS.pick(rng),
                rate=_rate(rate),
                effective_from=created[:10],
                effective_to="",
                holding_days=_holding(rng),
                updated_at=created,
            )
        )
        start = world.org_partner_start[o]
        for p in range(start, start + world.org_size[o]):
            if rand() < P_OVERRIDE:
                partner_created = world.partner_rows[p][5]  # partners.created_at
                rows.append(_override(plans, world, p, rng, partner_created[:10], partner_created))
    return plans, rows


def plan_updates(
    plans: Plans, world: World, seed: int, day: int, clock: Clock
) -> list[tuple[str, ...]]:
    """The plan versions written on ``day`` (>= 1); mutates ``plans``.

    Must be called for every day in order, starting at day 1.
    """
    rng = rng_for(seed, "plans", day)
    rand = rng.random
    base = day * DAY
    today = clock.date(day)
    events: list[tuple[int, int, int]] = []  # (seconds, kind, org or partner)
    changed: set[int] = set()  # membership only, never iterated
    for _ in range(stochastic_round(world.n_orgs * RATE_CHANGES_PER_ORG_DAY, rng)):
        o = int(rand() * world.n_orgs)
        if o not in changed:
            changed.add(o)
            events.append((base + 8 * 3600 + int(rand() * 10 * 3600), 0, o))
    chosen: set[int] = set()
    for _ in range(stochastic_round(world.n_partners * NEW_OVERRIDES_PER_PARTNER_DAY, rng)):
        p = int(rand() * world.n_partners)
        if p not in plans.has_override and p not in chosen:
            chosen.add(p)
            events.append((base + 8 * 3600 + int(rand() * 10 * 3600), 1, p))
    events.sort()
    rows = []
    for secs, kind, index in events:
        updated = clock.ts(secs)
        if kind == 1:
            rows.append(_override(plans, world, index, rng, today, updated))
            continue
        o = index
        old = list(plans.rows[plans.default_plan[o]])
        old[_FIELDS.index("effective_to")] = today
        old[_FIELDS.index("updated_at")] = updated
        rows.append(plans.add(**dict(zip(_FIELDS, old, strict=True))))
        model = old[_FIELDS.index("attribution_model")]
        if rand() < P_MODEL_CHANGE:
            model = MODELS.pick(rng)
        # Up (more often) or down by 0.5 to 3 points, within the default range.
        step = RATE_STEP * (1 + int(rand() * 6))
        low, high = DEFAULT_RATE
        rate = plans.default_rate[o]
        up = rand() < 0.6
        rate += step if (up and rate + step <= high) or rate - step < low else -step
        plans.default_rate[o] = rate
        plan_id = plans.new_id(o)
        plans.default_plan[o] = plan_id
        rows.append(
            plans.add(
                plan_id=plan_id,
                org_id=world.org_ids[o],
                partner_id="",
                attribution_model=model,
                rate=_rate(rate),
                effective_from=today,
                effective_to="",
                holding_days=old[_FIELDS.index("holding_days")],
                updated_at=updated,
            )
        )
    return rows
