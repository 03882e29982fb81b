"""Set-based validation in SQL: route a landed batch to raw or to the quarantine.

Two statements per batch, each a `COPY (select ...) TO STDOUT` that the loader
streams into the batch's session: the rows that pass every rule, typed, for
`raw.<entity>`; then, only when some row did not pass, the others with every
reason, for `raw.quarantine`. Both read the landing table through
`source_sql`, which computes once per row each field's normalized value, the
typed value of each timestamp, date, amount, fraction and count (null unless it
has the contract's form) and the line number (subqueries with OFFSET 0, so
PostgreSQL does not inline the expressions back into every rule that uses them).

Validating in the database instead of row by row in Python keeps ingestion near
COPY speed. The SQL is composed from the contracts with `psycopg.sql`:
identifiers and our own constants only — data values travel as COPY data or bound
parameters and are never pasted into SQL text.

Every reason names the field, the value (quoted, truncated to 80 characters) and
what was expected, so a person can fix the source row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from psycopg import sql

from ingestion.contracts import (
    DATE_SHAPES,
    END_TIMESTAMP_UTC,
    FORMULA_PREFIXES,
    MAX_AMOUNT,
    MAX_COUNT,
    MAX_DECIMAL_PLACES,
    MAX_FIELD_CHARS,
    MIN_TIMESTAMP_UTC,
    TIMESTAMP_SHAPES,
    Entity,
    Field,
    Kind,
)

LANDING_TABLE = "landing"
# Row-level problems found while parsing (bad CSV/JSON) arrive in these columns.
PARSE_ERROR = "_parse_error"
RAW_TEXT = "_raw_text"
LINE_NO = "_line_no"
NORMALIZED = "_n_"  # prefix of the normalized copy of each field in source_sql
PARSED = "_v_"  # prefix of the typed value of a field of a typed kind in source_sql

# Shape checks before the type's own parser, which also accepts words
# ('yesterday', 'NaN', '2026-02-01 BC', 'epoch'), other date orders and `1_000` /
# `0x1F` numbers that the contract does not: a timestamp's digits are all mapped to
# '9' and the result must be one of the contract's shapes (a hashed IN list); numbers
# use only these characters. Cheap string functions, not regular expressions: they
# run on every row.
_DECIMAL_CHARS = "0123456789.eE+-"
_DIGITS = "0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS_BUT_NINE, _NINES = "012345678", "999999999"


def landing_ddl(entity: Entity, extra_columns: Sequence[str] = ()) -> sql.Composed:
    """A temporary table of text columns that COPY fills; dropped at commit.

    `extra_columns` receive a file's unknown columns when PostgreSQL parses the CSV
    itself (COPY needs a target for every column of the file). `_line_no` stays
    null on that path: `source_sql` numbers the rows instead.
    """
    columns = [
        sql.SQL("{} bigint").format(sql.Identifier(LINE_NO)),
        sql.SQL("{} text").format(sql.Identifier(PARSE_ERROR)),
        sql.SQL("{} text").format(sql.Identifier(RAW_TEXT)),
        *(sql.SQL("{} text").format(sql.Identifier(name)) for name in entity.field_names),
        *(sql.SQL("{} text").format(sql.Identifier(name)) for name in extra_columns),
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


def normalized_column(field: Field) -> sql.Identifier:
    """The column of `source_sql` holding `normalized(field)`, computed once per row."""
    return sql.Identifier(NORMALIZED + field.name)


def parsed_column(field: Field) -> sql.Identifier:
    """The column of `source_sql` holding `parsed(field)`."""
    return sql.Identifier(PARSED + field.name)


def _pg_type(field: Field) -> str | None:
    """The raw column's type when it is not text (the contract declares it)."""
    return None if field.raw_type == "text" else field.raw_type


