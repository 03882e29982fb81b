"""Hostile and broken input, case by case: each file ends loaded or refused with a clear reason.

The generated counterpart is tests/test_ingestion_fuzz.py; these are the cases a
reader should be able to look up by name (wrong encodings, NUL bytes, unbalanced
quotes, 10 MB lines, 10,000 columns, SQL and spreadsheet formulas in values and
file names). Every test ends with the shared invariants of tests/ingest_invariants.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from ingestion import ingest_directory
from ingestion.contracts import ENTITIES, FORMULA_PREFIXES
from tests.ingest_helpers import fetch, write_csv, write_jsonl
from tests.ingest_invariants import assert_ingested_safely

ORG_HEADER = "org_id,name,updated_at\n"


def org(org_id: str, name: str = "Acme") -> dict[str, str]:
    return {"org_id": org_id, "name": name, "updated_at": "2026-01-01"}


def write_quoted_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Every field quoted, so a value starting with a carriage return stays one field."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)


def ingest(url: str, landing: Path):
    report = ingest_directory(url, landing)
    assert_ingested_safely(url, landing, report)
    return {f.file_name: f for f in report.files}


def test_wrong_encodings_refuse_the_file_with_line_and_bytes(db_url: str, landing: Path) -> None:
    text = ORG_HEADER + "o1,Acme,2026-01-01\no2,Müller & Søn,2026-01-01\n"
    (landing / "organizations_utf16.csv").write_bytes(text.encode("utf-16"))  # with BOM
    (landing / "organizations_utf16be.jsonl").write_bytes(
        b"\xfe\xff" + json.dumps(org("o1")).encode("utf-16-be")
    )
    (landing / "organizations_latin1.csv").write_bytes(text.encode("latin-1"))
    (landing / "organizations_overlong.csv").write_bytes(
        ORG_HEADER.encode() + b"o1,over\xc0\xaflong,2026-01-01\n"
    )
    (landing / "organizations_surrogate.jsonl").write_bytes(
        b'{"org_id": "o1", "name": "ok", "updated_at": "2026-01-01"}\n'
        b'{"org_id": "o2", "name": "\xed\xa0\x80", "updated_at": "2026-01-01"}\n'
    )
    (landing / "organizations_truncated.csv").write_bytes(
        ORG_HEADER.encode() + b"o1,euro \xe2\x82,2026-01-01\n"
    )
    (landing / "organizations_bom.csv").write_bytes(("\ufeff" + text).encode("utf-8"))
    files = ingest(db_url, landing)
    expected_refusals = {
        "organizations_utf16.csv": "line 1 (byte offset 0, bytes b'\\xff\\xfe",
        "organizations_utf16be.jsonl": "line 1 (byte offset 0, bytes b'\\xfe\\xff",
        "organizations_latin1.csv": "line 3 (byte offset 46, bytes b'\\xfc",  # 23 + 19 + 4
        "organizations_overlong.csv": "line 2 (byte offset 30, bytes b'\\xc0\\xaf",
        "organizations_surrogate.jsonl": "line 2",
        "organizations_truncated.csv": "line 2",
    }
    for name, where in expected_refusals.items():
        result = files[name]
        assert result.status == "refused", name
        assert "cannot be decoded as UTF-8 at " + where in result.message, result.message
        assert result.message.endswith("re-export the file as UTF-8")
    # A UTF-8 byte-order mark is fine: the file loads, the first column name intact.
    assert files["organizations_bom.csv"].rows_loaded == 2


def test_nul_bytes(db_url: str, landing: Path) -> None:
    (landing / "organizations_nul_header.csv").write_bytes(b"org_id,na\x00me,updated_at\n")
    (landing / "organizations_nul_rows.csv").write_bytes(
        ORG_HEADER.encode() + b"o1,nul\x00name,2026-01-01\no2,fine,2026-01-01\n\x00\n"
    )
    (landing / "organizations_nul.jsonl").write_bytes(
        b'{"org_id": "o1", "name": "a\\u0000b", "updated_at": "2026-01-01"}\n'
        b'{"org_id": "o2", "name": "raw \x00 byte", "updated_at": "2026-01-01"}\n'
        b'{"org_id": "o3", "name": "ok", "updated_at": "2026-01-01", "x\\u0000y": 1, "\\ud800": 2}\n'
        + b"[" * 5000
        + b"\x00\n"
    )
    files = ingest(db_url, landing)
    assert files["organizations_nul_header.csv"].message.endswith("header row contains NUL bytes")
    rows = files["organizations_nul_rows.csv"]
    assert (rows.rows_loaded, rows.rows_quarantined) == (1, 2)
    jsonl = files["organizations_nul.jsonl"]
    assert (jsonl.rows_read, jsonl.rows_loaded, jsonl.rows_quarantined) == (4, 1, 3)
    # Unknown keys are reported in a form the ledger can store.
    assert jsonl.ignored_columns == ["\\ud800", "x\\x00y"]
    reasons = [r for (r,) in fetch(
        db_url, "select reason from raw.quarantine where source_file = %s order by line_no",
        ["organizations_nul.jsonl"],
    )]  # fmt: skip
    assert reasons[0] == "name: value contains a NUL character"
    assert reasons[1].startswith("line is not valid JSON: Invalid control character")
    assert reasons[2] == "line is not valid JSON: nested too deeply"


def test_unbalanced_quotes(db_url: str, landing: Path) -> None:
    (landing / "organizations_quotes.csv").write_text(
        ORG_HEADER
        + 'o1,"Acme,2026-01-01\n'  # the stray quote runs to the end of the file
        + "o2,Two,2026-01-01\n"
    )
    (landing / "organizations_quote_inside.csv").write_text(
        ORG_HEADER + 'o1,Ac"me,2026-01-01\no2,"Two" Ltd,2026-01-01\no3,"",2026-01-01\n'
    )
    files = ingest(db_url, landing)
    swallowed = files["organizations_quotes.csv"]
    assert (swallowed.rows_read, swallowed.rows_quarantined) == (1, 1)
    raw = fetch(
        db_url,
        "select raw_text from raw.quarantine where source_file = 'organizations_quotes.csv'",
    )
    assert json.loads(raw[0][0]) == ["o1", "Acme,2026-01-01\no2,Two,2026-01-01\n"]
    # The lenient reading of RFC 4180 (as spreadsheets do): a quote inside an unquoted
    # field is text; text after a closing quote is appended to the field.
    inside = files["organizations_quote_inside.csv"]
    assert (inside.rows_loaded, inside.rows_quarantined) == (2, 1)
    names = dict(fetch(db_url, "select org_id, name from raw.organizations where batch_id = %s",
                       [inside.batch_id]))  # fmt: skip
    assert names == {"o1": 'Ac"me', "o2": "Two Ltd"}


def test_ten_megabyte_lines(db_url: str, landing: Path) -> None:
    big = "x" * 10_000_000
    (landing / "organizations_long.csv").write_text(
        ORG_HEADER + f"o1,{big},2026-01-01\no2,fine,2026-01-01\n{big}\n"
    )
    write_jsonl(landing / "organizations_long.jsonl", [org("o3", big), org("o4")])
    files = ingest(db_url, landing)
    csv_file, jsonl_file = files["organizations_long.csv"], files["organizations_long.jsonl"]
    assert (csv_file.rows_read, csv_file.rows_loaded, csv_file.rows_quarantined) == (3, 1, 2)
    assert (jsonl_file.rows_loaded, jsonl_file.rows_quarantined) == (1, 1)
    reasons = fetch(
        db_url,
        "select reason, length(coalesce(record->>'name', raw_text)) from raw.quarantine"
        " where source_file like 'organizations_long%%' order by source_file, line_no",
    )
    assert reasons[0] == (
        "name: value is 10000000 characters long; at most 1000000 are accepted",
        10_000_000,
    )
    assert reasons[1][0].startswith("row has 1 fields but the header has 3")
    assert reasons[1][1] > 10_000_000  # the text kept whole, as a JSON list
    assert reasons[2][0] == reasons[0][0]


def test_ten_thousand_columns(db_url: str, landing: Path) -> None:
    extra = [f"extra_{i}" for i in range(9_997)]
    header = ["org_id", "name", "updated_at", *extra]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerow(["o1", "Wide", "2026-01-01", *("v" for _ in extra)])
    writer.writerow(["o2", "Short row", "2026-01-01"])
    (landing / "organizations_wide.csv").write_text(out.getvalue())
    (landing / "organizations_wide_rows.csv").write_text(
        ORG_HEADER + ",".join(["o3", "x", "2026-01-01", *(["y"] * 9_997)]) + "\n"
    )
    files = ingest(db_url, landing)
    wide = files["organizations_wide.csv"]
    assert (wide.rows_loaded, wide.rows_quarantined) == (1, 1)
    assert wide.ignored_columns == extra
    (ledger,) = fetch(db_url, "select cardinality(ignored_columns) from raw.ingest_batches"
                      " where batch_id = %s", [wide.batch_id])  # fmt: skip
    assert ledger == (9_997,)
    assert files["organizations_wide_rows.csv"].rows_quarantined == 1


SQL_TEXT = "'); drop table raw.deals; --"


def test_sql_in_values_and_file_names_is_data(db_url: str, landing: Path) -> None:
    write_csv(landing / f"organizations_{SQL_TEXT}.csv", [org("o1", SQL_TEXT), org(SQL_TEXT)])
    write_jsonl(
        landing / 'organizations_"; select pg_sleep(10); --.jsonl',
        [org("o2", "%s %(batch_id)s $1 \\N \\."), org("o3', 'x')--")],
    )
    (landing / f"contacts_{SQL_TEXT}.csv").write_text("a\n1\n")  # no entity: refused
    files = ingest(db_url, landing)
    assert files[f"contacts_{SQL_TEXT}.csv"].status == "refused"
    names = dict(fetch(db_url, "select org_id, name from raw.organizations"))
    assert names["o1"] == SQL_TEXT and names[SQL_TEXT] == "Acme"
    assert names["o2"] == "%s %(batch_id)s $1 \\N \\." and "o3', 'x')--" in names
    assert fetch(db_url, "select count(*) from raw.ingest_batches where file_name = %s",
                 [f"organizations_{SQL_TEXT}.csv"]) == [(1,)]  # fmt: skip


def test_odd_file_names(db_url: str, landing: Path) -> None:
    """A name that is not UTF-8 is refused and recorded (shown with \\x escapes); a newline
    or 253 characters in a name are only names."""
    body = ORG_HEADER + "n1,Named,2026-01-01\n"
    with open(os.fsencode(landing) + b"/organizations_\xff\xfe.csv", "w") as handle:
        handle.write(body)
    (landing / "organizations_new\nline.csv").write_text(body)
    (landing / ("organizations_" + "L" * 235 + ".csv")).write_text(body)
    files = ingest(db_url, landing)
    refused = files["organizations_\\xff\\xfe.csv"]
    assert refused.status == "refused"
    assert refused.message == (
        "organizations_\\xff\\xfe.csv: file name is not valid UTF-8 (bytes shown as \\xNN);"
        " rename the file"
    )
    assert files["organizations_new\nline.csv"].rows_loaded == 1
    assert files["organizations_" + "L" * 235 + ".csv"].rows_loaded == 1


FORMULAS = ['=HYPERLINK("http://evil","click")', "+cmd", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]


def test_formulas_in_display_text_are_kept_exactly_in_raw(db_url: str, landing: Path) -> None:
    write_quoted_csv(landing / "partners_formulas.csv", [
        {"partner_id": f"pf{i}", "org_id": "o1", "name": f, "partner_type": f,
         "updated_at": "2026-01-01"} for i, f in enumerate(FORMULAS)
    ])  # fmt: skip
    files = ingest(db_url, landing)
    assert files["partners_formulas.csv"].rows_loaded == len(FORMULAS)
    rows = fetch(db_url, "select partner_id, name, partner_type from raw.partners"
                 " where partner_id like 'pf%%' order by partner_id")  # fmt: skip
    assert rows == [(f"pf{i}", f, f) for i, f in enumerate(FORMULAS)]


def _identifier_cases() -> list[tuple[str, str, str]]:
    """(entity, identifier field, formula-like value): every identifier, every prefix."""
    cases = []
    for entity in ENTITIES:
        for field in (f for f in entity.fields if f.identifier):
            cases += [(entity.name, field.name, p + "1") for p in FORMULA_PREFIXES]
    return cases


def _valid_row(entity: str) -> dict[str, str]:
    return {
        "organizations": {"org_id": "o1", "name": "Org", "updated_at": "2026-01-01"},
        "partners": {"partner_id": "p1", "org_id": "o1", "name": "P", "updated_at": "2026-01-01"},
        "deals": {"deal_id": "d1", "org_id": "o1", "name": "D", "amount": "1", "currency": "USD",
                  "status": "open", "created_at": "2026-01-01", "closed_at": "",
                  "updated_at": "2026-01-01"},
        "touchpoints": {"touchpoint_id": "t1", "org_id": "o1", "deal_id": "d1",
                        "partner_id": "p1", "touchpoint_type": "demo",
                        "occurred_at": "2026-01-01"},
        "commission_plans": {"plan_id": "c1", "org_id": "o1", "partner_id": "p1",
                             "attribution_model": "linear", "rate": "0.1",
                             "effective_from": "2026-01-01", "updated_at": "2026-01-01"},
    }[entity]  # fmt: skip


def test_formula_like_identifiers_are_quarantined_with_reason(
    fresh_db_url: str, landing: Path
) -> None:
    cases = _identifier_cases()
    assert {field for _, field, _ in cases} == {
        "org_id", "partner_id", "deal_id", "touchpoint_id", "plan_id",
    }  # fmt: skip
    by_entity: dict[str, list[dict[str, str]]] = {}
    for entity, field, value in cases:
        by_entity.setdefault(entity, []).append(dict(_valid_row(entity), **{field: value}))
    for entity, rows in by_entity.items():  # half as CSV, half as JSONL; one valid row each
        half = len(rows) // 2
        write_quoted_csv(landing / f"{entity}_ids.csv", [_valid_row(entity), *rows[:half]])
        write_jsonl(landing / f"{entity}_ids.jsonl", [_valid_row(entity), *rows[half:]])
    ingest(fresh_db_url, landing)
    quarantined = fetch(fresh_db_url, "select entity, record, reason from raw.quarantine")
    assert len(quarantined) == len(cases)
    found = set()
    for entity, record, reason in quarantined:
        (field,) = [f for f in record if record[f] != _valid_row(entity).get(f, record[f])]
        value = record[field]
        first = {"\t": "a tab", "\r": "a carriage return"}.get(value[0], f"'{value[0]}'")
        assert reason == (
            f"{field}: '{value[:80]}' starts with {first}, which a spreadsheet would run as a"
            " formula (expected an identifier not starting with =, +, -, @, a tab or a carriage"
            " return)"
        )
        found.add((entity, field, value))
    assert found == set(cases)
    # The valid rows (one per file) still load.
    assert fetch(fresh_db_url, "select count(*) from raw.organizations") == [(2,)]


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_generator_never_writes_formula_like_ids(tmp_path: Path, file_format: str) -> None:
    from synthetic_crm import generate

    summary = generate(tmp_path, orgs=20, days=5, seed=11, bad_row_rate=0.2,
                       file_format=file_format)  # fmt: skip
    identifiers = {f.name for e in ENTITIES for f in e.fields if f.identifier}
    checked = 0
    for path in summary.files:
        with open(path, encoding="utf-8", newline="") as handle:
            if file_format == "csv":
                records = list(csv.DictReader(handle))
            else:
                records = [json.loads(line) for line in handle]
        for record in records:
            for name in identifiers & record.keys():
                assert not record[name].startswith(FORMULA_PREFIXES), (path.name, record)
                checked += 1
    assert checked > 1_000
