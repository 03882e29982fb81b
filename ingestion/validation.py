"""Set-based validation in SQL: route a landed batch to raw or to the quarantine.

Three statements per batch: mark the rows that break a rule (with every reason),
copy them to `raw.quarantine`, insert the rest, typed, into `raw.<entity>`.

Validating in the database instead of row by row in Python keeps ingestion near
COPY speed (SPEC §7). The SQL is composed from the contracts with `psycopg.sql`:
identifiers and our own constants only — data values travel as COPY data or bound
parameters and are never pasted into SQL text.

Every reason names the field, the value (quoted, truncated to 80 characters) and
what was expected, so a person can fix the source row (SPEC §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from ingestion.contracts import FORMULA_PREFIXES, MAX_FIELD_CHARS, Entity, Field, Kind

LANDING_TABLE = "landing"
# Row-level problems found while parsing (bad CSV/JSON) arrive in these columns.
PARSE_ERROR = "_parse_error"
RAW_TEXT = "_raw_text"
LINE_NO = "_line_no"
REASON = "_reason"  # set by mark_rejects_sql on rows bound for the quarantine

# Shape checks before the type's own parser, which also accepts words
# ('yesterday', 'NaN'), other date orders and `1_000` / `0x1F` numbers that the
# contract does not: timestamps must start YYYY-MM-DD, numbers use only these
# characters. Cheap string functions, not regular expressions: they run on every row.
_DECIMAL_CHARS = "0123456789.eE+-"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def landing_ddl(entity: Entity) -> sql.Composed:
    """A temporary table of text columns that COPY fills; dropped at commit."""
    columns = [
        sql.SQL("{} bigint not null").format(sql.Identifier(LINE_NO)),
        sql.SQL("{} text").format(sql.Identifier(PARSE_ERROR)),
        sql.SQL("{} text").format(sql.Identifier(RAW_TEXT)),
        sql.SQL("{} text").format(sql.Identifier(REASON)),
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
    value = normalized(field)
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
    v = sql.SQL("({})").format(normalized(field))
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
        other = sql.SQL("({})").format(normalized(entity.field(other_name)))
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
            sql.SQL("coalesce(length({}) <= {}, true)").format(raw, sql.Literal(MAX_FIELD_CHARS)),
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
                        "coalesce(length({v}) <= {max_length}"
                        " and substr({v}, 5, 1) = '-' and substr({v}, 8, 1) = '-'"
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
    return Rule(
        sql.SQL("coalesce({} not in ({}), true)").format(
            first, sql.SQL(", ").join(map(sql.Literal, FORMULA_PREFIXES))
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


def mark_rejects_sql(entity: Entity) -> sql.Composed:
    """Set `_reason` on every landed row that must be quarantined (all its problems)."""
    found = _all_rules(entity)
    all_ok = sql.SQL(" and ").join(sql.SQL("({})").format(r.ok) for r in found)
    reasons = sql.SQL(", ").join(
        sql.SQL("case when not coalesce({}, false) then {} end").format(r.ok, r.message)
        for r in found
    )
    return sql.SQL(
        "update {landing} set {reason} = coalesce({parse_error}, concat_ws('; ', {reasons}))"
        " where {parse_error} is not null or not coalesce({all_ok}, false)"
    ).format(
        landing=sql.Identifier(LANDING_TABLE),
        reason=sql.Identifier(REASON),
        parse_error=sql.Identifier(PARSE_ERROR),
        reasons=reasons,
        all_ok=all_ok,
    )


def quarantine_sql(entity: Entity) -> sql.Composed:
    """Copy the marked rows to raw.quarantine. Parameters: batch_id, entity, source_file."""
    record = sql.SQL("jsonb_build_object({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(f.name), sql.Identifier(f.name))
            for f in entity.fields
        )
    )
    return sql.SQL(
        """
        insert into raw.quarantine (batch_id, entity, source_file, line_no, record, raw_text, reason)
        select %(batch_id)s, %(entity)s, %(source_file)s, {line_no},
               case when {parse_error} is null then {record} end, {raw_text}, {reason}
        from {landing}
        where {reason} is not null
        """
    ).format(
        line_no=sql.Identifier(LINE_NO),
        parse_error=sql.Identifier(PARSE_ERROR),
        record=record,
        raw_text=sql.Identifier(RAW_TEXT),
        reason=sql.Identifier(REASON),
        landing=sql.Identifier(LANDING_TABLE),
    )


def load_valid_sql(entity: Entity) -> sql.Composed:
    """Insert the unmarked rows, typed, into raw.<entity>. Parameter: batch_id."""
    return sql.SQL(
        """
        insert into raw.{table} (batch_id, line_no, {target_cols})
        select %(batch_id)s, {line_no}, {typed_cols}
        from {landing}
        where {reason} is null
        """
    ).format(
        table=sql.Identifier(entity.table),
        target_cols=sql.SQL(", ").join(sql.Identifier(f.name) for f in entity.fields),
        line_no=sql.Identifier(LINE_NO),
        typed_cols=sql.SQL(", ").join(typed(f) for f in entity.fields),
        landing=sql.Identifier(LANDING_TABLE),
        reason=sql.Identifier(REASON),
    )