def parsed(field: Field) -> sql.Composable | None:
    """The normalized value as its raw column's type when PostgreSQL can read it,
    else null (reads the normalized columns); None for text kinds.

    Computed once per row by `source_sql`: the rules check its form and bounds and
    the valid rows are written from it, so each value is parsed by
    `pg_input_is_valid` and cast once (a cast alone would fail the whole batch).
    A cheap gate comes first; the strict form is a rule (`_temporal_rules`).
    """
    pg_type = _pg_type(field)
    if pg_type is None:
        return None
    v = normalized_column(field)
    if field.kind is Kind.TIMESTAMP or field.kind is Kind.DATE:
        shapes = TIMESTAMP_SHAPES if field.kind is Kind.TIMESTAMP else DATE_SHAPES
        gate = sql.SQL("octet_length({v}) <= {max_length} and {v} like '____-__-__%'").format(
            v=v, max_length=sql.Literal(max(map(len, shapes)))
        )
    else:
        gate = _form(field)
    return sql.SQL(
        "case when {gate} and pg_input_is_valid({v}, {type_name}) then ({v})::{pg_type} end"
    ).format(gate=gate, v=v, type_name=sql.Literal(pg_type), pg_type=sql.SQL(pg_type))


def _form(field: Field) -> sql.Composable:
    """True when the normalized value has the contract's form, by its characters alone."""
    v = normalized_column(field)
    if field.kind is Kind.TIMESTAMP or field.kind is Kind.DATE:
        shapes = TIMESTAMP_SHAPES if field.kind is Kind.TIMESTAMP else DATE_SHAPES
        return sql.SQL(
            # Byte length first: translate() only runs on short values.
            "octet_length({v}) <= {max_length} and translate({v}, {digits}, {nines}) in ({shapes})"
        ).format(
            v=v,
            max_length=sql.Literal(max(map(len, shapes))),
            digits=sql.Literal(_DIGITS_BUT_NINE),
            nines=sql.Literal(_NINES),
            shapes=sql.SQL(", ").join(map(sql.Literal, shapes)),
        )
    chars = _DIGITS if field.kind is Kind.COUNT else _DECIMAL_CHARS
    return sql.SQL("translate({v}, {chars}, '') = ''").format(v=v, chars=sql.Literal(chars))


def _canonical(field: Field) -> sql.Composable:
    """True when the value is exactly how PostgreSQL writes what it read (ISO
    DateStyle, UTC): `2026-01-31`, `2026-01-31[T ]09:30:00` and `...Z`.

    The form of the common values, proven for about a third of the CPU of
    `_form`'s translate() (which costs ~1 µs per timestamp): a value equal to that
    output has digits exactly where the output has them. Other values (offsets,
    fractions, another DateStyle) fall back to `_form`. Null when not parsed.
    """
    n, v = normalized_column(field), parsed_column(field)
    if field.kind is Kind.DATE:
        return sql.SQL("({v})::text = {n}").format(v=v, n=n)
    # Only these lengths: another would let a ' BC' in the output match.
    return sql.SQL(
        "case octet_length({n})"
        " when 20 then replace(replace({n}, 'T', ' '), 'Z', '+00')"
        " when 19 then replace({n}, 'T', ' ') || '+00'"
        " when 10 then {n} || ' 00:00:00+00' end = ({v})::text"
    ).format(n=n, v=v)


def typed(field: Field) -> sql.Composable:
    """The value for the raw table's column (reads `source_sql`)."""
    if _pg_type(field) is not None:
        return parsed_column(field)
    return normalized_column(field)


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


@dataclass(frozen=True)
class Rule:
    """A check on one field: `ok` is true when the row passes; `message` says why not.

    `ok` is evaluated for every row, so it is kept cheap; `message` only for the
    (few) rows that fail.
    """

    ok: sql.Composable
    message: sql.Composable


