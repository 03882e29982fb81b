"""Set-based validation in SQL: one statement routes a landed batch to raw or quarantine.

Validating in the database instead of row by row in Python keeps ingestion near
COPY speed (SPEC §7). The SQL is composed from the contracts with `psycopg.sql`:
identifiers and our own constants only — data values travel as COPY data or bound
parameters and are never pasted into SQL text.

Every reason names the field, the value (quoted, truncated to 80 characters) and
what was expected, so a person can fix the source row (SPEC §3.2).
"""

from __future__ import annotations

from psycopg import sql

from ingestion.contracts import MAX_FIELD_CHARS, Entity, Field, Kind

LANDING_TABLE = "landing"
# Row-level problems found while parsing (bad CSV/JSON) arrive in these columns.
PARSE_ERROR = "_parse_error"
RAW_TEXT = "_raw_text"
LINE_NO = "_line_no"

_TIMESTAMP_RE = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?"
    r"(Z|z|[+-]\d{2}(:?\d{2})?)?$"
)
_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_DECIMAL_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def landing_ddl(entity: Entity) -> sql.Composed:
    """A temporary table of text columns that COPY fills; dropped at commit."""
    columns = [
        sql.SQL("{} bigint not null").format(sql.Identifier(LINE_NO)),
        sql.SQL("{} text").format(sql.Identifier(PARSE_ERROR)),
        sql.SQL("{} text").format(sql.Identifier(RAW_TEXT)),
        *(sql.SQL("{} text").format(sql.Identifier(name)) for name in entity.field_names),
    ]
    return sql.SQL("create temporary table {} ({}) on commit drop").format(
        sql.Identifier(LANDING_TABLE), sql.SQL(", ").join(columns)
    )


def _src(field: Field) -> sql.Composable:
    return sql.SQL("nullif({}, '')").format(sql.Identifier(field.name))


def _trimmed(field: Field) -> sql.Composable:
    return sql.SQL("nullif(btrim({}), '')").format(sql.Identifier(field.name))


def _shown(value: sql.Composable) -> sql.Composable:
    return sql.SQL("quote_literal(left({}, 80))").format(value)


def normalized(field: Field) -> sql.Composable:
    """The field's value as text after the contract's normalization (null if empty)."""
    match field.kind:
        case Kind.TEXT:
            value = _src(field)
        case Kind.LOWER_TEXT:
            value = sql.SQL("lower({})").format(_src(field))
        case Kind.ENUM:
            value = sql.SQL("lower({})").format(_trimmed(field))
        case Kind.CURRENCY:
            value = sql.SQL("upper({})").format(_trimmed(field))
        case _:
            value = _trimmed(field)
    if field.default is not None:
        value = sql.SQL("coalesce({}, {})").format(value, sql.Literal(field.default))
    return value


def typed(field: Field) -> sql.Composable:
    """The normalized value cast to the raw table's column type."""
    value = sql.Identifier(f"v_{field.name}")
    match field.kind:
        case Kind.TIMESTAMP:
            return sql.SQL("{}::timestamptz").format(value)
        case Kind.DATE:
            return sql.SQL("{}::date").format(value)
        case Kind.AMOUNT | Kind.POSITIVE_AMOUNT:
            return sql.SQL("{}::numeric").format(value)
        case _:
            return value


def _message(template: str, *args: sql.Composable) -> sql.Composable:
    """`template` with each `%s` replaced by an SQL expression, by concatenation.

    (Not `format()`: a `%` in the statement text would clash with the driver's
    parameter placeholders.)
    """
    pieces = template.split("%s")
    assert len(pieces) == len(args) + 1, template
    parts: list[sql.Composable] = [sql.Literal(pieces[0])]
    for arg, piece in zip(args, pieces[1:], strict=True):
        parts += [sql.SQL("({})::text").format(arg), sql.Literal(piece)]
    return sql.SQL("concat({})").format(sql.SQL(", ").join(parts))


