"""The files' entities and fields, from the input contract, and the deliberate row breakage.

Names, columns, their order, what is required and each field's kind come from
`ingestion.contracts`; only the order of the generator's random draws and the
realistic bad values are the generator's own. Rows are tuples in the contract's
field order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

from ingestion.contracts import (
    COMMISSION_PLANS,
    DEALS,
    FX_RATES,
    ORGANIZATIONS,
    PARTNERS,
    TOUCHPOINTS,
    Entity,
    Kind,
)

# The generator's order of entities. Its random state is drawn in this order, so the
# order is part of what a seed means: another order writes other bytes. An entity
# added later goes last (and draws after the first ones: BadRowInjector), so a seed
# keeps writing the same files for the entities it already had.
_ORDER: tuple[Entity, ...] = (
    ORGANIZATIONS,
    PARTNERS,
    DEALS,
    TOUCHPOINTS,
    FX_RATES,
    COMMISSION_PLANS,
)
# How many of _ORDER the first generator had.
_FIRST_ENTITIES = 5
_BY_NAME = {e.name: e for e in _ORDER}

ENTITIES = tuple(e.name for e in _ORDER)
FIELDS: dict[str, tuple[str, ...]] = {e.name: e.field_names for e in _ORDER}
REQUIRED: dict[str, tuple[str, ...]] = {e.name: e.required_names for e in _ORDER}


def _of_kind(entity: Entity, *kinds: Kind) -> tuple[str, ...]:
    return tuple(f.name for f in entity.fields if f.kind in kinds)


# Each kind of breakage, in the order the kinds rotate, and the fields of an entity it
# can break; an entity gets the kinds that find a field in it. Every kind always yields
# an invalid row.
_BREAKS: dict[str, Callable[[Entity], tuple[str, ...]]] = {
    "required_empty": lambda e: e.required_names,
    "bad_timestamp": lambda e: _of_kind(e, Kind.TIMESTAMP, Kind.DATE),
    "bad_amount": lambda e: _of_kind(e, Kind.AMOUNT),
    "bad_status": lambda e: _of_kind(e, Kind.ENUM),
    "bad_currency": lambda e: _of_kind(e, Kind.CURRENCY),
    "missing_closed_at": lambda e: tuple(f.name for f in e.fields if f.required_when),
    "bad_rate": lambda e: _of_kind(e, Kind.POSITIVE_AMOUNT),
    "bad_fraction": lambda e: _of_kind(e, Kind.FRACTION),
    "bad_count": lambda e: _of_kind(e, Kind.COUNT),
    "not_after": lambda e: tuple(f.name for f in e.fields if f.after),
}
# entity -> breakage kind -> the fields it breaks.
_TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    e.name: {kind: names for kind, of in _BREAKS.items() if (names := of(e))} for e in _ORDER
}
BAD_KINDS: dict[str, tuple[str, ...]] = {name: tuple(t) for name, t in _TARGETS.items()}

_BAD_TIMESTAMPS = (
    "2026-13-45",
    "yesterday",
    "2026-02-30T10:00:00Z",
    "03/01/2026 14:05",
    "2026-01-03T25:61:00Z",
    "not a date",
)
_BAD_DATES = ("2026-13-45", "yesterday", "2026/01/05", "05.01.2026", "2026-02-30")
_BAD_AMOUNTS = ("12,50", "1.234,56", "ten", "N/A")
# Values outside an enum field's choices, per (entity, field).
_BAD_CHOICES = {
    ("deals", "status"): ("pending", "closed", "deleted", "w0n"),
    ("partners", "status"): ("paused", "deleted", "enabled"),
    ("commission_plans", "attribution_model"): ("shapley", "last-touch", "linear_v2", "u_shaped"),
}
_BAD_CURRENCIES = ("US", "EURO", "€", "12", "E1R")
# A rate as a percentage, with a decimal comma, negative, or in words.
_BAD_FRACTIONS = ("15", "12.5", "1.5", "0,15", "12%", "-0.05", "ten percent")
_BAD_COUNTS = ("-3", "2.5", "thirty", "30 days", "1e2")


def _pick(rng: random.Random, values: tuple[str, ...]) -> str:
    return values[int(rng.random() * len(values))]


def corrupt(entity: str, row: tuple[str, ...], kind: str, rng: random.Random) -> tuple[str, ...]:
    """Copy of ``row`` with exactly one defect of the given kind."""
    fields = FIELDS[entity]
    targets = _TARGETS[entity][kind]
    # required_empty and bad_timestamp draw one of their fields; the other kinds break
    # the entity's one field of their kind, with no draw.
    i = fields.index(targets[0])
    out = list(row)
    if kind == "required_empty":
        out[fields.index(_pick(rng, targets))] = ""
    elif kind == "bad_timestamp":
        name = _pick(rng, tuple(f for f in targets if row[fields.index(f)]))
        is_date = _BY_NAME[entity].field(name).kind is Kind.DATE
        out[fields.index(name)] = _pick(rng, _BAD_DATES if is_date else _BAD_TIMESTAMPS)
    elif kind == "bad_amount":
        if rng.random() < 0.5:
            out[i] = _pick(rng, _BAD_AMOUNTS)
        else:
            out[i] = "-" + row[i] if row[i].strip("0.") else "-1.00"
    elif kind == "bad_status":
        out[i] = _pick(rng, _BAD_CHOICES[entity, targets[0]])
    elif kind == "bad_currency":
        out[i] = _pick(rng, _BAD_CURRENCIES)
    elif kind == "missing_closed_at":
        # Make the row one that needs the field, then leave the field empty.
        when = _BY_NAME[entity].field(targets[0]).required_when
        assert when is not None  # the targets of this kind are the fields that have one
        when_field, when_values = when
        j = fields.index(when_field)
        if out[j] not in when_values:
            out[j] = _pick(rng, when_values)
        out[i] = ""
    elif kind == "bad_rate":
        out[i] = ("0", "0.000000", "-" + row[i])[int(rng.random() * 3)]
    elif kind == "bad_fraction":
        out[i] = _pick(rng, _BAD_FRACTIONS)
    elif kind == "bad_count":
        out[i] = _pick(rng, _BAD_COUNTS)
    elif kind == "not_after":
        # The same day as the field it must follow, or up to 30 days before it.
        start = date.fromisoformat(row[fields.index(_BY_NAME[entity].field(targets[0]).after)])
        out[i] = (start - timedelta(days=int(rng.random() * 31))).isoformat()
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown breakage kind {kind!r}")
    return tuple(out)


class BadRowInjector:
    """Inserts broken copies of rows so that about ``rate`` of each entity's rows are bad.

    The valid rows are never touched: filtering the bad rows out gives exactly the
    output of ``rate=0``.  Each broken copy directly follows its source row.

    The number of bad rows per file carries its rounding remainder over to the
    entity's next file, and the kinds of breakage rotate per entity across
    files, so even entities with small files (fx rates) get their share of every
    kind.  Both carried states only depend on earlier files, which keeps day
    ``D``'s files independent of the horizon.
    """

    def __init__(self, rate: float, seed_rng: random.Random) -> None:
        self.rate = rate
        self.ratio = rate / (1.0 - rate) if rate > 0 else 0.0  # bad rows per valid row
        first, added = ENTITIES[:_FIRST_ENTITIES], ENTITIES[_FIRST_ENTITIES:]
        self.carry = {e: seed_rng.random() for e in first}
        self.next_kind = {e: int(seed_rng.random() * len(BAD_KINDS[e])) for e in first}
        for e in added:
            self.carry[e] = seed_rng.random()
            self.next_kind[e] = int(seed_rng.random() * len(BAD_KINDS[e]))
        self.kind_counts: dict[str, int] = {}

    def inject(
        self, entity: str, rows: list[tuple[str, ...]], rng: random.Random
    ) -> tuple[list[tuple[str, ...]], int]:
        n = len(rows)
        if self.ratio == 0.0 or n == 0:
            return rows, 0
        x = self.carry[entity] + n * self.ratio
        k = int(x)
        self.carry[entity] = x - k
        if k == 0:
            return rows, 0
        kinds = BAD_KINDS[entity]
        first = self.next_kind[entity]
        self.next_kind[entity] = (first + k) % len(kinds)
        sources = sorted(int(rng.random() * n) for _ in range(k))
        out: list[tuple[str, ...]] = []
        j = 0
        for i, row in enumerate(rows):
            out.append(row)
            while j < k and sources[j] == i:
                kind = kinds[(first + j) % len(kinds)]
                out.append(corrupt(entity, row, kind, rng))
                key = f"{entity}/{kind}"
                self.kind_counts[key] = self.kind_counts.get(key, 0) + 1
                j += 1
        return out, k