def rules(field: Field, entity: Entity) -> list[Rule]:
    name = field.name
    raw = sql.Identifier(name)
    v = normalized_column(field)  # normalized(field), computed once per row by source_sql
    shown = _shown(raw)
    found: list[Rule] = []
    if field.required:
        found.append(
            Rule(
                sql.SQL("{} is not null").format(v),
                sql.Literal(f"{name}: required field is missing or empty"),
            )
        )
    if field.required_when is not None:
        other_name, values = field.required_when
        other = normalized_column(entity.field(other_name))
        found.append(
            Rule(
                sql.SQL("({} is not null or {} is null or {} not in ({}))").format(
                    v, other, other, sql.SQL(", ").join(map(sql.Literal, values))
                ),
                _message(f"{name}: required when {other_name} is %s", other),
            )
        )
    if field.identifier:
        found.append(_formula_rule(name, raw))
    found.append(
        Rule(
            # Bytes first: never fewer than characters, and far cheaper to get.
            sql.SQL(
                "coalesce(octet_length({raw}) <= {max} or length({raw}) <= {max}, true)"
            ).format(raw=raw, max=sql.Literal(MAX_FIELD_CHARS)),
            _message(
                f"{name}: value is %s characters long; at most {MAX_FIELD_CHARS} are accepted",
                sql.SQL("length({})").format(raw),
            ),
        )
    )
    match field.kind:
        case Kind.ENUM:
            found.append(
                Rule(
                    sql.SQL("coalesce({} in ({}), true)").format(
                        v, sql.SQL(", ").join(map(sql.Literal, field.choices))
                    ),
                    _message(f"{name}: %s is not one of {', '.join(field.choices)}", shown),
                )
            )
        case Kind.CURRENCY:
            found.append(
                Rule(
                    sql.SQL(
                        "coalesce(length({v}) = 3 and translate({v}, {letters}, '') = '', true)"
                    ).format(v=v, letters=sql.Literal(_LETTERS)),
                    _message(f"{name}: %s is not a 3-letter ISO 4217 currency code", shown),
                )
            )
        case Kind.TIMESTAMP | Kind.DATE:
            found += _temporal_rules(field, shown)
        case Kind.AMOUNT | Kind.POSITIVE_AMOUNT | Kind.FRACTION:
            found += _decimal_rules(field, shown)
        case Kind.COUNT:
            found.append(_count_rule(field, shown))
        case _:
            pass
    if field.after is not None:
        found.append(_after_rule(field, entity.field(field.after), shown))
    return found


def _temporal_rules(field: Field, shown: sql.Composable) -> list[Rule]:
    """The contract's form (on the characters, and a real instant or day) and, for a
    timestamp, an instant within the years 1 to 9999 in UTC: '9999-12-31T23:00:00-12:00'
    is in year 10000 there, and no client, BI tool or 4-digit ISO year can show it."""
    name = field.name
    n, v = normalized_column(field), parsed_column(field)
    is_ts = field.kind is Kind.TIMESTAMP
    # PostgreSQL also reads '2026-02-01 BC', '!026-01-15', '2026-01-1 T10:00': the form
    # is checked on the characters. The round trip first; translate() runs only for
    # the values it does not prove.
    strict = sql.SQL("(coalesce({canonical}, false) or {form})").format(
        canonical=_canonical(field), form=_form(field)
    )
    form_rule = Rule(
        sql.SQL("({n} is null or ({v} is not null and {strict}))").format(n=n, v=v, strict=strict),
        # Only for the rows that fail: the right form but no such day or time, or not.
        sql.SQL("case when {form} then {no_such} else {wrong_form} end").format(
            form=_form(field),
            no_such=_message(
                f"{name}: %s is not an ISO 8601 {'timestamp' if is_ts else 'date'}: there is no"
                f" such {'date, time of day or UTC offset' if is_ts else 'day'}",
                shown,
            ),
            wrong_form=_message(
                f"{name}: %s is not an ISO 8601 timestamp such as 2026-01-31T09:30:00Z"
                " (expected YYYY-MM-DD, optionally T or a space and HH:MM[:SS[.fraction]],"
                " then optionally Z or an offset such as +02:00)"
                if is_ts
                else f"{name}: %s is not an ISO 8601 date such as 2026-01-31",
                shown,
            ),
        ),
    )
    if not is_ts:
        # 4 digits and PostgreSQL's refusal of year 0 keep a date within 1 to 9999.
        return [form_rule]
    first, end = sql.Literal(MIN_TIMESTAMP_UTC), sql.Literal(END_TIMESTAMP_UTC)
    return [
        form_rule,
        Rule(
            # Judged only for values of the right form (the form rule names the others).
            sql.SQL(
                "({v} is null or ({v} >= {first}::timestamptz and {v} < {end}::timestamptz)"
                " or not {strict})"
            ).format(v=v, first=first, end=end, strict=strict),
            _message(
                f"{name}: %s is %s in UTC, outside the years 1 to 9999"
                " (expected a timestamp from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z)",
                shown,
                v,
            ),
        ),
    ]


