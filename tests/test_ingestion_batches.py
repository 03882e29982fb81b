"""Batches: load once, changed files, refused files, hostile values (docs/contract.md §3.1, 3.3, 3.4)."""

from __future__ import annotations

from pathlib import Path

from ingestion import ingest_directory
from tests.ingest_helpers import counts, fetch, good_deal, table_snapshot, write_csv, write_jsonl

ORG_HEADER = ["org_id", "name", "plan", "created_at", "updated_at"]


def org(org_id: str, name: str) -> dict[str, str]:
    return {
        "org_id": org_id,
        "name": name,
        "plan": "pro",
        "created_at": "",
        "updated_at": "2026-01-01",
    }


def test_loading_twice_changes_nothing(fresh_db_url: str, landing: Path) -> None:
    write_csv(landing / "organizations.csv", [org("o1", "Acme"), org("o2", "")])
    write_csv(landing / "deals_1.csv", [good_deal(), good_deal(deal_id="d2", amount="x")])
    first = ingest_directory(fresh_db_url, landing)
    assert [f.status for f in first.files] == ["loaded", "loaded"]
    before = table_snapshot(fresh_db_url)
    second = ingest_directory(fresh_db_url, landing)
    assert [f.status for f in second.files] == ["skipped", "skipped"]
    assert table_snapshot(fresh_db_url) == before


def test_changed_file_is_a_new_batch(fresh_db_url: str, landing: Path) -> None:
    path = write_csv(landing / "organizations.csv", [org("o1", "Acme")])
    ingest_directory(fresh_db_url, landing)
    write_csv(path, [org("o1", "Acme Inc"), org("o2", "Beta")])
    report = ingest_directory(fresh_db_url, landing)
    assert [f.status for f in report.files] == ["loaded"]
    batches = fetch(
        fresh_db_url,
        "select batch_id, file_name, rows_loaded from raw.ingest_batches order by batch_id",
    )
    assert [(b[1], b[2]) for b in batches] == [("organizations.csv", 1), ("organizations.csv", 2)]
    # Every version is kept, each with its batch.
    versions = fetch(fresh_db_url, "select batch_id, name from raw.organizations order by 1, 2")
    assert [v[1] for v in versions] == ["Acme", "Acme Inc", "Beta"]
    assert versions[0][0] < versions[1][0] == versions[2][0]


def test_refused_files_load_nothing_and_the_rest_loads(fresh_db_url: str, landing: Path) -> None:
    # Missing a required column.
    write_csv(
        landing / "deals_no_amount.csv", [{k: v for k, v in good_deal().items() if k != "amount"}]
    )
    # Valid rows first, undecodable bytes later in the file: nothing of it may load.
    good_lines = "".join(f"o{i},Org {i},2026-01-01\n" for i in range(1000))
    (landing / "organizations_latin1.csv").write_bytes(
        b"org_id,name,updated_at\n"
        + good_lines.encode()
        + "o9,Caf\xe9,2026-01-01\n".encode("latin-1")
    )
    (landing / "organizations_utf16.csv").write_bytes("org_id,name,updated_at\n".encode("utf-16"))
    (landing / "partners_empty.csv").write_bytes(b"")
    (landing / "deals_dup.csv").write_text("deal_id,deal_id,org_id\n")
    (landing / "notes.txt").write_text("hello")
    (landing / "deals_export.xlsx").write_bytes(b"PK\x03\x04")
    (landing / ".deals_partial.csv").write_text("being written")  # hidden: not looked at
    write_csv(landing / "deals_ok.csv", [good_deal()])

    report = ingest_directory(fresh_db_url, landing)
    assert report.ok
    status = {f.file_name: (f.status, f.message) for f in report.files}
    assert status["deals_ok.csv"][0] == "loaded"
    assert ".deals_partial.csv" not in status
    expected_messages = {
        "deals_no_amount.csv": "header lacks required column(s) amount",
        "organizations_latin1.csv": "cannot be decoded as UTF-8 at line 1002",
        "organizations_utf16.csv": "cannot be decoded as UTF-8",
        "partners_empty.csv": "file is empty (no header row)",
        "deals_dup.csv": "header repeats column(s) deal_id",
        "notes.txt": "file name does not start with an entity prefix",
        "deals_export.xlsx": "unsupported file type .xlsx",
    }
    for name, fragment in expected_messages.items():
        assert status[name][0] == "refused", name
        assert fragment in status[name][1], (name, status[name][1])

    assert counts(fresh_db_url)["organizations"] == 0
    assert counts(fresh_db_url)["deals"] == 1
    ledger = dict(
        fetch(
            fresh_db_url,
            "select file_name, error_message from raw.ingest_batches where outcome = 'refused'",
        )
    )
    assert set(ledger) == set(expected_messages)
    assert "at line 1002" in ledger["organizations_latin1.csv"]
    # Refused files are recorded once: a second run skips them.
    again = ingest_directory(fresh_db_url, landing)
    assert {f.status for f in again.files} == {"skipped"}


