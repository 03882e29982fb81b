"""Bounds of the contract on amounts, rates, timestamps and dates, through the real loader.

An amount or rate above 10^15 or with more than 18 decimal places, a timestamp that
is not strict ISO 8601 or whose instant in UTC falls outside the years 1 to 9999,
and a date that is not YYYY-MM-DD are quarantined with a reason naming the field,
the value and the bound; the values at the bounds load, typed and exact.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ingestion import ingest_directory
from ingestion.contracts import MAX_AMOUNT, MAX_DECIMAL_PLACES, TIMESTAMP_SHAPES
from synthetic_crm import generate
from tests.ingest_helpers import fetch, good_deal, write_csv
from tests.ingest_invariants import assert_ingested_safely

TOO_LARGE = "is too large (expected at most 1000000000000000)"
OUT_OF_RANGE = "is out of range (expected at most 1000000000000000 with at most 18 decimal places)"
NOT_ISO = (
    "is not an ISO 8601 timestamp such as 2026-01-31T09:30:00Z (expected YYYY-MM-DD,"
    " optionally T or a space and HH:MM[:SS[.fraction]], then optionally Z or an offset"
    " such as +02:00)"
)
NO_SUCH = "is not an ISO 8601 timestamp: there is no such date, time of day or UTC offset"
OUTSIDE = (
    "in UTC, outside the years 1 to 9999 (expected a timestamp from 0001-01-01T00:00:00Z"
    " to 9999-12-31T23:59:59Z)"
)

# amount as written → the whole reason, or None when the row loads
AMOUNTS: dict[str, str | None] = {
    "1e30": f"amount: '1e30' {TOO_LARGE}",
    "1E+30": f"amount: '1E+30' {TOO_LARGE}",
    "1e400": f"amount: '1e400' {TOO_LARGE}",
    "1000000000000000.01": f"amount: '1000000000000000.01' {TOO_LARGE}",
    "1000000000000001": f"amount: '1000000000000001' {TOO_LARGE}",
    "1e-400": "amount: '1e-400' has 400 decimal places (expected at most 18)",
    "0.0000000000000000010": (
        "amount: '0.0000000000000000010' has 19 decimal places (expected at most 18)"
    ),
    "1e999999": f"amount: '1e999999' {OUT_OF_RANGE}",
    "1e-999999": f"amount: '1e-999999' {OUT_OF_RANGE}",
    # a huge negative number breaks the sign rule only
    "-1e30": "amount: '-1e30' is negative (expected >= 0)",
    # at the bounds: loaded exactly
    "1e15": None,
    "1000000000000000": None,
    "999999999999999.999999999999999999": None,
    "0.000000000000000001": None,
    "1E-18": None,
    "0": None,
    "12.50": None,
}

TIMESTAMPS: dict[str, str | None] = {
    "9999-12-31T23:00:00-12:00": (
        f"created_at: '9999-12-31T23:00:00-12:00' is 10000-01-01 11:00:00+00 {OUTSIDE}"
    ),
    "0001-01-01T00:00:00+01:00": (
        f"created_at: '0001-01-01T00:00:00+01:00' is 0001-12-31 23:00:00+00 BC {OUTSIDE}"
    ),
    # rounded to microseconds, it is year 10000
    "9999-12-31T23:59:59.9999999Z": (
        f"created_at: '9999-12-31T23:59:59.9999999Z' is 10000-01-01 00:00:00+00 {OUTSIDE}"
    ),
    "2026-02-01 BC": f"created_at: '2026-02-01 BC' {NOT_ISO}",
    "2026-02-01 AD": f"created_at: '2026-02-01 AD' {NOT_ISO}",
    "2026-02-01T10:00:00 BC": f"created_at: '2026-02-01T10:00:00 BC' {NOT_ISO}",
    "epoch": f"created_at: 'epoch' {NOT_ISO}",
    "today": f"created_at: 'today' {NOT_ISO}",
    "2026-01-01 allballs": f"created_at: '2026-01-01 allballs' {NOT_ISO}",
    "2026-01-01T10:00:00 Europe/Paris": f"created_at: '2026-01-01T10:00:00 Europe/Paris' {NOT_ISO}",
    "2026-01-01t10:00:00z": f"created_at: '2026-01-01t10:00:00z' {NOT_ISO}",
    "2026-01-01T10:00+0200": f"created_at: '2026-01-01T10:00+0200' {NOT_ISO}",
    "2026-01-01T10:00:00.1234567890Z": f"created_at: '2026-01-01T10:00:00.1234567890Z' {NOT_ISO}",
    "2026-1-01": f"created_at: '2026-1-01' {NOT_ISO}",
    # PostgreSQL's parser reads these; the contract does not
    "!026-01-15": f"created_at: '!026-01-15' {NOT_ISO}",
    "2026--1-15": f"created_at: '2026--1-15' {NOT_ISO}",
    "2026-01-1 T10:20": f"created_at: '2026-01-1 T10:20' {NOT_ISO}",
    "J2451187": f"created_at: 'J2451187' {NOT_ISO}",
    "0000-01-01": f"created_at: '0000-01-01' {NO_SUCH}",
    "2026-02-30T10:00:00Z": f"created_at: '2026-02-30T10:00:00Z' {NO_SUCH}",
    "2026-01-01T10:00+16": f"created_at: '2026-01-01T10:00+16' {NO_SUCH}",
    # accepted: every form of the grammar, at the edges of the range
    "0001-01-01T00:00:00Z": None,
    "0001-01-01T00:00:00-01:00": None,
    "9999-12-31T23:59:59.999999Z": None,
    "9999-12-31T23:00:00+12:00": None,
    "2026-01-31": None,
    "2026-01-31T09:30": None,
    "2026-01-31 09:30:00.5+02:00": None,
    "2026-01-31T09:30:00.123456789-05": None,
    " 2026-01-31T09:30:00Z ": None,
}

# What the accepted values are, in UTC.
EXPECTED_INSTANTS = {
    "0001-01-01T00:00:00Z": "0001-01-01 00:00:00+00",
    "0001-01-01T00:00:00-01:00": "0001-01-01 01:00:00+00",
    "9999-12-31T23:59:59.999999Z": "9999-12-31 23:59:59.999999+00",
    "9999-12-31T23:00:00+12:00": "9999-12-31 11:00:00+00",
    "2026-01-31": "2026-01-31 00:00:00+00",
    "2026-01-31T09:30": "2026-01-31 09:30:00+00",
    "2026-01-31 09:30:00.5+02:00": "2026-01-31 07:30:00.5+00",
    "2026-01-31T09:30:00.123456789-05": "2026-01-31 14:30:00.123457+00",
    " 2026-01-31T09:30:00Z ": "2026-01-31 09:30:00+00",
}


def _reasons(url: str, source_file: str) -> dict[str, str]:
    rows = fetch(
        url,
        "select record->>'deal_id', reason from raw.quarantine where source_file = %s",
        [source_file],
    )
    return dict(rows)


@pytest.fixture(scope="module")
def loaded(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One deals file per bound (amounts, timestamps), CSV and JSONL, in one ingestion."""
    landing = tmp_path_factory.mktemp("bounds")
    write_csv(
        landing / "deals_amounts.csv",
        [good_deal(deal_id=f"a{i}", amount=v) for i, v in enumerate(AMOUNTS)],
    )
    write_csv(
        landing / "deals_timestamps.csv",
        [good_deal(deal_id=f"t{i}", created_at=v) for i, v in enumerate(TIMESTAMPS)],
    )
    # JSONL numbers as written (never through a float): 1e400 is not infinity here.
    lines = [
        '{"deal_id": "j1", "org_id": "o1", "amount": 1e400, "currency": "USD", "status": "open",'
        ' "created_at": "2026-01-01", "updated_at": "2026-01-01"}',
        '{"deal_id": "j2", "org_id": "o1", "amount": 1E+30, "currency": "USD", "status": "open",'
        ' "created_at": "2026-01-01", "updated_at": "2026-01-01"}',
        '{"deal_id": "j3", "org_id": "o1", "amount": 1e-400, "currency": "USD", "status": "open",'
        ' "created_at": "2026-01-01", "updated_at": "2026-01-01"}',
        '{"deal_id": "j4", "org_id": "o1", "amount": 1000000000000000, "currency": "USD",'
        ' "status": "open", "created_at": "2026-01-01", "updated_at": "2026-01-01"}',
        '{"deal_id": "j5", "org_id": "o1", "amount": 0.000000000000000001, "currency": "USD",'
        ' "status": "open", "created_at": "2026-01-01", "updated_at": "2026-01-01"}',
        '{"deal_id": "j6", "org_id": "o1", "amount": 5, "currency": "USD", "status": "open",'
        ' "created_at": "9999-12-31T23:00:00-12:00", "updated_at": "2026-01-01"}',
    ]
    (landing / "deals_numbers.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_csv(
        landing / "fx_rates_bounds.csv",
        [
            {"currency": "AAA", "rate_date": "2026-01-01", "usd_per_unit": "1e15"},
            {"currency": "BBB", "rate_date": "2026-01-01", "usd_per_unit": "1.5e15"},
            {"currency": "CCC", "rate_date": "2026-01-01", "usd_per_unit": "1e-19"},
            {"currency": "DDD", "rate_date": "2026-01-01", "usd_per_unit": "1e-18"},
            {"currency": "EEE", "rate_date": "0000-01-01", "usd_per_unit": "1"},
            {"currency": "FFF", "rate_date": "10000-01-01", "usd_per_unit": "1"},
            {"currency": "GGG", "rate_date": "2026-02-01 BC", "usd_per_unit": "1"},
            {"currency": "HHH", "rate_date": "2026-01-01T00:00:00Z", "usd_per_unit": "1"},
            {"currency": "III", "rate_date": "2026-02-30", "usd_per_unit": "1"},
            {"currency": "JJJ", "rate_date": "9999-12-31", "usd_per_unit": "1"},
            {"currency": "KKK", "rate_date": "0001-01-01", "usd_per_unit": "0.5"},
            {"currency": "LLL", "rate_date": "!026-01-15", "usd_per_unit": "1"},
        ],
    )
    report = ingest_directory(db_url, landing)
    assert report.ok, report.errors
    assert_ingested_safely(db_url, landing, report)
    return db_url