def _decimal_rules(field: Field, shown: sql.Composable) -> list[Rule]:
    """A decimal number, then its bounds: for an amount the sign and MAX_AMOUNT, for a
    fraction 0 to 1; for both at most MAX_DECIMAL_PLACES."""
    name = field.name
    n, v = normalized_column(field), parsed_column(field)
    if field.kind is Kind.FRACTION:
        bounds = "a decimal fraction from 0 to 1, such as 0.15 for 15 %"
        out_of_range = _message(f"{name}: %s is not between 0 and 1 (expected {bounds})", shown)
        range_rules = [
            Rule(
                sql.SQL("({v} is null or ({v} >= 0 and {v} <= 1))").format(v=v),
                out_of_range,
            )
        ]
    else:
        positive = field.kind is Kind.POSITIVE_AMOUNT
        bounds = f"at most {MAX_AMOUNT} with at most {MAX_DECIMAL_PLACES} decimal places"
        out_of_range = _message(f"{name}: %s is out of range (expected {bounds})", shown)
        range_rules = [
            Rule(
                sql.SQL("({v} is null or {v} {cmp} 0)").format(
                    v=v, cmp=sql.SQL(">" if positive else ">=")
                ),
                _message(
                    f"{name}: %s is {'not greater than 0' if positive else 'negative'}"
                    f" (expected {'> 0' if positive else '>= 0'})",
                    shown,
                ),
            ),
            Rule(
                sql.SQL("({v} is null or {v} <= {max}::numeric)").format(
                    v=v, max=sql.Literal(str(MAX_AMOUNT))
                ),
                _message(f"{name}: %s is too large (expected at most {MAX_AMOUNT})", shown),
            ),
        ]
    return [
        Rule(
            sql.SQL("({} is null or {} is not null)").format(n, v),
            # Only for the rows that fail: '1e999999' is a number numeric cannot hold.
            sql.SQL(
                "case when translate({n}, {chars}, '') = ''"
                " and (pg_input_error_info({n}, 'numeric')).sql_error_code = '22003'"
                " then {out_of_range} else {not_a_number} end"
            ).format(
                n=n,
                chars=sql.Literal(_DECIMAL_CHARS),
                out_of_range=out_of_range,
                not_a_number=_message(
                    f"{name}: %s is not a decimal number"
                    " (expected digits with '.' as the decimal separator)",
                    shown,
                ),
            ),
        ),
        *range_rules,
        Rule(
            sql.SQL("({v} is null or scale({v}) <= {places})").format(
                v=v, places=sql.Literal(MAX_DECIMAL_PLACES)
            ),
            _message(
                f"{name}: %s has %s decimal places (expected at most {MAX_DECIMAL_PLACES})",
                shown,
                sql.SQL("scale({})").format(v),
            ),
        ),
    ]


def _count_rule(field: Field, shown: sql.Composable) -> Rule:
    """Digits only (no sign, point or exponent: '-3', '2.5', '1e3' are not counts), at
    most MAX_COUNT. One rule: a value of digits that did not parse is too large."""
    name = field.name
    n, v = normalized_column(field), parsed_column(field)
    return Rule(
        sql.SQL("({} is null or {} is not null)").format(n, v),
        sql.SQL("case when {form} then {too_large} else {not_a_count} end").format(
            form=_form(field),
            too_large=_message(
                f"{name}: %s is too large for an integer ≥ 0 (expected at most {MAX_COUNT})",
                shown,
            ),
            not_a_count=_message(
                f"{name}: %s is not an integer ≥ 0 (expected digits only, such as 30)", shown
            ),
        ),
    )