HOSTILE = [
    'He said "hi", then left',
    "multi\nline\r\nvalue",
    "'; DROP TABLE raw.organizations; --",
    "Robert'); DELETE FROM raw.deals;--",
    "emoji 🤝💰 and ünïcödé — Müller & Søn",
    '=HYPERLINK("http://example.invalid","click")',
    "back\\slash \\N \\. tab\there",
    "   leading and trailing spaces   ",
    "x" * 100_000,
]


def test_hostile_values_round_trip_exactly(fresh_db_url: str, landing: Path) -> None:
    write_csv(landing / "organizations.csv", [org(f"csv-{i}", v) for i, v in enumerate(HOSTILE)])
    write_jsonl(
        landing / "organizations.jsonl", [org(f"json-{i}", v) for i, v in enumerate(HOSTILE)]
    )
    # An id that is itself an injection attempt.
    write_csv(landing / "organizations_ids.csv", [org("o'); drop table raw.deals; --", "ok")])
    report = ingest_directory(fresh_db_url, landing)
    assert report.total("rows_quarantined") == 0, report.lines()
    names = dict(fetch(fresh_db_url, "select org_id, name from raw.organizations"))
    for i, value in enumerate(HOSTILE):
        assert names[f"csv-{i}"] == value
        assert names[f"json-{i}"] == value
    assert names["o'); drop table raw.deals; --"] == "ok"
    assert fetch(fresh_db_url, "select to_regclass('raw.deals') is not null") == [(True,)]


def test_too_long_field_and_nul_bytes_are_quarantined_not_lost(
    fresh_db_url: str, landing: Path
) -> None:
    huge = "y" * 1_000_001
    (landing / "organizations.csv").write_text(
        f"org_id,name,updated_at\no1,{huge},2026-01-01\no2,nul\x00here,2026-01-01\no3,fine,2026-01-01\n"
    )
    report = ingest_directory(fresh_db_url, landing)
    (result,) = report.files
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (3, 1, 2)
    rows = fetch(
        fresh_db_url,
        "select line_no, reason, length(coalesce(record->>'name', raw_text)) from raw.quarantine order by line_no",
    )
    assert rows[0][1] == "name: value is 1000001 characters long; at most 1000000 are accepted"
    assert rows[0][2] == 1_000_001  # kept whole
    assert rows[1][0] == 3 and "NUL" in rows[1][1]


def test_extra_columns_are_ignored_and_reported(fresh_db_url: str, landing: Path) -> None:
    rows = [dict(org("o1", "A"), internal_note="x", Region="EU")]
    write_csv(landing / "organizations.csv", rows)
    write_jsonl(landing / "organizations.jsonl", [dict(org("o2", "B"), score=3)])
    report = ingest_directory(fresh_db_url, landing)
    ignored = {f.file_name: f.ignored_columns for f in report.files}
    assert ignored == {
        "organizations.csv": ["internal_note", "region"],
        "organizations.jsonl": ["score"],
    }
    ledger = dict(fetch(fresh_db_url, "select file_name, ignored_columns from raw.ingest_batches"))
    assert ledger["organizations.csv"] == ["internal_note", "region"]
    assert counts(fresh_db_url)["organizations"] == 2


def test_json_that_python_parses_but_postgres_cannot_hold_is_quarantined(
    fresh_db_url: str, landing: Path
) -> None:
    lines = [
        '{"org_id": "o1", "name": "ok", "updated_at": "2026-01-01"}',
        '{"org_id": "o2", "name": "bad \\ud800 escape", "updated_at": "2026-01-01"}',
        '{"org_id": "o3", "name": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"org_id": "o4", "name": "also ok", "updated_at": "2026-01-01"}',
    ]
    (landing / "organizations_a.jsonl").write_text("\n".join(lines) + "\n")
    write_csv(landing / "partners.csv", [{"partner_id": "p1", "org_id": "o1", "name": "P",
                                          "updated_at": "2026-01-01"}])  # fmt: skip
    report = ingest_directory(fresh_db_url, landing)
    assert report.ok, report.errors
    by_name = {f.file_name: f for f in report.files}
    jsonl = by_name["organizations_a.jsonl"]
    assert (jsonl.rows_read, jsonl.rows_loaded, jsonl.rows_quarantined) == (4, 2, 2)
    assert by_name["partners.csv"].rows_loaded == 1  # the files after it still load
    reasons = [
        r for (r,) in fetch(fresh_db_url, "select reason from raw.quarantine order by line_no")
    ]
    assert "lone surrogate" in reasons[0] and "nested too deeply" in reasons[1]


def test_a_stray_quote_cannot_swallow_a_huge_file_into_memory(
    fresh_db_url: str, landing: Path
) -> None:
    body = "".join(f"o{i},Org {i},2026-01-01\n" for i in range(800_000))  # ~17 MB after the quote
    (landing / "organizations.csv").write_text(
        'org_id,name,updated_at\no0,"Broken,2026-01-01\n' + body
    )
    report = ingest_directory(fresh_db_url, landing)
    (result,) = report.files
    assert result.status == "refused" and "field larger than field limit" in result.message
    assert counts(fresh_db_url)["organizations"] == 0
