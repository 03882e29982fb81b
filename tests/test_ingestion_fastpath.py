"""The CSV fast path (PostgreSQL parses the bytes) gives what the Python reader gives.

Same rows, same line numbers, same quarantine records; files it cannot promise that
for go through the Python reader instead.
"""

from __future__ import annotations

from pathlib import Path

from ingestion import ingest_directory
from tests.ingest_helpers import fetch

HEADER = "org_id,name,updated_at"


def _load(url: str, landing: Path, name: str, data: bytes) -> object:
    (landing / name).write_bytes(data)
    report = ingest_directory(url, landing)
    assert report.ok, report.errors
    (result,) = [f for f in report.files if f.file_name == name]
    return result


def test_clean_file_takes_the_fast_path_with_exact_line_numbers(
    fresh_db_url: str, landing: Path
) -> None:
    # BOM, CRLF line ends, an extra column, quoted values holding line breaks
    # (LF, CRLF, lone CR) and commas, and broken rows after them.
    lines = [
        "\ufefforg_id,Name ,internal,updated_at",
        "o1,Plain,x,2026-01-01",
        'o2,"Two\nline, name",x,2026-01-02',
        "o3,bad date,x,yesterday",
        'o4,"three\r\nline\rname",x,2026-01-03',
        'o5,"",x,2026-01-04',
        "o6,,x,2026-01-05",
        'o7,"He said ""hi""",x,2026-01-06',
    ]
    data = ("\r\n".join(lines) + "\r\n").encode()
    result = _load(fresh_db_url, landing, "organizations_fast.csv", data)
    assert result.parser == "postgres"
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (7, 4, 3)
    assert result.ignored_columns == ["internal"]
    # Line where each record starts, counted as an editor shows them.
    expected_line = {"o1": 2, "o2": 3, "o3": 5, "o4": 6, "o5": 9, "o6": 10, "o7": 11}
    loaded = dict(fetch(fresh_db_url, "select org_id, line_no from raw.organizations"))
    quarantined = {
        record["org_id"]: (line_no, record)
        for line_no, record in fetch(fresh_db_url, "select line_no, record from raw.quarantine")
    }
    assert set(loaded) == {"o1", "o2", "o4", "o7"}
    for org_id, line_no in {**loaded, **{k: v[0] for k, v in quarantined.items()}}.items():
        assert line_no == expected_line[org_id], org_id
    names = dict(fetch(fresh_db_url, "select org_id, name from raw.organizations"))
    assert names["o2"] == "Two\nline, name"
    assert names["o4"] == "three\r\nline\rname"
    assert names["o7"] == 'He said "hi"'
    # Quoted and unquoted empty values both read as '' (as the Python reader gives).
    assert quarantined["o5"][1]["name"] == "" and quarantined["o6"][1]["name"] == ""


def test_fast_path_and_python_reader_agree(fresh_db_url: str, landing: Path) -> None:
    """One file's rows twice: alone (fast path), and with a malformed row appended
    (the Python reader): the same rows are loaded and quarantined, on the same lines."""
    body = "".join(
        f'o{i},"Org {i}\nsecond line",2026-01-{1 + i % 28:02d}\n'
        if i % 5 == 0
        else f"o{i},Org {i},{'not-a-date' if i % 7 == 0 else '2026-02-01'}\n"
        for i in range(200)
    )
    fast = _load(fresh_db_url, landing, "organizations_a.csv", f"{HEADER}\n{body}".encode())
    slow = _load(
        fresh_db_url,
        landing,
        "organizations_b.csv",
        f"{HEADER}\n{body}o999,too,many,fields\n".encode(),
    )
    assert (fast.parser, slow.parser) == ("postgres", "python")
    assert slow.rows_read == fast.rows_read + 1
    assert slow.rows_quarantined == fast.rows_quarantined + 1

    def rows(batch: int) -> tuple[list[tuple], list[tuple]]:
        raw = fetch(
            fresh_db_url,
            "select line_no, org_id, name, updated_at from raw.organizations"
            " where batch_id = %s order by line_no",
            [batch],
        )
        quarantine = fetch(
            fresh_db_url,
            "select line_no, record, reason from raw.quarantine"
            " where batch_id = %s and record is not null order by line_no",
            [batch],
        )
        return raw, quarantine

    assert rows(fast.batch_id) == rows(slow.batch_id)


def test_files_the_fast_path_cannot_promise_go_to_the_python_reader(
    fresh_db_url: str, landing: Path
) -> None:
    cases = {
        "organizations_nul.csv": f"{HEADER}\no1,a\x00b,2026-01-01\no2,ok,2026-01-01\n".encode(),
        "organizations_blank.csv": f"{HEADER}\no1,a,2026-01-01\n\no2,b,2026-01-01\n".encode(),
        "organizations_width.csv": f"{HEADER}\no1,a,2026-01-01,extra\no2,b,2026-01-01\n".encode(),
        "organizations_quote.csv": f'{HEADER}\no1,"unterminated,2026-01-01\n'.encode(),
    }
    for name, data in cases.items():
        (landing / name).write_bytes(data)
    report = ingest_directory(fresh_db_url, landing)
    assert report.ok, report.errors
    parsers = {f.file_name: f.parser for f in report.files}
    assert parsers == dict.fromkeys(cases, "python")
    by_name = {f.file_name: f for f in report.files}
    assert (
        by_name["organizations_nul.csv"].rows_loaded,
        by_name["organizations_nul.csv"].rows_quarantined,
    ) == (1, 1)
    assert by_name["organizations_blank.csv"].rows_loaded == 2
    assert by_name["organizations_width.csv"].rows_quarantined == 1
    lines = fetch(
        fresh_db_url,
        "select source_file, line_no from raw.quarantine order by source_file, line_no",
    )
    assert ("organizations_width.csv", 2) in lines and ("organizations_nul.csv", 2) in lines


def test_undecodable_bytes_still_refuse_the_file(fresh_db_url: str, landing: Path) -> None:
    data = f"{HEADER}\no1,ok,2026-01-01\n".encode() + "o2,Caf\xe9,2026-01-01\n".encode("latin-1")
    result = _load(fresh_db_url, landing, "organizations_latin1.csv", data)
    assert result.status == "refused"
    assert "cannot be decoded as UTF-8 at line 3" in (result.message or "")
    assert fetch(fresh_db_url, "select count(*) from raw.organizations") == [(0,)]