def _after_rule(field: Field, other: Field, shown: sql.Composable) -> Rule:
    """A value later than the other field's (typed values: a day after a day). Judged
    only when both are valid; the other rules name a missing or malformed one."""
    v, w = parsed_column(field), parsed_column(other)
    return Rule(
        sql.SQL("({v} is null or {w} is null or {v} > {w})").format(v=v, w=w),
        _message(
            f"{field.name}: %s is not after {other.name} %s"
            f" (expected {field.name} later than {other.name}, or empty)",
            shown,
            _shown(sql.Identifier(other.name)),
        ),
    )


def _formula_rule(name: str, raw: sql.Composable) -> Rule:
    """An identifier must not start like a spreadsheet formula (`=cmd`, `@SUM(A1)`).

    Identifiers are join keys shown as-is in every export, so unlike display text
    they cannot be neutralized by prefixing a quote downstream; such a row is
    quarantined instead (docs/ingestion.md, "Hostile input").
    """
    first = sql.SQL("left({}, 1)").format(raw)
    # ascii() of the first character (0 for ''), compared as integers: a third of
    # the CPU of left() and text comparisons, on every identifier of every row.
    return Rule(
        sql.SQL("coalesce(ascii({}) not in ({}), true)").format(
            raw, sql.SQL(", ").join(sql.Literal(ord(prefix)) for prefix in FORMULA_PREFIXES)
        ),
        _message(
            f"{name}: %s starts with %s, which a spreadsheet would run as a formula"
            " (expected an identifier not starting with =, +, -, @, a tab or a carriage return)",
            _shown(raw),
            sql.SQL(
                "case {first} when chr(9) then 'a tab' when chr(13) then 'a carriage return'"
                " else quote_literal({first}) end"
            ).format(first=first),
        ),
    )


def _all_rules(entity: Entity) -> list[Rule]:
    return [rule for f in entity.fields for rule in rules(f, entity)]


class LineNumbers(Enum):
    """Where a landed row's line number comes from."""

    COLUMN = "column"  # `_line_no`, filled by the Python readers
    ORDINAL = "ordinal"  # one record per line after the header: line = row number + 1
    COUNTED = "counted"  # records may span lines: add the line breaks inside earlier records


def _line_breaks(columns: Sequence[str]) -> sql.Composable:
    """Line breaks inside a row's values, counted as Python's csv reader counts lines
    (LF, CRLF and a lone CR are one line end each)."""
    parts = []
    for name in columns:
        unified = sql.SQL(
            "replace(replace(coalesce({}, ''), E'\\r\\n', E'\\n'), E'\\r', E'\\n')"
        ).format(sql.Identifier(name))
        parts.append(sql.SQL("(length({u}) - length(replace({u}, E'\\n', '')))").format(u=unified))
    return sql.SQL(" + ").join(parts)


def source_sql(
    entity: Entity,
    line_numbers: LineNumbers = LineNumbers.COLUMN,
    landed_columns: Sequence[str] = (),
) -> sql.Composed:
    """The landing table as the routing statements read it: raw fields, their
    normalized values (`normalized_column`), the typed values (`parsed_column`),
    parse error, raw text and line number.

    Row numbers come from `row_number() over ()` on a plain scan of the landing
    table, which holds its rows in file order: it is created in the same
    (sub)transaction as the one COPY that fills it, so COPY skips the free space
    map and only appends, page after page; and a temporary table is never scanned
    in parallel or from a synchronized start. `landed_columns` (every text column COPY filled) is only
    needed for LineNumbers.COUNTED.
    """
    landing = sql.Identifier(LANDING_TABLE)
    base_cols = [
        sql.Identifier(PARSE_ERROR),
        sql.Identifier(RAW_TEXT),
        *(sql.Identifier(name) for name in entity.field_names),
    ]
    match line_numbers:
        case LineNumbers.COLUMN:
            rows: sql.Composable = landing
            line_no: sql.Composable = sql.Identifier(LINE_NO)
        case LineNumbers.ORDINAL:
            rows = landing
            line_no = sql.SQL("row_number() over () + 1")
        case LineNumbers.COUNTED:
            rows = sql.SQL(
                "(select row_number() over () as _ord, ({breaks}) as _breaks, {cols} from {landing}) as numbered"
            ).format(
                breaks=_line_breaks(landed_columns),
                cols=sql.SQL(", ").join(base_cols),
                landing=landing,
            )
            line_no = sql.SQL(
                "_ord + 1 + coalesce(sum(_breaks) over"
                " (order by _ord rows between unbounded preceding and 1 preceding), 0)"
            )
    normalized_rows = sql.SQL(
        "(select {line_no} as {line_col}, {cols}, {normalized} from {rows} offset 0)"
    ).format(
        line_no=line_no,
        line_col=sql.Identifier(LINE_NO),
        cols=sql.SQL(", ").join(base_cols),
        normalized=sql.SQL(", ").join(
            sql.SQL("{} as {}").format(normalized(f), normalized_column(f)) for f in entity.fields
        ),
        rows=rows,
    )
    typed_values = [
        sql.SQL("{} as {}").format(expr, parsed_column(f))
        for f in entity.fields
        if (expr := parsed(f)) is not None
    ]
    if not typed_values:
        return sql.SQL("{} as {}").format(normalized_rows, landing)
    # A second level: the typed values read the normalized ones, computed once.
    return sql.SQL("(select *, {typed} from {rows} as normalized offset 0) as {alias}").format(
        typed=sql.SQL(", ").join(typed_values), rows=normalized_rows, alias=landing
    )