def problems(field: Field) -> list[sql.Composable]:
    """SQL expressions, each a reason text when the rule is broken, else null."""
    name = field.name
    v = sql.Identifier(f"v_{name}")
    found: list[sql.Composable] = []
    if field.required:
        found.append(
            sql.SQL("case when {} is null then {} end").format(
                v, sql.Literal(f"{name}: required field is missing or empty")
            )
        )
    if field.required_when is not None:
        other, values = field.required_when
        found.append(
            sql.SQL("case when {} is null and {} in ({}) then {} end").format(
                v,
                sql.Identifier(f"v_{other}"),
                sql.SQL(", ").join(map(sql.Literal, values)),
                _message(f"{name}: required when {other} is %s", sql.Identifier(f"v_{other}")),
            )
        )
    found.append(
        sql.SQL("case when length({}) > {} then {} end").format(
            sql.Identifier(name),
            sql.Literal(MAX_FIELD_CHARS),
            _message(
                f"{name}: value is %s characters long; at most {MAX_FIELD_CHARS} are accepted",
                sql.SQL("length({})").format(sql.Identifier(name)),
            ),
        )
    )
    match field.kind:
        case Kind.ENUM:
            found.append(
                sql.SQL(
                    "case when {v} is not null and {v} not in ({choices}) then {msg} end"
                ).format(
                    v=v,
                    choices=sql.SQL(", ").join(map(sql.Literal, field.choices)),
                    msg=_message(
                        f"{name}: %s is not one of {', '.join(field.choices)}",
                        _shown(sql.Identifier(name)),
                    ),
                )
            )
        case Kind.CURRENCY:
            found.append(
                sql.SQL("case when {v} !~ '^[A-Z]{{3}}$' then {msg} end").format(
                    v=v,
                    msg=_message(
                        f"{name}: %s is not a 3-letter ISO 4217 currency code",
                        _shown(sql.Identifier(name)),
                    ),
                )
            )
        case Kind.TIMESTAMP | Kind.DATE:
            pattern, pg_type, expected = (
                (_TIMESTAMP_RE, "timestamptz", "an ISO 8601 timestamp such as 2026-01-31T09:30:00Z")
                if field.kind is Kind.TIMESTAMP
                else (_DATE_RE, "date", "an ISO 8601 date such as 2026-01-31")
            )
            found.append(
                sql.SQL(
                    "case when {v} is not null and ({v} !~ {pattern}"
                    " or not pg_input_is_valid({v}, {pg_type})) then {msg} end"
                ).format(
                    v=v,
                    pattern=sql.Literal(pattern),
                    pg_type=sql.Literal(pg_type),
                    msg=_message(f"{name}: %s is not {expected}", _shown(sql.Identifier(name))),
                )
            )
        case Kind.AMOUNT | Kind.POSITIVE_AMOUNT:
            positive = field.kind is Kind.POSITIVE_AMOUNT
            found.append(
                sql.SQL(
                    "case when {v} is null then null"
                    " when {v} !~ {pattern} or not pg_input_is_valid({v}, 'numeric') then {bad}"
                    " when {v}::numeric {cmp} 0 then {out_of_range} end"
                ).format(
                    v=v,
                    pattern=sql.Literal(_DECIMAL_RE),
                    bad=_message(
                        f"{name}: %s is not a decimal number"
                        " (expected digits with '.' as the decimal separator)",
                        _shown(sql.Identifier(name)),
                    ),
                    cmp=sql.SQL("<=" if positive else "<"),
                    out_of_range=_message(
                        f"{name}: %s is {'not greater than 0' if positive else 'negative'}"
                        f" (expected {'> 0' if positive else '>= 0'})",
                        _shown(sql.Identifier(name)),
                    ),
                )
            )
        case _:
            pass
    return found


def route_batch_sql(entity: Entity) -> sql.Composed:
    """One statement: valid rows into raw.<entity>, the rest into raw.quarantine.

    Parameters: batch_id, entity, source_file. Returns (loaded, quarantined).
    """
    fields = entity.fields
    normalized_cols = sql.SQL(", ").join(
        sql.SQL("{} as {}").format(normalized(f), sql.Identifier(f"v_{f.name}")) for f in fields
    )
    all_problems = [p for f in fields for p in problems(f)]
    record = sql.SQL("jsonb_build_object({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(f.name), sql.Identifier(f.name)) for f in fields
        )
    )
    target_cols = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields)
    typed_cols = sql.SQL(", ").join(typed(f) for f in fields)
    return sql.SQL(
        """
        with normalized as (
            select l.*, {normalized_cols} from {landing} as l
        ),
        checked as (
            select n.*,
                   coalesce(n.{parse_error}, nullif(concat_ws('; ', {problems}), '')) as _reason
            from normalized as n
        ),
        quarantined as (
            insert into raw.quarantine
                (batch_id, entity, source_file, line_no, record, raw_text, reason)
            select %(batch_id)s, %(entity)s, %(source_file)s, {line_no},
                   case when {parse_error} is null then {record} end, {raw_text}, _reason
            from checked
            where _reason is not null
            returning 1
        ),
        loaded as (
            insert into raw.{table} (batch_id, line_no, {target_cols})
            select %(batch_id)s, {line_no}, {typed_cols}
            from checked
            where _reason is null
            returning 1
        )
        select (select count(*) from loaded), (select count(*) from quarantined)
        """
    ).format(
        normalized_cols=normalized_cols,
        landing=sql.Identifier(LANDING_TABLE),
        parse_error=sql.Identifier(PARSE_ERROR),
        problems=sql.SQL(", ").join(all_problems),
        line_no=sql.Identifier(LINE_NO),
        record=record,
        raw_text=sql.Identifier(RAW_TEXT),
        table=sql.Identifier(entity.table),
        target_cols=target_cols,
        typed_cols=typed_cols,
    )
