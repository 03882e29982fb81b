"""Each rule of docs/contract.md §3.2: a row that breaks it is quarantined with a reason a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion import ingest_directory
from tests.ingest_helpers import fetch, good_deal, write_csv, write_jsonl

# (entity file, row, expected substrings of the reason)
DEAL_CASES = {
    "missing required field": (good_deal(deal_id=""), ["deal_id: required field is missing"]),
    "unparseable timestamp": (
        good_deal(created_at="yesterday"),
        ["created_at: 'yesterday' is not an ISO 8601 timestamp"],
    ),
    "impossible date": (
        good_deal(updated_at="2026-13-45T00:00:00Z"),
        ["updated_at: '2026-13-45T00:00:00Z' is not an ISO 8601 timestamp"],
    ),
    "amount with comma": (
        good_deal(amount="12,50"),
        ["amount: '12,50' is not a decimal number (expected digits with '.'"],
    ),
    "amount NaN": (good_deal(amount="NaN"), ["amount: 'NaN' is not a decimal number"]),
    "negative amount": (good_deal(amount="-0.01"), ["amount: '-0.01' is negative (expected >= 0)"]),
    "status outside set": (
        good_deal(status="pending"),
        ["status: 'pending' is not one of open, won, lost"],
    ),
    "currency not 3 letters": (
        good_deal(currency="EURO"),
        ["currency: 'EURO' is not a 3-letter ISO 4217 currency code"],
    ),
    "currency with digits": (
        good_deal(currency="US1"),
        ["currency: 'US1' is not a 3-letter ISO 4217 currency code"],
    ),
    "won without closed_at": (good_deal(closed_at=""), ["closed_at: required when status is won"]),
    "lost without closed_at": (
        good_deal(status="lost", closed_at=""),
        ["closed_at: required when status is lost"],
    ),
    "several problems at once": (
        good_deal(amount="-1", currency="EURO"),
        ["amount: '-1' is negative", "currency: 'EURO' is not a 3-letter"],
    ),
}


@pytest.fixture(scope="module")
def loaded(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """One deals file holding a good row and one row per broken rule; one load."""
    landing = tmp_path_factory.mktemp("rules")
    rows = [good_deal(deal_id="good")]
    ids = {}
    for i, (case, (row, _)) in enumerate(DEAL_CASES.items()):
        row = dict(row, name=f"case {i}")
        ids[case] = f"case {i}"
        rows.append(row)
    write_csv(landing / "deals_rules.csv", rows)
    report = ingest_directory(db_url, landing)
    assert report.ok
    return db_url, ids


@pytest.mark.parametrize("case", list(DEAL_CASES))
def test_rule_quarantines_with_reason(loaded: tuple[str, dict[str, str]], case: str) -> None:
    url, names = loaded
    rows = fetch(
        url,
        "select source_file, line_no, reason, record from raw.quarantine where record->>'name' = %s",
        [names[case]],
    )
    assert len(rows) == 1, f"{case}: expected one quarantined row"
    source_file, line_no, reason, record = rows[0]
    assert source_file == "deals_rules.csv"
    assert line_no == list(DEAL_CASES).index(case) + 3  # header is line 1, good row line 2
    for expected in DEAL_CASES[case][1]:
        assert expected in reason
    assert record["deal_id"] == DEAL_CASES[case][0]["deal_id"]  # the record as read


def test_good_row_is_loaded_typed(loaded: tuple[str, dict[str, str]]) -> None:
    url, _ = loaded
    rows = fetch(url, "select amount, currency, status, closed_at from raw.deals")
    assert len(rows) == 1
    amount, currency, status, closed_at = rows[0]
    assert (str(amount), currency, status, closed_at.isoformat()) == (
        "100.00",
        "USD",
        "won",
        "2026-01-05T00:00:00+00:00",
    )


def test_normalization_and_defaults(db_url: str, landing: Path) -> None:
    write_csv(
        landing / "deals_norm.csv",
        [good_deal(deal_id="n1", currency=" eur ", status=" Won ", created_at="2026-01-01 10:00",
                   closed_at="2026-01-02", updated_at="2026-01-02T03:00:00+02:00")],
    )  # fmt: skip
    write_csv(
        landing / "partners_norm.csv",
        [
            {
                "partner_id": "p1",
                "org_id": "o1",
                "name": "P",
                "status": "",
                "updated_at": "2026-01-01",
            }
        ],
    )
    write_csv(
        landing / "touchpoints_norm.csv",
        [{"touchpoint_id": "t1", "org_id": "o1", "deal_id": "n1", "partner_id": "p1",
          "touchpoint_type": "Deal_Registration", "occurred_at": "2026-01-01T00:00:00"}],
    )  # fmt: skip
    assert ingest_directory(db_url, landing).ok
    deal = fetch(
        db_url,
        "select currency, status, created_at::text, updated_at::text from raw.deals"
        " where deal_id = 'n1'",
    )
    # No offset means UTC; an explicit offset is honoured.
    assert deal == [("EUR", "won", "2026-01-01 10:00:00+00", "2026-01-02 01:00:00+00")]
    assert fetch(db_url, "select status from raw.partners where partner_id = 'p1'") == [("active",)]
    assert fetch(db_url, "select touchpoint_type from raw.touchpoints") == [("deal_registration",)]


def test_fx_rate_must_be_positive(db_url: str, landing: Path) -> None:
    write_csv(
        landing / "fx_rates_bad.csv",
        [
            {"currency": "EUR", "rate_date": "2026-01-01", "usd_per_unit": "0"},
            {"currency": "GBP", "rate_date": "01/02/2026", "usd_per_unit": "1.27"},
            {"currency": "JPY", "rate_date": "2026-01-01", "usd_per_unit": "0.0067"},
        ],
    )
    assert ingest_directory(db_url, landing).ok
    reasons = [r for (r,) in fetch(
        db_url, "select reason from raw.quarantine where source_file = 'fx_rates_bad.csv' order by line_no"
    )]  # fmt: skip
    assert reasons == [
        "usd_per_unit: '0' is not greater than 0 (expected > 0)",
        "rate_date: '01/02/2026' is not an ISO 8601 date such as 2026-01-31",
    ]
    assert fetch(db_url, "select currency from raw.fx_rates") == [("JPY",)]


def test_invalid_csv_and_json_rows(db_url: str, landing: Path) -> None:
    (landing / "organizations_broken.csv").write_text(
        "org_id,name,updated_at\no1,Acme,2026-01-01\no2,only two\no3,Three,2026-01-01,extra\n"
    )
    write_jsonl(
        landing / "organizations_broken.jsonl",
        [{"org_id": "o4", "name": "Four", "updated_at": "2026-01-01"}, [1, 2],
         {"org_id": "o5", "name": {"nested": 1}, "updated_at": "2026-01-01"}],
    )  # fmt: skip
    with open(landing / "organizations_broken.jsonl", "a") as handle:
        handle.write('{"org_id": "o6", "name": \n')
    assert ingest_directory(db_url, landing).ok
    rows = fetch(
        db_url,
        "select source_file, line_no, reason, raw_text from raw.quarantine"
        " where entity = 'organizations' order by source_file, line_no",
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("organizations_broken.csv", 3),
        ("organizations_broken.csv", 4),
        ("organizations_broken.jsonl", 2),
        ("organizations_broken.jsonl", 3),
        ("organizations_broken.jsonl", 4),
    ]
    assert rows[0][2].startswith("row has 2 fields but the header has 3")
    assert rows[0][3] == '["o2", "only two"]'
    assert rows[2][2] == "expected a JSON object, got list"
    assert rows[3][2] == "name: expected a string or number, got a JSON dict"
    assert rows[4][2].startswith("line is not valid JSON")
    loaded = fetch(db_url, "select org_id from raw.organizations order by org_id")
    assert loaded == [("o1",), ("o4",)]
