"""The input contract as data: entities, their fields and how each is checked.

Everything else (the readers, the SQL validation, the raw tables' column lists,
the synthetic generator's files, the benchmarks' files) is derived from these
declarations, so a new field or entity is a change here plus a migration;
tests/test_contract_migration.py holds the migrated raw tables to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from platform_core.attribution_models import attribution_model_names


class Kind(Enum):
    TEXT = "text"  # kept exactly as read
    LOWER_TEXT = "lower_text"  # free text, lower-cased on load
    ENUM = "enum"  # trimmed, lower-cased, one of `choices`
    CURRENCY = "currency"  # trimmed, upper-cased, three letters
    TIMESTAMP = "timestamp"  # strict ISO 8601 (TIMESTAMP_SHAPES); no offset means UTC
    DATE = "date"  # YYYY-MM-DD
    AMOUNT = "amount"  # decimal with '.', 0 <= x <= MAX_AMOUNT
    POSITIVE_AMOUNT = "positive_amount"  # decimal with '.', 0 < x <= MAX_AMOUNT
    FRACTION = "fraction"  # decimal with '.', 0 <= x <= 1 (a rate: 0.15 is 15 %)
    COUNT = "count"  # digits only: a whole number from 0 to MAX_COUNT


# The type of a field's raw column, by kind: what a valid value is stored as. The
# other kinds are stored as the (normalized) text.
RAW_TYPES: dict[Kind, str] = {
    Kind.TIMESTAMP: "timestamptz",
    Kind.DATE: "date",
    Kind.AMOUNT: "numeric",
    Kind.POSITIVE_AMOUNT: "numeric",
    Kind.FRACTION: "numeric",
    Kind.COUNT: "integer",
}
# Columns of every raw table besides its entity's fields, all not null: the batch
# (raw.ingest_batches) and line a row came from, and when it was written.
RAW_BOOKKEEPING_COLUMNS: dict[str, str] = {
    "batch_id": "bigint",
    "line_no": "bigint",
    "loaded_at": "timestamptz",
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind = Kind.TEXT
    required: bool = False
    choices: tuple[str, ...] = ()
    default: str | None = None
    # Required only when another field holds one of some values: (field, values).
    required_when: tuple[str, tuple[str, ...]] | None = None
    # An identifier (join key) must not start with a spreadsheet formula character.
    identifier: bool = False
    # Must be later than this other field of the same kind, when both have a value
    # (a period's exclusive end after its start).
    after: str | None = None

    @property
    def raw_type(self) -> str:
        return RAW_TYPES.get(self.kind, "text")

    @property
    def raw_not_null(self) -> bool:
        """Whether every loaded row has a value: a required field, or one with a default."""
        return self.required or self.default is not None


@dataclass(frozen=True)
class Entity:
    name: str
    fields: tuple[Field, ...]

    @property
    def table(self) -> str:
        return self.name

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    def __post_init__(self) -> None:
        # A rule naming another field is checked here, not when a file first meets it:
        # `after` compares typed values, so both fields are of one typed kind.
        for f in self.fields:
            if f.after is not None:
                other = next((o for o in self.fields if o.name == f.after), None)
                if other is None or other.kind is not f.kind or f.raw_type == "text":
                    raise ValueError(
                        f"{self.name}.{f.name}: after={f.after!r} names no field of its typed kind"
                    )


ORGANIZATIONS = Entity(
    "organizations",
    (
        Field("org_id", required=True, identifier=True),
        Field("name", required=True),
        Field("plan"),
        Field("created_at", Kind.TIMESTAMP),
        Field("updated_at", Kind.TIMESTAMP, required=True),
    ),
)

PARTNERS = Entity(
    "partners",
    (
        Field("partner_id", required=True, identifier=True),
        Field("org_id", required=True, identifier=True),
        Field("name", required=True),
        Field("partner_type"),
        Field("status", Kind.ENUM, choices=("active", "inactive"), default="active"),
        Field("created_at", Kind.TIMESTAMP),
        Field("updated_at", Kind.TIMESTAMP, required=True),
    ),
)

DEALS = Entity(
    "deals",
    (
        Field("deal_id", required=True, identifier=True),
        Field("org_id", required=True, identifier=True),
        Field("name"),
        Field("amount", Kind.AMOUNT, required=True),
        Field("currency", Kind.CURRENCY, required=True),
        Field("status", Kind.ENUM, required=True, choices=("open", "won", "lost")),
        Field("created_at", Kind.TIMESTAMP, required=True),
        Field("closed_at", Kind.TIMESTAMP, required_when=("status", ("won", "lost"))),
        Field("updated_at", Kind.TIMESTAMP, required=True),
    ),
)

TOUCHPOINTS = Entity(
    "touchpoints",
    (
        Field("touchpoint_id", required=True, identifier=True),
        Field("org_id", required=True, identifier=True),
        Field("deal_id", required=True, identifier=True),
        Field("partner_id", required=True, identifier=True),
        Field("touchpoint_type", Kind.LOWER_TEXT, required=True),
        Field("occurred_at", Kind.TIMESTAMP, required=True),
    ),
)

FX_RATES = Entity(
    "fx_rates",
    (
        Field("currency", Kind.CURRENCY, required=True),
        Field("rate_date", Kind.DATE, required=True),
        Field("usd_per_unit", Kind.POSITIVE_AMOUNT, required=True),
    ),
)

# The model a plan pays by: any attribution model dbt builds, or `sourced` (the
# deal's sourcing partner is paid on the whole amount).
SOURCED_MODEL = "sourced"
COMMISSION_MODELS: tuple[str, ...] = (*attribution_model_names(), SOURCED_MODEL)
# Days from a deal's close until its commission is payable, when a plan says none.
DEFAULT_HOLDING_DAYS = 30

COMMISSION_PLANS = Entity(
    "commission_plans",
    (
        Field("plan_id", required=True, identifier=True),
        Field("org_id", required=True, identifier=True),
        # Empty: the organization's default plan, for partners without their own.
        Field("partner_id", identifier=True),
        Field("attribution_model", Kind.ENUM, required=True, choices=COMMISSION_MODELS),
        Field("rate", Kind.FRACTION, required=True),
        Field("effective_from", Kind.DATE, required=True),
        # Exclusive; empty: open-ended.
        Field("effective_to", Kind.DATE, after="effective_from"),
        Field("holding_days", Kind.COUNT, default=str(DEFAULT_HOLDING_DAYS)),
        Field("updated_at", Kind.TIMESTAMP, required=True),
    ),
)

# Load order: reference data first, so a run's deals and touchpoints find their
# organizations, partners, plans and rates in the same run.
ENTITIES: tuple[Entity, ...] = (
    ORGANIZATIONS,
    PARTNERS,
    COMMISSION_PLANS,
    FX_RATES,
    DEALS,
    TOUCHPOINTS,
)
ENTITY_BY_NAME = {e.name: e for e in ENTITIES}
FILE_EXTENSIONS = (".csv", ".jsonl")
# Longest text value accepted; a longer one is quarantined with its length.
MAX_FIELD_CHARS = 1_000_000
# First characters that make a spreadsheet read a cell as a formula (OWASP CSV
# injection): an identifier starting with one is quarantined; display text keeps
# it in raw and is neutralized in dbt staging (macro spreadsheet_safe).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Largest amount (deals.amount) and rate (fx_rates.usd_per_unit) accepted. Any
# product of an amount, a rate and a credit then stays far inside what numeric
# computes exactly and quickly; one absurd value (1e30) would otherwise break the
# attribution invariants of every tenant that shares the marts.
MAX_AMOUNT = 10**15
# Most digits after the decimal point of an amount or rate, trailing zeros included
# (the scale stored in raw). 18 is the finest unit in use (10^-18, e.g. wei); an
# unbounded scale (1e-400) makes products slow, past 16,383 digits no longer exact,
# and out of range for any float a BI tool or check converts to.
MAX_DECIMAL_PLACES = 18
# Largest whole number accepted (a count such as holding_days): what an integer
# column holds.
MAX_COUNT = 2**31 - 1

# Timestamps: YYYY-MM-DD, optionally followed by `T` or a space and HH:MM[:SS[.fraction]],
# then optionally `Z` or an offset ±HH[:MM] (none means UTC). Nothing else: no words
# (BC, AD, epoch, today), no other separators. Validation compares the value's shape,
# every digit read as 9, with these.
MAX_FRACTION_DIGITS = 9  # nanoseconds; PostgreSQL keeps microseconds (rounds)
DATE_SHAPES: tuple[str, ...] = ("9999-99-99",)
_TIMES = ("99:99", "99:99:99", *(f"99:99:99.{'9' * n}" for n in range(1, MAX_FRACTION_DIGITS + 1)))
_ZONES = ("", "Z", "+99", "-99", "+99:99", "-99:99")
TIMESTAMP_SHAPES: tuple[str, ...] = (
    *DATE_SHAPES,
    *(f"{DATE_SHAPES[0]}{sep}{time}{zone}" for sep in "T " for time in _TIMES for zone in _ZONES),
)
# Earliest and latest instants accepted (after conversion to UTC): years 1 to 9999,
# what every client library, BI tool and ISO 8601 itself (4-digit years) can hold.
MIN_TIMESTAMP_UTC = "0001-01-01 00:00:00+00"
END_TIMESTAMP_UTC = "10000-01-01 00:00:00+00"  # exclusive
