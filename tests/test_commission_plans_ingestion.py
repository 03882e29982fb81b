"""Commission plans through the real loader (docs/contract.md §2): each rule of the entity
quarantines with a reason naming the field, the value and what was expected; valid
plans load typed; every version is kept; generated plans all load.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion import ingest_directory
from ingestion.contracts import COMMISSION_MODELS, COMMISSION_PLANS, MAX_COUNT
from synthetic_crm import generate
from tests.ingest_helpers import fetch, write_csv, write_jsonl
from tests.ingest_invariants import assert_ingested_safely


def plan(plan_id: str, **overrides: str) -> dict[str, str]:
    row = {
        "plan_id": plan_id, "org_id": "o1", "partner_id": "", "attribution_model": "linear",
        "rate": "0.10", "effective_from": "2026-01-01", "effective_to": "", "holding_days": "",
        "updated_at": "2026-01-01T09:00:00Z",
    }  # fmt: skip
    row.update(overrides)
    return row


FRACTION = "(expected a decimal fraction from 0 to 1, such as 0.15 for 15 %)"
COUNT = "(expected digits only, such as 30)"
NOT_AFTER = "(expected effective_to later than effective_from, or empty)"
# case -> (row, the whole reason)
CASES: dict[str, tuple[dict[str, str], str]] = {
    "rate above 1": (plan("c1", rate="1.5"), f"rate: '1.5' is not between 0 and 1 {FRACTION}"),
    "rate as a percentage": (plan("c2", rate="15"), f"rate: '15' is not between 0 and 1 {FRACTION}"),
    "negative rate": (plan("c3", rate="-0.1"), f"rate: '-0.1' is not between 0 and 1 {FRACTION}"),
    "rate with a percent sign": (
        plan("c4", rate="12%"),
        "rate: '12%' is not a decimal number (expected digits with '.' as the decimal separator)",
    ),
    "rate too big for numeric": (
        plan("c5", rate="1e999999"), f"rate: '1e999999' is not between 0 and 1 {FRACTION}"
    ),
    "rate too fine": (
        plan("c6", rate="0.1000000000000000001"),
        "rate: '0.1000000000000000001' has 19 decimal places (expected at most 18)",
    ),
    "negative holding days": (
        plan("c7", holding_days="-3"), f"holding_days: '-3' is not an integer ≥ 0 {COUNT}"
    ),
    "fractional holding days": (
        plan("c8", holding_days="2.5"), f"holding_days: '2.5' is not an integer ≥ 0 {COUNT}"
    ),
    "holding days in words": (
        plan("c9", holding_days="30 days"), f"holding_days: '30 days' is not an integer ≥ 0 {COUNT}"
    ),
    "holding days too large": (
        plan("c10", holding_days="99999999999"),
        f"holding_days: '99999999999' is too large for an integer ≥ 0 (expected at most {MAX_COUNT})",
    ),
    "unknown model": (
        plan("c11", attribution_model="shapley"),
        f"attribution_model: 'shapley' is not one of {', '.join(COMMISSION_MODELS)}",
    ),
    "ends before it starts": (
        plan("c12", effective_from="2026-02-01", effective_to="2026-01-01"),
        f"effective_to: '2026-01-01' is not after effective_from '2026-02-01' {NOT_AFTER}",
    ),
    "ends the day it starts": (
        plan("c13", effective_from="2026-02-01", effective_to="2026-02-01"),
        f"effective_to: '2026-02-01' is not after effective_from '2026-02-01' {NOT_AFTER}",
    ),
    # A malformed end is named once, by its form; the order rule needs two dates.
    "end not a date": (
        plan("c14", effective_to="2026-02-30"),
        "effective_to: '2026-02-30' is not an ISO 8601 date: there is no such day",
    ),
    "start missing": (
        plan("c15", effective_from="", effective_to="2026-01-01"),
        "effective_from: required field is missing or empty",
    ),
    "formula-like partner id": (
        plan("c16", partner_id="=cmd"),
        "partner_id: '=cmd' starts with '=', which a spreadsheet would run as a formula"
        " (expected an identifier not starting with =, +, -, @, a tab or a carriage return)",
    ),
    "rate missing": (plan("c17", rate=""), "rate: required field is missing or empty"),
    "several problems at once": (
        plan("c18", rate="2", holding_days="-1"),
        f"rate: '2' is not between 0 and 1 {FRACTION}; holding_days: '-1' is not an integer ≥ 0 {COUNT}",
    ),
}  # fmt: skip
GOOD = [
    plan("default"),  # no partner, no end, holding days left to the default
    plan(
        "override",
        partner_id="ptn_1",
        attribution_model=" Sourced ",
        rate="0.25",
        effective_to="2026-07-01",
        holding_days=" 0 ",
    ),  # fmt: skip
    plan("bounds", partner_id="ptn_2", rate="1", holding_days=str(MAX_COUNT)),
    plan("zero", partner_id="ptn_3", attribution_model="W_SHAPED", rate="0", holding_days="45"),
]


@pytest.fixture(scope="module")
def loaded(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The good plans and one row per case, as CSV (COPY's parser) and as JSONL (the
    Python reader); one load."""
    landing = tmp_path_factory.mktemp("plans")
    rows = [*GOOD, *(row for row, _ in CASES.values())]
    write_csv(landing / "commission_plans_rules.csv", rows)
    write_jsonl(landing / "commission_plans_rules.jsonl", rows)
    report = ingest_directory(db_url, landing)
    assert_ingested_safely(db_url, landing, report)
    assert {f.parser for f in report.files} == {"postgres", "python"}
    return db_url


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_quarantines_with_its_reason(loaded: str, case: str) -> None:
    row, reason = CASES[case]
    found = fetch(
        loaded,
        "select source_file, line_no, reason from raw.quarantine"
        " where entity = 'commission_plans' and record->>'plan_id' = %s order by source_file",
        [row["plan_id"]],
    )
    line = len(GOOD) + list(CASES).index(case) + 1
    assert found == [
        ("commission_plans_rules.csv", line + 1, reason),  # after the header
        ("commission_plans_rules.jsonl", line, reason),
    ]


