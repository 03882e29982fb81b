"""The input contract (entities and fields) and the deliberate row breakage."""

from __future__ import annotations

import random

ENTITIES = ("organizations", "partners", "deals", "touchpoints", "fx_rates")

FIELDS: dict[str, tuple[str, ...]] = {
    "organizations": ("org_id", "name", "plan", "created_at", "updated_at"),
    "partners": (
        "partner_id",
        "org_id",
        "name",
        "partner_type",
        "status",
        "created_at",
        "updated_at",
    ),
    "deals": (
        "deal_id",
        "org_id",
        "name",
        "amount",
        "currency",
        "status",
        "created_at",
        "closed_at",
        "updated_at",
    ),
    "touchpoints": (
        "touchpoint_id",
        "org_id",
        "deal_id",
        "partner_id",
        "touchpoint_type",
        "occurred_at",
    ),
    "fx_rates": ("currency", "rate_date", "usd_per_unit"),
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "organizations": ("org_id", "name", "updated_at"),
    "partners": ("partner_id", "org_id", "name", "updated_at"),
    "deals": ("deal_id", "org_id", "amount", "currency", "status", "created_at", "updated_at"),
    "touchpoints": (
        "touchpoint_id",
        "org_id",
        "deal_id",
        "partner_id",
        "touchpoint_type",
        "occurred_at",
    ),
    "fx_rates": ("currency", "rate_date", "usd_per_unit"),
}

# Timestamp (or, for fx_rates, date) fields that may be made unparseable.
TEMPORAL: dict[str, tuple[str, ...]] = {
    "organizations": ("created_at", "updated_at"),
    "partners": ("created_at", "updated_at"),
    "deals": ("created_at", "closed_at", "updated_at"),
    "touchpoints": ("occurred_at",),
    "fx_rates": ("rate_date",),
}

PARTNER_STATUSES = ("active", "inactive")
DEAL_STATUSES = ("open", "won", "lost")

# Kinds of breakage that make sense for each entity; every kind always yields an
# invalid row.
BAD_KINDS: dict[str, tuple[str, ...]] = {
    "organizations": ("required_empty", "bad_timestamp"),
    "partners": ("required_empty", "bad_timestamp", "bad_status"),
    "deals": (
        "required_empty",
        "bad_timestamp",
        "bad_amount",
        "bad_status",
        "bad_currency",
        "missing_closed_at",
    ),
    "touchpoints": ("required_empty", "bad_timestamp"),
    "fx_rates": ("required_empty", "bad_timestamp", "bad_currency", "bad_rate"),
}

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
_BAD_DEAL_STATUSES = ("pending", "closed", "deleted", "w0n")
_BAD_PARTNER_STATUSES = ("paused", "deleted", "enabled")
_BAD_CURRENCIES = ("US", "EURO", "€", "12", "E1R")


def _pick(rng: random.Random, values: tuple[str, ...]) -> str:
    return values[int(rng.random() * len(values))]


def corrupt(entity: str, row: tuple[str, ...], kind: str, rng: random.Random) -> tuple[str, ...]:
    """Copy of ``row`` with exactly one defect of the given kind."""
    fields = FIELDS[entity]
    out = list(row)
    if kind == "required_empty":
        out[fields.index(_pick(rng, REQUIRED[entity]))] = ""
    elif kind == "bad_timestamp":
        present = tuple(f for f in TEMPORAL[entity] if row[fields.index(f)])
        name = _pick(rng, present)
        out[fields.index(name)] = _pick(
            rng, _BAD_DATES if entity == "fx_rates" else _BAD_TIMESTAMPS
        )
    elif kind == "bad_amount":
        i = fields.index("amount")
        if rng.random() < 0.5:
            out[i] = _pick(rng, _BAD_AMOUNTS)
        else:
            out[i] = "-" + row[i] if row[i].strip("0.") else "-1.00"
    elif kind == "bad_status":
        values = _BAD_PARTNER_STATUSES if entity == "partners" else _BAD_DEAL_STATUSES
        out[fields.index("status")] = _pick(rng, values)
    elif kind == "bad_currency":
        out[fields.index("currency")] = _pick(rng, _BAD_CURRENCIES)
    elif kind == "missing_closed_at":
        i = fields.index("status")
        if out[i] not in ("won", "lost"):
            out[i] = "won" if rng.random() < 0.5 else "lost"
        out[fields.index("closed_at")] = ""
    elif kind == "bad_rate":
        i = fields.index("usd_per_unit")
        out[i] = ("0", "0.000000", "-" + row[i])[int(rng.random() * 3)]
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
        self.carry = {e: seed_rng.random() for e in ENTITIES}
        self.next_kind = {e: int(seed_rng.random() * len(BAD_KINDS[e])) for e in ENTITIES}
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