@pytest.mark.parametrize("amount", list(AMOUNTS))
def test_amount_bounds(loaded: str, amount: str) -> None:
    deal_id = f"a{list(AMOUNTS).index(amount)}"
    reason = _reasons(loaded, "deals_amounts.csv").get(deal_id)
    assert reason == AMOUNTS[amount]
    stored = fetch(loaded, "select amount from raw.deals where deal_id = %s", [deal_id])
    if AMOUNTS[amount] is None:
        assert stored == [(Decimal(amount),)]  # exact, with the scale as written
        assert stored[0][0] <= MAX_AMOUNT
        assert -stored[0][0].as_tuple().exponent <= MAX_DECIMAL_PLACES
    else:
        assert stored == []


@pytest.mark.parametrize("value", list(TIMESTAMPS))
def test_timestamp_form_and_range(loaded: str, value: str) -> None:
    deal_id = f"t{list(TIMESTAMPS).index(value)}"
    reason = _reasons(loaded, "deals_timestamps.csv").get(deal_id)
    assert reason == TIMESTAMPS[value]
    stored = fetch(
        loaded,
        "select created_at::text from raw.deals where deal_id = %s",
        [deal_id],
    )
    if TIMESTAMPS[value] is None:
        assert stored == [(EXPECTED_INSTANTS[value],)]
    else:
        assert stored == []