def test_valid_plans_load_typed_with_the_default(loaded: str) -> None:
    rows = fetch(
        loaded,
        "select plan_id, partner_id, attribution_model, rate, effective_from::text,"
        " effective_to::text, holding_days from raw.commission_plans"
        " where org_id = 'o1' order by plan_id, batch_id",
    )
    expected = [
        ("bounds", "ptn_2", "linear", Decimal("1"), "2026-01-01", None, MAX_COUNT),
        ("default", None, "linear", Decimal("0.10"), "2026-01-01", None, 30),
        ("override", "ptn_1", "sourced", Decimal("0.25"), "2026-01-01", "2026-07-01", 0),
        ("zero", "ptn_3", "w_shaped", Decimal("0"), "2026-01-01", None, 45),
    ]
    assert rows == [row for row in expected for _ in ("csv", "jsonl")]


def test_every_version_is_kept_in_load_order(db_url: str, tmp_path: Path) -> None:
    """The current version is the greatest updated_at, ties to the version loaded last:
    raw keeps every version with the batch and line that order them."""
    landing = tmp_path / "versions"
    landing.mkdir()
    write_csv(landing / "commission_plans_2026-01-01.csv", [
        plan("v1", org_id="o2", rate="0.10", updated_at="2026-01-01T09:00:00Z"),
        plan("v2", org_id="o2", rate="0.05", updated_at="2026-01-01T09:00:00Z"),
    ])  # fmt: skip
    write_csv(landing / "commission_plans_2026-02-01.csv", [
        # v1 closes and v3 replaces it; v2 is corrected twice at one instant: the last line wins.
        plan("v1", org_id="o2", rate="0.10", effective_to="2026-02-01",
             updated_at="2026-02-01T10:00:00Z"),
        plan("v3", org_id="o2", rate="0.12", effective_from="2026-02-01",
             updated_at="2026-02-01T10:00:00Z"),
        plan("v2", org_id="o2", rate="0.06", updated_at="2026-01-01T09:00:00Z"),
        plan("v2", org_id="o2", rate="0.07", updated_at="2026-01-01T09:00:00Z"),
    ])  # fmt: skip
    # Loaded last but older: an out-of-date export does not win.
    write_csv(landing / "commission_plans_2026-03-01.csv", [
        plan("v3", org_id="o2", rate="0.99", effective_from="2026-02-01",
             updated_at="2026-01-15T00:00:00Z"),
    ])  # fmt: skip
    assert ingest_directory(db_url, landing).ok
    assert fetch(db_url, "select count(*) from raw.commission_plans where org_id = 'o2'") == [(7,)]
    current = fetch(
        db_url,
        "select distinct on (plan_id) plan_id, rate::text, effective_to::text"
        " from raw.commission_plans where org_id = 'o2'"
        " order by plan_id, updated_at desc, batch_id desc, line_no desc",
    )
    assert current == [("v1", "0.10", "2026-02-01"), ("v2", "0.07", None), ("v3", "0.12", None)]


def _plan_files_only(export: Path, landing: Path) -> None:
    landing.mkdir()
    for path in export.glob(f"{COMMISSION_PLANS.name}_*"):
        shutil.copy(path, landing / path.name)


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_generated_plans_all_load(db_url: str, tmp_path: Path, file_format: str) -> None:
    summary = generate(tmp_path / "export", orgs=30, days=30, seed=8, file_format=file_format)
    _plan_files_only(summary.out_dir, tmp_path / "landing")
    report = ingest_directory(db_url, tmp_path / "landing")
    assert report.ok and report.count("loaded") == len(report.files) > 5
    assert report.total("rows_quarantined") == 0
    assert report.total("rows_loaded") == summary.rows[COMMISSION_PLANS.name] > 30


