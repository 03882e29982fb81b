"""Helpers for dbt tests: build the project, read the marts, compare with the reference."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ingestion import ingest_directory
from ingestion.service import IngestReport
from orchestration.dbt_invocation import run_dbt
from platform_core.migrations import migrate
from tests import reference_attribution as reference
from tests.conftest import create_database, drop_database

# int_deals__mart_state's history arrays accumulate every partner, organization
# and day a deal has counted for, so they legitimately differ between
# incremental and full builds; its other columns must not.
BOOKKEEPING = {"partner_ids", "org_ids", "metric_dates", "closed_months"}
MARTS = {
    "fct_partner_attribution": ("deal_id", "partner_id", "attribution_model"),
    "fct_deals": ("deal_id",),
    "partner_performance": ("partner_id",),
    "org_daily_metrics": ("org_id", "metric_date"),
    "dim_organizations": ("org_id",),
    "attribution_channel_weights": ("org_id", "month", "channel"),
}


def dbt(url: str, tmp: Path, *args: str) -> str:
    result = run_dbt(url, list(args), capture=True, target_path=tmp)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout


# dbt vars a test may set, and the reference's parameter for each: a build and
# the reference it is compared with must use the same values.
REFERENCE_PARAMETERS = {
    "attribution_lookback_days": "lookback_days",
    "data_driven_min_paths": "min_paths",
    "data_driven_max_channels": "max_channels",
}

DbtVars = Mapping[str, int]


def reference_parameters(dbt_vars: DbtVars | None) -> dict[str, int]:
    """The reference's keyword arguments for a build run with `dbt_vars`."""
    unknown = set(dbt_vars or {}) - REFERENCE_PARAMETERS.keys()
    assert not unknown, f"the reference has no parameter for dbt vars {sorted(unknown)}"
    return {REFERENCE_PARAMETERS[name]: value for name, value in (dbt_vars or {}).items()}


def build(url: str, tmp: Path, full_refresh: bool = False, dbt_vars: DbtVars | None = None) -> None:
    """`dbt run`, with `dbt_vars` (e.g. {"data_driven_min_paths": 2}) when given: the
    same vars on every run of a database, as a deployment would keep them."""
    args = ["--full-refresh"] if full_refresh else []
    if dbt_vars:
        args += ["--vars", json.dumps(dict(dbt_vars))]
    dbt(url, tmp, "run", *args)