def test_jsonl_numbers_keep_their_text(loaded: str) -> None:
    reasons = _reasons(loaded, "deals_numbers.jsonl")
    assert reasons == {
        "j1": f"amount: '1e400' {TOO_LARGE}",
        "j2": f"amount: '1E+30' {TOO_LARGE}",
        "j3": "amount: '1e-400' has 400 decimal places (expected at most 18)",
        "j6": f"created_at: '9999-12-31T23:00:00-12:00' is 10000-01-01 11:00:00+00 {OUTSIDE}",
    }
    loaded_amounts = fetch(
        loaded,
        "select deal_id, amount::text from raw.deals where deal_id like 'j%%' order by deal_id",
    )
    assert loaded_amounts == [("j4", "1000000000000000"), ("j5", "0.000000000000000001")]


def test_fx_rate_and_date_bounds(loaded: str) -> None:
    reasons = dict(
        fetch(
            loaded,
            "select record->>'currency', reason from raw.quarantine"
            " where source_file = 'fx_rates_bounds.csv'",
        )
    )
    not_a_date = "is not an ISO 8601 date such as 2026-01-31"
    assert reasons == {
        "BBB": f"usd_per_unit: '1.5e15' {TOO_LARGE}",
        "CCC": "usd_per_unit: '1e-19' has 19 decimal places (expected at most 18)",
        "EEE": "rate_date: '0000-01-01' is not an ISO 8601 date: there is no such day",
        "FFF": f"rate_date: '10000-01-01' {not_a_date}",
        "GGG": f"rate_date: '2026-02-01 BC' {not_a_date}",
        "HHH": f"rate_date: '2026-01-01T00:00:00Z' {not_a_date}",
        "III": "rate_date: '2026-02-30' is not an ISO 8601 date: there is no such day",
        "LLL": f"rate_date: '!026-01-15' {not_a_date}",
    }
    rates = fetch(
        loaded, "select currency, rate_date, usd_per_unit::text from raw.fx_rates order by 1"
    )
    assert rates == [
        ("AAA", date(2026, 1, 1), "1000000000000000"),
        ("DDD", date(2026, 1, 1), "0.000000000000000001"),
        ("JJJ", date(9999, 12, 31), "1"),
        ("KKK", date(1, 1, 1), "0.5"),
    ]