# What the quarantine says of each kind of row the generator breaks (the whole reason).
BAD_KIND_REASONS = {
    "required_empty": r"\w+: required field is missing or empty",
    "bad_timestamp": r"\w+: '[^']*' is not an ISO 8601 .+",
    "bad_status": r"attribution_model: '[^']*' is not one of .+",
    "bad_fraction": r"rate: '[^']*' is not (between 0 and 1|a decimal number) .+",
    "bad_count": r"holding_days: '[^']*' is not an integer ≥ 0 .+",
    "not_after": r"effective_to: '[^']*' is not after effective_from '[^']*' .+",
}


def test_generated_bad_plans_are_quarantined_by_kind(db_url: str, tmp_path: Path) -> None:
    summary = generate(tmp_path / "export", orgs=20, days=20, seed=3, bad_row_rate=0.2)
    _plan_files_only(summary.out_dir, tmp_path / "landing")
    report = ingest_directory(db_url, tmp_path / "landing")
    assert_ingested_safely(db_url, tmp_path / "landing", report)
    assert report.total("rows_quarantined") == summary.bad_rows[COMMISSION_PLANS.name]
    reasons = [reason for (reason,) in fetch(
        db_url, "select reason from raw.quarantine where batch_id = any(%s)",
        [[f.batch_id for f in report.files]],
    )]  # fmt: skip
    by_kind = Counter(
        kind
        for reason in reasons
        for kind, says in BAD_KIND_REASONS.items()
        if re.fullmatch(says, reason)
    )
    assert sum(by_kind.values()) == len(reasons)  # each row broken one way
    expected = {
        key.split("/")[1]: n
        for key, n in summary.bad_kinds.items()
        if key.startswith(f"{COMMISSION_PLANS.name}/")
    }
    assert set(expected) == set(BAD_KIND_REASONS)
    assert dict(by_kind) == expected


SQL_TEXT = "30'); drop table raw.commission_plans; --"


def test_hostile_values_in_typed_plan_fields(db_url: str, tmp_path: Path) -> None:
    """Huge numbers, SQL and JSON non-strings in the rate, days and dates: quarantined
    with their reasons, as for the other entities; JSON numbers keep their text."""
    landing = tmp_path / "hostile"
    landing.mkdir()
    huge_digits = "9" * 2_000_000
    write_csv(landing / "commission_plans_hostile.csv", [
        plan("h1", org_id="o3", rate=huge_digits),
        plan("h2", org_id="o3", holding_days=huge_digits),
        plan("h3", org_id="o3", holding_days=SQL_TEXT, effective_to=SQL_TEXT),
        plan("h4", org_id="o3"),
    ])  # fmt: skip
    write_jsonl(landing / "commission_plans_hostile.jsonl", [
        {**plan("j1", org_id="o3"), "rate": 0.15, "holding_days": 45},
        {**plan("j2", org_id="o3"), "rate": 1e999},
        {**plan("j3", org_id="o3"), "rate": True},
    ])  # fmt: skip
    report = ingest_directory(db_url, landing)
    assert_ingested_safely(db_url, landing, report)
    loaded = fetch(db_url, "select plan_id, rate::text, holding_days from raw.commission_plans"
                   " where org_id = 'o3' order by plan_id")  # fmt: skip
    assert loaded == [("h4", "0.10", 30), ("j1", "0.15", 45)]
    reasons = dict(fetch(db_url, "select coalesce(record->>'plan_id', raw_text), reason"
                         " from raw.quarantine where source_file like %s",
                         ["commission_plans_hostile%"]))  # fmt: skip
    long = "value is 2000000 characters long; at most 1000000 are accepted"
    assert reasons["h1"].startswith(f"rate: {long}; rate: '{'9' * 80}' is not between 0 and 1")
    assert reasons["h2"].startswith(
        f"holding_days: {long}; holding_days: '{'9' * 80}' is too large"
    )
    quoted = "'" + SQL_TEXT.replace("'", "''") + "'"  # as quote_literal shows it
    assert reasons["h3"] == (
        f"effective_to: {quoted} is not an ISO 8601 date such as 2026-01-31;"
        f" holding_days: {quoted} is not an integer ≥ 0 {COUNT}"
    )
    assert reasons["j2"] == (
        "rate: 'Infinity' is not a decimal number"
        " (expected digits with '.' as the decimal separator)"
    )
    (j3,) = [r for key, r in reasons.items() if '"j3"' in key]
    assert j3 == "rate: expected a string or number, got a JSON true/false"
