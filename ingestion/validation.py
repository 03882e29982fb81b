"""Set-based validation in SQL: route a landed batch to raw or to the quarantine.

Two statements per batch, each a `COPY (select ...) TO STDOUT` that the loader
streams into the batch's session: the rows that pass every rule, typed, for
`raw.<entity>`; then, only when some row did not pass, the others with every
reason, for `raw.quarantine`. Both read the landing table through
`source_sql`, which computes each field's normalized value once per row (a
subquery with OFFSET 0, so PostgreSQL does not inline the expressions back into
every rule that uses them) and the line number.

Validating in the database instead of row by row in Python keeps ingestion near
COPY speed (SPEC §7). The SQL is composed from the contracts with `psycopg.sql`:
identifiers and our own constants only — data values travel as COPY data or bound
parameters and are never pasted into SQL text.

Every reason names the field, the value (quoted, truncated to 80 characters) and
what was expected, so a person can fix the source row (SPEC §3.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from psycopg import sql

from ingestion.contracts import FORMULA_PREFIXES, MAX_FIELD_CHARS, Entity, Field, Kind

LANDING_TABLE = "landing"
# Row-level problems found while parsing (bad CSV/JSON) arrive in these columns.
PARSE_ERROR = "_parse_error"
RAW_TEXT = "_raw_text"
LINE_NO = "_line_no"
NORMALIZED = "_n_"  # prefix of the normalized copy of each field in source_sql

# Shape checks before the type's own parser, which also accepts words
# ('yesterday', 'NaN'), other date orders and `1_000` / `0x1F` numbers that the
# contract does not: timestamps must start YYYY-MM-DD, numbers use only these
# characters. Cheap string functions, not regular expressions: they run on every row.
_DECIMAL_CHARS = "0123456789.eE+-"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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


def typed(field: Field) -> sql.Composable:
    """The normalized value cast to the raw table's column type (reads `source_sql`)."""
    value = normalized_column(field)
    match field.kind:
        case Kind.TIMESTAMP:
            return sql.SQL("({})::timestamptz").format(value)
        case Kind.DATE:
            return sql.SQL("({})::date").format(value)
        case Kind.AMOUNT | Kind.POSITIVE_AMOUNT:
            return sql.SQL("({})::numeric").format(value)
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
            is_ts = field.kind is Kind.TIMESTAMP
            found.append(
                Rule(
                    sql.SQL(
                        # Byte length and LIKE: the cheapest shape checks (they run on
                        # every row); YYYY-MM-DD at the start, then the type's parser.
                        "coalesce(octet_length({v}) <= {max_length} and {v} like '____-__-__%'"
                        " and pg_input_is_valid({v}, {pg_type}), true)"
                    ).format(
                        v=v,
                        max_length=sql.Literal(40 if is_ts else 10),
                        pg_type=sql.Literal("timestamptz" if is_ts else "date"),
                    ),
                    _message(
                        f"{name}: %s is not "
                        + (
                            "an ISO 8601 timestamp such as 2026-01-31T09:30:00Z"
                            if is_ts
                            else "an ISO 8601 date such as 2026-01-31"
                        ),
                        shown,
                    ),
                )
            )
        case Kind.AMOUNT | Kind.POSITIVE_AMOUNT:
            positive = field.kind is Kind.POSITIVE_AMOUNT
            parses = sql.SQL(
                "(translate({v}, {chars}, '') = '' and pg_input_is_valid({v}, 'numeric'))"
            ).format(v=v, chars=sql.Literal(_DECIMAL_CHARS))
            found.append(
                Rule(
                    sql.SQL("coalesce({}, true)").format(parses),
                    _message(
                        f"{name}: %s is not a decimal number"
                        " (expected digits with '.' as the decimal separator)",
                        shown,
                    ),
                )
            )
            found.append(
                Rule(
                    # Only judged once the value parses (CASE keeps the cast from running early).
                    sql.SQL(
                        "case when {v} is null or not {parses} then true else {v}::numeric {cmp} 0 end"
                    ).format(v=v, parses=parses, cmp=sql.SQL(">" if positive else ">=")),
                    _message(
                        f"{name}: %s is {'not greater than 0' if positive else 'negative'}"
                        f" (expected {'> 0' if positive else '>= 0'})",
                        shown,
                    ),
                )
            )
        case _:
            pass
    return found


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
    normalized values (`normalized_column`), parse error, raw text and line number.

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
    return sql.SQL(
        "(select {line_no} as {line_col}, {cols}, {normalized} from {rows} offset 0) as {alias}"
    ).format(
        line_no=line_no,
        line_col=sql.Identifier(LINE_NO),
        cols=sql.SQL(", ").join(base_cols),
        normalized=sql.SQL(", ").join(
            sql.SQL("{} as {}").format(normalized(f), normalized_column(f)) for f in entity.fields
        ),
        rows=rows,
        alias=landing,
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