def test_every_loaded_instant_is_within_years_1_to_9999(loaded: str) -> None:
    low, high, count = fetch(
        loaded,
        "select min(ts), max(ts), count(ts) from raw.deals,"
        " lateral (values (created_at), (closed_at), (updated_at)) as v (ts)",
    )[0]
    assert count > 0
    assert low == datetime(1, 1, 1, tzinfo=UTC)  # the earliest accepted instant loaded
    assert high == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)  # and the latest


def test_shapes_are_the_grammar() -> None:
    """Every shape has a 4-digit year; each fraction has 1 to 9 digits; no letters but T and Z."""
    assert len(TIMESTAMP_SHAPES) == len(set(TIMESTAMP_SHAPES)) == 1 + 2 * 11 * 6
    for shape in TIMESTAMP_SHAPES:
        assert shape.startswith("9999-99-99")
        assert set(shape) <= set("9-:. TZ+")
        assert shape.count("T") + shape.count(" ") == (len(shape) > 10)


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_generator_stays_within_the_bounds(db_url: str, tmp_path: Path, file_format: str) -> None:
    """Two generated months load with nothing quarantined: every amount, rate,
    timestamp and date the generator writes is inside the contract's bounds."""
    out = tmp_path / "gen"
    generate(out, preset="mvp", days=60, seed=11, orgs=30, file_format=file_format)
    report = ingest_directory(db_url, out)
    assert report.ok and report.count("loaded") == len(report.files) > 0
    assert report.total("rows_quarantined") == 0
    assert report.total("rows_loaded") == report.total("rows_read") > 0
