"""What must hold after any ingestion, whatever the input: the checks of the hostile-input tests.

`assert_ingested_safely` states docs/contract.md §3.1/§3.3/§3.6 as checks against the real
database: every file ends loaded or refused-and-recorded, each batch conserves its
rows (in the ledger *and* in the tables), every quarantined row says which field,
what value and what was expected, and no identifier that a spreadsheet would run
as a formula reached a raw table.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg import sql

from ingestion.contracts import ENTITY_BY_NAME, FORMULA_PREFIXES, Entity
from ingestion.discovery import classify
from ingestion.readers import file_sha256
from ingestion.service import IngestReport
from tests.ingest_helpers import RAW_TABLES  # noqa: E402 - the one list, from the contract

# Rows that are not valid CSV/JSON: the reason names the problem, raw_text keeps the text.
PARSE_ERRORS = (
    re.compile(
        r"row has \d+ fields but the header has \d+ \(unbalanced quotes or a stray delimiter\?\)"
    ),
    re.compile(r"row contains NUL bytes \(shown as \\x00\), which text fields cannot hold"),
    re.compile(r"line is not valid JSON: .+", re.S),
    re.compile(r"expected a JSON object, got \w+"),
)
# Per-field parse errors of JSONL ({field} is filled in).
FIELD_PARSE_ERRORS = (
    r"{f}: expected a string or number, got a JSON \S+",
    r"{f}: value contains a NUL character",
    r"{f}: value holds an invalid \\u escape \(lone surrogate\)",
)
# What a rule's message says was expected; every rule message holds one of these.
EXPECTATIONS = (
    "required field is missing or empty",
    "required when",
    "at most 1000000 are accepted",
    "is not one of",
    "is not a 3-letter ISO 4217 currency code",
    "is not an ISO 8601",
    "(expected digits with '.'",
    "(expected >= 0)",
    "(expected > 0)",
    "(expected at most 1000000000000000",
    "decimal places (expected at most",
    "(expected a timestamp from 0001-01-01T00:00:00Z",
    "(expected an identifier not starting with",
    "(expected a decimal fraction from 0 to 1",
    "(expected digits only",
    "(expected at most 2147483647)",
    "later than",
)


def rule_reason_problems(entity: Entity, reason: str) -> list[str]:
    """Why `reason` (a rule failure, possibly several joined by '; ') is not actionable."""
    fields = "|".join(map(re.escape, entity.field_names))
    # One message: "<field>: " then text and quoted values ('' inside a value is a
    # quote), up to "; <next field>: " or the end — a value may itself hold "; ".
    part = re.compile(
        rf"({fields}): ((?:E?'(?:[^']|'')*'|[^'])*?)(?:; (?=(?:{fields}): )|\Z)", re.S
    )
    problems = []
    pos = 0
    while pos < len(reason):
        match = part.match(reason, pos)
        if match is None:
            return [*problems, f"not '<field>: <problem>' from {reason[pos:]!r}"]
        rest = match.group(2)
        if not rest.startswith(("'", "E'", "required", "value is ")):
            problems.append(f"does not show the value: {match.group(0)!r}")
        if not any(e in rest for e in EXPECTATIONS):
            problems.append(f"does not say what was expected: {match.group(0)!r}")
        pos = match.end()
    return problems or ([] if reason else ["empty reason"])


def parse_reason_ok(entity: Entity, reason: str) -> bool:
    if any(p.fullmatch(reason) for p in PARSE_ERRORS):
        return True
    return any(
        re.fullmatch(template.format(f=re.escape(f)), reason)
        for f in entity.field_names
        for template in FIELD_PARSE_ERRORS
    )


def _count(conn: psycopg.Connection, table: str, batch_id: int) -> int:
    query = sql.SQL("select count(*) from raw.{} where batch_id = %s").format(sql.Identifier(table))
    return conn.execute(query, [batch_id]).fetchone()[0]  # type: ignore[index]


def _check_quarantine(conn: psycopg.Connection, entity: Entity, batch_id: int) -> None:
    rows = conn.execute(
        "select line_no, record, raw_text, reason, entity from raw.quarantine where batch_id = %s",
        [batch_id],
    ).fetchall()
    for line_no, record, raw_text, reason, row_entity in rows:
        assert row_entity == entity.name
        assert line_no >= 1
        assert reason, f"batch {batch_id} line {line_no}: empty reason"
        if record is not None:  # parsed, broke a rule: the record as read, every problem named
            assert set(record) == set(entity.field_names), record.keys()
            problems = rule_reason_problems(entity, reason)
            assert not problems, (batch_id, line_no, reason, problems)
        else:  # not valid CSV/JSON: the text as read, and what is wrong with it
            assert raw_text is not None, (batch_id, line_no, reason)
            assert parse_reason_ok(entity, reason), (batch_id, line_no, reason)


def _check_identifiers(conn: psycopg.Connection, entity: Entity, batch_id: int) -> None:
    for field in (f for f in entity.fields if f.identifier):
        query = sql.SQL(
            "select {col} from raw.{table} where batch_id = %s and left({col}, 1) = any(%s)"
        ).format(col=sql.Identifier(field.name), table=sql.Identifier(entity.table))
        bad = conn.execute(query, [batch_id, list(FORMULA_PREFIXES)]).fetchall()
        assert not bad, f"raw.{entity.table}.{field.name} holds formula-like ids {bad[:3]}"


def assert_ingested_safely(url: str, landing: Path, report: IngestReport) -> None:
    """Every file of `landing` ended loaded, refused-and-recorded or skipped; nothing lost."""
    assert report.errors == [], report.errors
    # By the name the ledger uses (bytes that are not UTF-8 appear as \\xNN escapes).
    on_disk = {
        classify(p).name: p for p in landing.iterdir() if p.is_file() and not p.name.startswith(".")
    }
    assert sorted(f.file_name for f in report.files) == sorted(on_disk)
    with psycopg.connect(url) as conn:
        for result in report.files:
            assert result.status in ("loaded", "refused", "skipped"), result
            ledger = conn.execute(
                "select batch_id, outcome, entity, rows_read, rows_loaded, rows_quarantined,"
                " error_message from raw.ingest_batches where file_name = %s and content_hash = %s",
                [result.file_name, file_sha256(on_disk[result.file_name])],
            ).fetchone()
            assert ledger is not None, f"{result.file_name}: not in the ledger"
            batch_id, outcome, entity_name, read, loaded, quarantined, error = ledger
            assert result.batch_id == batch_id
            assert read == loaded + quarantined
            entity = ENTITY_BY_NAME.get(entity_name) if entity_name else None
            if result.status == "refused" or outcome == "refused":
                assert outcome == "refused" and result.status in ("refused", "skipped")
                assert error and error.startswith(f"{result.file_name}: "), error
                assert len(error) > len(result.file_name) + 15, error  # says why
                if result.status == "refused":
                    assert error == result.message
                assert (read, loaded, quarantined) == (0, 0, 0)
                assert _count(conn, "quarantine", batch_id) == 0
                if entity is not None:
                    assert _count(conn, entity.table, batch_id) == 0
                continue
            assert entity is not None and error is None
            if result.status == "loaded":
                assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (
                    read, loaded, quarantined,
                )  # fmt: skip
            assert _count(conn, entity.table, batch_id) == loaded
            assert _count(conn, "quarantine", batch_id) == quarantined
            _check_quarantine(conn, entity, batch_id)
            _check_identifiers(conn, entity, batch_id)
        # No input ever dropped or renamed a table.
        for table in (*RAW_TABLES, "ingest_batches"):
            exists = conn.execute("select to_regclass(%s) is not null", [f"raw.{table}"]).fetchone()
            assert exists == (True,), f"raw.{table} is gone"