def _valid(entity: Entity) -> sql.Composable:
    """True for a row that parsed and passes every rule (never null)."""
    all_ok = sql.SQL(" and ").join(sql.SQL("({})").format(r.ok) for r in _all_rules(entity))
    return sql.SQL("({} is null and coalesce({}, false))").format(
        sql.Identifier(PARSE_ERROR), all_ok
    )


def valid_rows_copy_sql(entity: Entity, source: sql.Composable, batch_id: int) -> sql.Composed:
    """`COPY ... TO STDOUT (FORMAT binary)` of the rows that pass, typed, in the column
    order of `raw_copy_sql`. COPY takes no bound parameters: `batch_id` is our own
    integer (from the ledger's identity), never data from a file."""
    return sql.SQL(
        "copy (select {batch_id}::bigint, ({line_no})::bigint, {typed_cols} from {source}"
        " where {valid}) to stdout (format binary)"
    ).format(
        batch_id=sql.Literal(int(batch_id)),
        line_no=sql.Identifier(LINE_NO),
        typed_cols=sql.SQL(", ").join(typed(f) for f in entity.fields),
        source=source,
        valid=_valid(entity),
    )


def raw_copy_sql(entity: Entity) -> sql.Composed:
    """`COPY raw.<entity> FROM STDIN (FORMAT binary)`: COPY inserts rows in bulk
    (many per page and WAL record), where INSERT ... SELECT writes them one by one."""
    return sql.SQL("copy raw.{} (batch_id, line_no, {}) from stdin (format binary)").format(
        sql.Identifier(entity.table),
        sql.SQL(", ").join(sql.Identifier(f.name) for f in entity.fields),
    )


QUARANTINE_COLUMNS = ("line_no", "record", "raw_text", "reason")


def rejected_rows_copy_sql(entity: Entity, source: sql.Composable) -> sql.Composed:
    """`COPY ... TO STDOUT` of the rows that do not pass: QUARANTINE_COLUMNS."""
    return sql.SQL("copy ({}) to stdout").format(_rejected_select(entity, source))


def _rejected_select(entity: Entity, source: sql.Composable) -> sql.Composed:
    found = _all_rules(entity)
    reasons = sql.SQL(", ").join(
        sql.SQL("case when not coalesce({}, false) then {} end").format(r.ok, r.message)
        for r in found
    )
    record = sql.SQL("jsonb_build_object({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(f.name), sql.Identifier(f.name))
            for f in entity.fields
        )
    )
    return sql.SQL(
        "select {line_no}, case when {parse_error} is null then {record} end, {raw_text},"
        " coalesce({parse_error}, concat_ws('; ', {reasons})) from {source} where not {valid}"
    ).format(
        line_no=sql.Identifier(LINE_NO),
        parse_error=sql.Identifier(PARSE_ERROR),
        record=record,
        raw_text=sql.Identifier(RAW_TEXT),
        reasons=reasons,
        source=source,
        valid=_valid(entity),
    )