def build_pair(incremental: str, full: str, tmp: Path, dbt_vars: DbtVars | None = None) -> None:
    """An incremental run on one database and a full refresh on the other, side by side.

    They are separate dbt processes on separate databases, so running them at
    once halves the wall time of the tests that compare the two.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [
            pool.submit(build, incremental, tmp / "dbt-inc", False, dbt_vars),
            pool.submit(build, full, tmp / "dbt-full", True, dbt_vars),
        ]
        for run in runs:
            run.result()


@contextmanager
def paired_databases(server_url: str, prefix: str) -> Iterator[tuple[str, str]]:
    """Two fresh, migrated databases (`<prefix>_inc`, `<prefix>_full`), dropped afterwards."""
    names = f"{prefix}_inc", f"{prefix}_full"
    urls = create_database(server_url, names[0]), create_database(server_url, names[1])
    for url in urls:
        migrate(url)
    try:
        yield urls
    finally:
        for name in names:
            drop_database(server_url, name)


# Which load a row came from: an interrupted load rolls back but still uses up its
# batch id, so a run that was killed and resumed numbers later loads differently.
LOAD_IDS = {"source_batch_id"}
# When a build wrote the row (docs/contract.md §5.7): differs between any two
# builds, so marts are compared without it (tests/test_numbers_for_people.py and
# tests/test_dbt_changes.py check it).
ROW_TIMES = frozenset({"computed_at"})
# Time decay's weights are 0.5^(age / half-life), irrational: the marts compute
# them in double precision, the reference in Python floats. The two credits agree
# to ~1e-15, so one rounded to 10 decimals may sit one unit of the 10th decimal
# from the other, and a cent may go to the other partner of a near tie.
INEXACT_MODELS = {"time_decay": (Decimal("1e-10"), Decimal("0.01"))}


def mart(url: str, table: str, ignore: frozenset[str] = frozenset()) -> dict[tuple, dict]:
    """The rows of a mart by key, without `ignore` and ROW_TIMES columns."""
    keys = MARTS[table]
    ignore = ignore | ROW_TIMES
    query = sql.SQL("select * from marts.{}").format(sql.Identifier(table))
    with psycopg.connect(url) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(query).fetchall()
    out = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        assert key not in out, f"duplicate key {key} in marts.{table}"
        # Bookkeeping lives in schema intermediate: BI reads every mart column.
        assert not [k for k in row if k.startswith("_")], (table, list(row))
        out[key] = {k: v for k, v in row.items() if k not in ignore}
    return out


def mart_state(url: str, ignore: frozenset[str] = frozenset()) -> dict[str, dict]:
    """intermediate.int_deals__mart_state by deal, history arrays as sets."""
    with psycopg.connect(url) as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute("select * from intermediate.int_deals__mart_state")
            .fetchall()
        )
    out = {}
    for row in rows:
        assert row["deal_id"] not in out, f"duplicate deal {row['deal_id']} in the mart state"
        out[row["deal_id"]] = {
            k: set(v) if k in BOOKKEEPING else v for k, v in row.items() if k not in ignore
        }
    return out


def assert_state_covers_marts(url: str) -> None:
    """Every deal's history holds what it counts for now: its organization, its days
    and the partners it credits or is sourced by (the marts recompute those when the
    deal changes, so a gap would leave them stale)."""
    state = mart_state(url)
    deals = mart(url, "fct_deals")
    assert {d for (d,) in deals} <= state.keys()
    for (deal_id,), deal in deals.items():
        history = state[deal_id]
        assert history["org_id"] == deal["org_id"], deal_id
        assert history["sourced_partner_id"] == deal["sourced_partner_id"], deal_id
        assert deal["org_id"] in history["org_ids"], deal_id
        days = {deal["created_date"], deal["closed_date"]} - {None}
        assert days <= history["metric_dates"], (deal_id, days, history["metric_dates"])
        assert {deal["sourced_partner_id"]} - {None} <= history["partner_ids"], deal_id
    for deal_id, partner_id, _ in mart(url, "fct_partner_attribution"):
        assert partner_id in state[deal_id]["partner_ids"], (deal_id, partner_id)


def assert_marts_equal(left_url: str, right_url: str, ignore_load_ids: bool = False) -> None:
    """Row for row; with `ignore_load_ids`, not which batch id a row's load had.

    Also int_deals__mart_state: the same deals with the same current columns, and
    on each side a history that covers what the marts show."""
    ignore = frozenset(LOAD_IDS) if ignore_load_ids else frozenset()
    for table in MARTS:
        left, right = mart(left_url, table, ignore), mart(right_url, table, ignore)
        assert left.keys() == right.keys(), (
            f"marts.{table}: only left {sorted(left.keys() - right.keys())[:5]},"
            f" only right {sorted(right.keys() - left.keys())[:5]}"
        )
        for key in left:
            assert left[key] == right[key], (table, key, left[key], right[key])
    current = ignore | BOOKKEEPING
    left_state, right_state = mart_state(left_url, current), mart_state(right_url, current)
    assert left_state == right_state, sorted(
        deal
        for deal in left_state.keys() | right_state.keys()
        if left_state.get(deal) != right_state.get(deal)
    )[:5]
    for url in (left_url, right_url):
        assert_state_covers_marts(url)


def _close(a: object, b: object, tolerance: Decimal) -> bool:
    """Equal, or (numbers) at most `tolerance` apart; None only equals None."""
    if a is None or b is None:
        return a is None and b is None
    return abs(Decimal(a) - Decimal(b)) <= tolerance  # type: ignore[arg-type]


def assert_matches_reference(url: str, dbt_vars: DbtVars | None = None) -> int:
    """marts.fct_partner_attribution, marts.fct_deals and marts.attribution_channel_weights
    equal the reference (given the dbt vars the marts were built with). Returns
    attribution rows compared."""
    parameters = reference_parameters(dbt_vars)
    with psycopg.connect(url) as conn:
        data = reference.from_database(conn)
    expected = reference.expected_attribution(data, **parameters)
    actual = mart(url, "fct_partner_attribution")
    assert actual.keys() == expected.keys(), (
        f"only in marts {sorted(actual.keys() - expected.keys())[:5]},"
        f" only in reference {sorted(expected.keys() - actual.keys())[:5]}"
    )
    for key, want in expected.items():
        got = actual[key]
        # Exact: credits to 10 decimals, amounts in cents split by largest remainder,
        # as the reference rounds them on its own (exact fractions; see INEXACT_MODELS).
        credit_tolerance, cent_tolerance = INEXACT_MODELS.get(key[2], (Decimal(0), Decimal(0)))
        assert _close(got["credit"], want["credit"], credit_tolerance), (key, got, want)
        assert _close(
            got["attributed_amount_usd"], want["attributed_amount_usd"], cent_tolerance
        ), (key, got, want)
        assert got["attributed_amount_usd"] == round(got["attributed_amount_usd"], 2), key
        assert Decimal(got["deal_amount_usd"]) == Decimal(want["deal_amount_usd"]), key
        assert got["touchpoint_count"] == want["touchpoint_count"], key
        assert got["closed_at"] == want["closed_at"], key
        assert got["org_id"] == want["org_id"], key

    deals_expected = reference.expected_deals(data, **parameters)
    deals_actual = mart(url, "fct_deals")
    assert deals_actual.keys() == {(k,) for k in deals_expected}
    fields = (
        "org_id", "deal_name", "status", "amount", "currency", "amount_usd", "created_at",
        "closed_at", "is_won", "eligible_touchpoint_count", "touching_partner_count",
        "sourced_partner_id", "is_partner_sourced", "is_partner_influenced",
        "data_driven_fallback", "data_driven_fallback_reason",
    )  # fmt: skip
    for deal_id, want in deals_expected.items():
        got = deals_actual[(deal_id,)]
        for field in fields:
            assert got[field] == want[field], (deal_id, field, got[field], want[field])

    # Exact at the stored 10 decimals: the marts solve the chain in double
    # precision and round, the reference solves it in fractions and rounds.
    weights_expected = reference.expected_channel_weights(data, **parameters)
    weights_actual = mart(url, "attribution_channel_weights")
    assert weights_actual.keys() == weights_expected.keys(), (
        f"only in marts {sorted(weights_actual.keys() - weights_expected.keys())[:5]},"
        f" only in reference {sorted(weights_expected.keys() - weights_actual.keys())[:5]}"
    )
    for key, want in weights_expected.items():
        got = {field: weights_actual[key][field] for field in want}
        assert got == want, (key, got, want)
    return len(expected)


def assert_readable_index_names(url: str) -> set[tuple[str, str]]:
    """Every index of the dbt models (schemas marts and intermediate) is named
    `<table>__<words>_idx` (macros/index_names.sql), never dbt-postgres's md5 hash,
    and no rebuild left an old table behind. Returns {(table, index name)}."""
    with psycopg.connect(url) as conn:
        names = conn.execute(
            "select tablename, indexname from pg_indexes"
            " where schemaname in ('marts', 'intermediate') and indexname not like '%_pkey'"
        ).fetchall()
        leftovers = conn.execute(
            "select relname from pg_class"
            " where relname like '%dbt_backup%' or relname like '%dbt_tmp%'"
        ).fetchall()
    assert names and leftovers == [], leftovers
    for table, name in names:
        assert re.fullmatch(rf"{re.escape(table)}__[a-z0-9_]+_idx", name), (table, name)
        assert not re.search("[0-9a-f]{32}", name) and len(name) <= 63, (table, name)
    return set(names)


def stage(files: list[Path], landing: Path) -> None:
    """Drop files into the landing folder, as an export job would."""
    landing.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, landing / path.name)


def ingest(url: str, landing: Path) -> IngestReport:
    report = ingest_directory(url, landing)
    assert report.ok, report.lines()
    return report


def _assert_row(table: str, key: object, got: dict, want: dict) -> None:
    """Every field equal; numbers exactly (cents, 10-decimal rates), except sums of
    time-decay amounts, each of which may hold a cent of a near tie (INEXACT_MODELS)."""
    _, cent = INEXACT_MODELS["time_decay"]
    for field, value in want.items():
        if isinstance(value, Decimal) or isinstance(got[field], Decimal):
            tolerance = cent if field.endswith("_time_decay") else Decimal(0)
            assert _close(got[field], value, tolerance), (table, key, field, got[field], value)
        else:
            assert got[field] == value, (table, key, field, got[field], value)


def assert_partner_marts_match_reference(url: str, dbt_vars: DbtVars | None = None) -> None:
    """marts.partner_performance and marts.dim_organizations equal the reference."""
    parameters = reference_parameters(dbt_vars)
    with psycopg.connect(url) as conn:
        data = reference.from_database(conn)
    for table, expected in (
        ("partner_performance", reference.expected_partner_performance(data, **parameters)),
        ("dim_organizations", reference.expected_organizations(data)),
    ):
        actual = mart(url, table)
        assert actual.keys() == {(k,) for k in expected}, (table, actual.keys(), expected.keys())
        for key, want in expected.items():
            _assert_row(table, key, actual[(key,)], want)
