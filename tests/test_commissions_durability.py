"""A closed period never changes (docs/contract.md §8.4, §8.5): not by new data, a
full refresh, a rebuild from raw, a close killed with SIGKILL, two closes at once,
or a backup restored.

One template database per module: a small hand-written export (three
organizations, plans of every kind, USD and EUR deals), built by dbt, January
closed for every organization and February for o1. Each test works on a copy
(`clone_database`), so the template's ledger is what every test starts from.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from commissions import CloseRefused, OrgClose, Period, close_period
from platform_core.backup import backup, restore
from platform_core.locks import COMMISSION_CLOSE, acquire
from platform_core.settings import project_root
from tests.commission_helpers import org, partner
from tests.conftest import drop_database, with_database
from tests.dbt_harness import dbt, ingest
from tests.fault_helpers import clone_database, kill_group, wait_until_connections_gone
from tests.ingest_helpers import fetch, write_batch

ORGS = ("o1", "o2", "o3")
PARTNER_HOME = {"p1": "o1", "p2": "o1", "p3": "o2", "p4": "o2", "p5": "o3", "p6": "o3"}
LOADED = "2026-01-01T00:00:00Z"
LATE = "2026-03-20T00:00:00Z"  # the versions delivered after the closes

# The columns a line has in the ledger and in marts.fct_commission_lines.
LINE_COLUMNS = ("org_id", "period", "deal_id", "partner_id", "line_type", "plan_id",
                "attribution_model", "amount_usd", "deal_closed_at")  # fmt: skip
# The two commission checks (Dagster asset checks of fct_commission_lines).
COMMISSION_CHECKS = ("assert_commission_lines_sum_to_due", "assert_closed_periods_match_the_ledger")


# --------------------------------------------------------------------------
# Rows of a hand-written export (every field as text, as a CSV holds it)
# --------------------------------------------------------------------------


def plan(plan_id: str, org: str, partner: str, model: str, rate: str, start: str,
         holding: int, end: str = "", updated: str = LOADED) -> dict[str, str]:  # fmt: skip
    return {"plan_id": plan_id, "org_id": org, "partner_id": partner, "attribution_model": model,
            "rate": rate, "effective_from": start, "effective_to": end,
            "holding_days": str(holding), "updated_at": updated}  # fmt: skip


def deal(deal_id: str, org: str, amount: str, currency: str, status: str, created: str,
         closed: str, updated: str = "") -> dict[str, str]:  # fmt: skip
    """Created and closed are days (`2026-01-05`): created at 09:00, closed at 12:00 UTC."""
    closed_at = f"{closed}T12:00:00Z"
    return {"deal_id": deal_id, "org_id": org, "name": f"Deal {deal_id}", "amount": amount,
            "currency": currency, "status": status, "created_at": f"{created}T09:00:00Z",
            "closed_at": closed_at, "updated_at": updated or closed_at}  # fmt: skip


def touch(touchpoint_id: str, deal_id: str, partner: str, kind: str, at: str) -> dict[str, str]:
    return {"touchpoint_id": touchpoint_id, "org_id": PARTNER_HOME[partner], "deal_id": deal_id,
            "partner_id": partner, "touchpoint_type": kind, "occurred_at": at}  # fmt: skip


# o1: linear 10 % by default, p2 w_shaped 20 % paid 30 days later; o2: linear 5 %,
# p3 3 % of the deals it sources; o3: first touch 15 %. Deals d1-d7 won, d8 lost.
EXPORT: dict[str, list[dict[str, str]]] = {
    "organizations": [org(o) for o in ORGS],
    "partners": [partner(p, o) for p, o in PARTNER_HOME.items()],
    "commission_plans": [
        plan("pl1", "o1", "", "linear", "0.1", "2026-01-01", 0),
        plan("pl2", "o1", "p2", "w_shaped", "0.2", "2026-01-01", 30),
        plan("pl3", "o2", "", "linear", "0.05", "2025-06-01", 0),
        plan("pl4", "o2", "p3", "sourced", "0.03", "2025-06-01", 0),
        plan("pl5", "o3", "", "first_touch", "0.15", "2026-01-01", 0),
    ],
    "fx_rates": [{"currency": "EUR", "rate_date": "2026-01-01", "usd_per_unit": "1.1"}],
    "deals": [
        deal("d1", "o1", "1000", "USD", "won", "2026-01-05", "2026-01-12"),
        deal("d2", "o1", "2500.50", "EUR", "won", "2026-01-03", "2026-01-20"),
        deal("d3", "o2", "4000", "EUR", "won", "2026-01-02", "2026-01-15"),
        deal("d4", "o3", "800", "USD", "won", "2026-01-08", "2026-01-25"),
        deal("d5", "o1", "300", "USD", "won", "2026-02-01", "2026-02-10"),
        deal("d6", "o2", "700", "EUR", "won", "2026-02-02", "2026-02-14"),
        deal("d7", "o1", "500", "USD", "won", "2026-01-02", "2026-01-28"),
        deal("d8", "o3", "250", "USD", "lost", "2026-01-05", "2026-01-20"),
        deal("d9", "o1", "400", "USD", "won", "2026-03-02", "2026-03-05"),
        deal("d10", "o3", "600", "USD", "won", "2026-02-18", "2026-02-20"),
    ],
    "touchpoints": [
        touch("t1", "d1", "p1", "referral", "2026-01-05T10:00:00Z"),
        touch("t2", "d1", "p2", "demo", "2026-01-08T10:00:00Z"),
        touch("t3", "d2", "p2", "referral", "2026-01-03T10:00:00Z"),
        touch("t4", "d2", "p1", "demo", "2026-01-10T10:00:00Z"),
        touch("t5", "d3", "p3", "deal_registration", "2026-01-02T12:00:00Z"),
        touch("t6", "d3", "p4", "demo", "2026-01-10T12:00:00Z"),
        touch("t7", "d4", "p5", "referral", "2026-01-09T12:00:00Z"),
        touch("t8", "d5", "p1", "referral", "2026-02-01T12:00:00Z"),
        touch("t9", "d6", "p4", "referral", "2026-02-02T12:00:00Z"),
        touch("t10", "d7", "p1", "demo", "2026-01-03T12:00:00Z"),
        touch("t12", "d8", "p6", "referral", "2026-01-10T12:00:00Z"),
        touch("t13", "d9", "p1", "referral", "2026-03-02T12:00:00Z"),
        touch("t14", "d10", "p5", "referral", "2026-02-18T12:00:00Z"),
    ],
}

# What the template's closes record: (org, month) -> lines. January: d1, d2 and d7
# for p1 (no holding), d3 for p3 (sourced) and p4, d4 for p5. February (o1 only):
# p2's d1 and d2 (held 30 days) and d5. Still open after them: o1's d9 (March),
# o2's d6 and o3's d10 (February).
RECORDED_AT_CLOSE = {("o1", "2026-01"): 3, ("o2", "2026-01"): 2, ("o3", "2026-01"): 1,
                     ("o1", "2026-02"): 3}  # fmt: skip

# Delivered after the closes, one change of each kind.
CHANGES: dict[str, list[dict[str, str]]] = {
    # o3's plan raised from 15 % to 25 %, back to its start (retroactive).
    "commission_plans": [plan("pl5", "o3", "", "first_touch", "0.25", "2026-01-01", 0, "", LATE)],
    # EUR worth more from 10 January: d2, d3 (closed) and d6 (open) change in USD.
    "fx_rates": [{"currency": "EUR", "rate_date": "2026-01-10", "usd_per_unit": "1.3"}],
    "deals": [
        deal("d1", "o1", "1200", "USD", "won", "2026-01-05", "2026-01-12", LATE),  # amount
        deal("d7", "o1", "500", "USD", "lost", "2026-01-02", "2026-01-28", LATE),  # won -> lost
        deal("d8", "o3", "250", "USD", "won", "2026-01-05", "2026-01-20", LATE),  # lost -> won
    ],
    # A late touchpoint: p1 takes credit from p2 on d2.
    "touchpoints": [touch("t11", "d2", "p1", "demo", "2026-01-15T12:00:00Z")],
}


# --------------------------------------------------------------------------
# Reading the ledger and the marts
# --------------------------------------------------------------------------


def ledger_rows(url: str) -> dict[str, list[tuple]]:
    """Every row of both ledger tables, every column (closed_at and ids included)."""
    with psycopg.connect(url) as conn:
        return {
            table: sorted(
                conn.execute(
                    sql.SQL("select * from commissions.{}").format(sql.Identifier(table))
                ).fetchall(),
                key=repr,
            )
            for table in ("closings", "ledger_lines")
        }


def lines_of(url: str, relation: str, where: str = "true", params: tuple = ()) -> list[tuple]:
    """LINE_COLUMNS of `relation` (schema.table) rows matching `where` (a condition of
    this module, values as parameters), in order."""
    schema, table = relation.split(".")
    query = sql.SQL("select {} from {}.{} where {} order by 1, 2, 3, 4, 5").format(
        sql.SQL(", ").join(map(sql.Identifier, LINE_COLUMNS)),
        sql.Identifier(schema),
        sql.Identifier(table),
        sql.SQL(where),  # type: ignore[arg-type]
    )
    with psycopg.connect(url) as conn:
        return sorted(conn.execute(query, params).fetchall(), key=repr)


def ledger_lines(url: str) -> list[tuple]:
    """The ledger's lines in the columns the mart shows."""
    return lines_of(url, "commissions.ledger_lines")


def ledger_lines_of(rows: dict[str, list[tuple]]) -> list[tuple]:
    """LINE_COLUMNS of the ledger_lines rows of a `ledger_rows` snapshot."""
    # commissions.ledger_lines: closing_id, then the columns of LINE_COLUMNS in order.
    return sorted((row[1:] for row in rows["ledger_lines"]), key=repr)


def closed_mart_lines(url: str) -> list[tuple]:
    return lines_of(url, "marts.fct_commission_lines", "period_status = 'closed'")


def open_lines_now(url: str, org: str, through: str) -> list[tuple]:
    """What a close of `org` up to month `through` (YYYY-MM) would record now."""
    return lines_of(
        url,
        "intermediate.int_commissions__open_lines",
        "org_id = %s and period <= %s::date",
        (org, f"{through}-01"),
    )


# Each closing's lines recomputed from the ledger (as assert_closed_periods_match_the_ledger
# does): the closings whose count, total or digest no longer match.
BROKEN_CLOSINGS = """
select closings.closing_id, closings.org_id
from commissions.closings
left join commissions.ledger_lines as lines on lines.closing_id = closings.closing_id
group by closings.closing_id
having count(lines.closing_id) <> closings.line_count
    or coalesce(sum(lines.amount_usd), 0) <> closings.total_usd
    or commissions.lines_digest(coalesce(array_agg(lines) filter
        (where lines.closing_id is not null), '{}')) <> closings.lines_digest
"""

# (deal, partner)s whose lines do not add up to what is due now (0 when nothing is).
LINES_OFF_DUE = """
with lines as (
    select org_id, deal_id, partner_id, sum(amount_usd) as lines_usd
    from marts.fct_commission_lines group by 1, 2, 3
)
select coalesce(lines.org_id, due.org_id), coalesce(lines.deal_id, due.deal_id),
       coalesce(lines.partner_id, due.partner_id), lines.lines_usd, due.due_usd
from lines
full join intermediate.int_commissions__due as due using (org_id, deal_id, partner_id)
where coalesce(lines.lines_usd, 0) <> coalesce(due.due_usd, 0)
"""


def assert_ledger_consistent(url: str) -> None:
    """Every closing's lines still have the count, total and digest recorded with it."""
    assert fetch(url, BROKEN_CLOSINGS) == []


def commission_marts(url: str) -> dict[str, list[str]]:
    """Both commission marts, every row, without the build time."""
    out = {}
    with psycopg.connect(url) as conn:
        for table in ("fct_commission_lines", "partner_statements"):
            query = sql.SQL(
                "select (to_jsonb(t) - 'computed_at')::text as r from marts.{} as t order by r"
            ).format(sql.Identifier(table))
            out[table] = [r for (r,) in conn.execute(query)]
    return out


def build(url: str, work: Path, *args: str) -> None:
    """Every model and the two commission checks (dbt stops non-zero when one fails)."""
    dbt(url, work, "build", *args, "--indirect-selection", "empty",
        "--select", "resource_type:model", *COMMISSION_CHECKS)  # fmt: skip


def closed_through(url: str) -> dict[str, str]:
    """Each organization's last closed month."""
    rows = fetch(url, "select org_id, max(period) from commissions.closings group by 1")
    return {org: f"{month:%Y-%m}" for org, month in rows}


def assert_append_only(url: str) -> None:
    """UPDATE, DELETE and TRUNCATE of either ledger table are refused (migration 0007)."""
    statements = [
        "update commissions.closings set total_usd = 0",
        "delete from commissions.closings",
        "truncate commissions.closings cascade",
        "update commissions.ledger_lines set amount_usd = 0",
        "delete from commissions.ledger_lines",
        "truncate commissions.ledger_lines",
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The export loaded and built; January closed for every organization, then
    February for o1 (the marts are not rebuilt after the closes). Its name."""
    work = tmp_path_factory.mktemp("commissions_durability")
    (work / "landing").mkdir()
    write_batch(work / "landing", "export", EXPORT)
    ingest(db_url, work / "landing")
    dbt(db_url, work / "dbt", "run")
    january = close_period(db_url, Period.parse("2026-01"), None)
    february = close_period(db_url, Period.parse("2026-02"), ["o1"])
    recorded = {(r.org_id, f"{r.period:%Y-%m}"): r.line_count for r in january + february}
    assert recorded == RECORDED_AT_CLOSE
    assert_ledger_consistent(db_url)
    return db_url.rsplit("/", 1)[-1]


@pytest.fixture
def copy(server_url: str, template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A copy of the template for one test."""
    name = f"cd_{request.node.name[5:40]}"
    url = clone_database(server_url, template, name)
    yield url
    drop_database(server_url, name)


# --------------------------------------------------------------------------
# Killed, raced, restored
# --------------------------------------------------------------------------

# A close of every organization, as `commissions close --all` records it (the job
# step is this call), in a process of its own to kill.
CLOSE_ALL = (
    "import os, sys\n"
    "from commissions import Period, close_period\n"
    "close_period(os.environ['DATABASE_URL'], Period.parse(sys.argv[1]), None)\n"
)


@contextlib.contextmanager
def close_killed_at_exit(url: str, month: str) -> Iterator[subprocess.Popen[str]]:
    """A close of every organization in its own process, SIGKILLed when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", CLOSE_ALL, month],
        env=dict(os.environ, DATABASE_URL=url),
        cwd=project_root(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        kill_group(process)


def wait_for(url: str, query: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until `query` returns true (polled), failing at once if `process` ends first."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the close ended first:\n{process.stdout.read()}")  # type: ignore[union-attr]
            if conn.execute(query).fetchone()[0]:  # type: ignore[index]
                return
            time.sleep(0.02)
    raise AssertionError(f"not true within {timeout} s: {query}")


CLOSE_LOCK_WAITERS = (
    "select count(*) from pg_locks where locktype = 'advisory' and not granted"
    " and database = (select oid from pg_database where datname = current_database())"
)
# A session of the close waiting for a row lock (the blocker's uncommitted closing).
WAITS_ON_A_ROW = (
    "select count(*) > 0 from pg_stat_activity where datname = current_database()"
    " and wait_event_type = 'Lock' and query ilike '%insert into commissions.closings%'"
)


@pytest.mark.slow  # ~30 s of subprocess closes
def test_a_close_killed_leaves_each_organization_closed_whole_or_not_at_all(copy: str) -> None:
    url = copy
    before = ledger_rows(url)
    to_record = {org: open_lines_now(url, org, "2026-03") for org in ORGS}
    assert all(to_record.values()), to_record  # every organization has lines to record

    # Killed while it waits for the close lock another session holds: nothing recorded.
    with psycopg.connect(url, autocommit=True) as holder:
        acquire(holder, COMMISSION_CLOSE, "session")
        with close_killed_at_exit(url, "2026-03") as process:
            wait_for(url, f"select ({CLOSE_LOCK_WAITERS}) > 0", process)
    wait_until_connections_gone(url)
    assert ledger_rows(url) == before

    # Killed while it records o2, o1 committed: an uncommitted closing of o2 for March
    # (a blocker, rolled back afterwards) makes o2's insert wait on the unique key.
    with psycopg.connect(url) as blocker:
        blocker.execute(
            "insert into commissions.closings (org_id, first_period, period, line_count,"
            " total_usd, lines_digest) values ('o2', '2026-03-01', '2026-03-01', 0, 0, 'x')"
        )
        with close_killed_at_exit(url, "2026-03") as process:
            wait_for(url, WAITS_ON_A_ROW, process)
        blocker.rollback()
    wait_until_connections_gone(url)
    assert closed_through(url) == {"o1": "2026-03", "o2": "2026-01", "o3": "2026-01"}
    assert ledger_lines(url) == sorted(ledger_lines_of(before) + to_record["o1"], key=repr), (
        "o1's close is not whole"
    )
    assert_ledger_consistent(url)

    # The next close records the two others, whole (o1, closed already, is skipped).
    results = close_period(url, Period.parse("2026-03"), None)
    assert [(r.org_id, r.closed, r.line_count) for r in results] == [
        ("o2", True, len(to_record["o2"])),
        ("o3", True, len(to_record["o3"])),
    ]
    assert ledger_lines(url) == sorted(
        ledger_lines_of(before) + sum(to_record.values(), []), key=repr
    )
    assert closed_through(url) == dict.fromkeys(ORGS, "2026-03")
    assert_ledger_consistent(url)


def attempt(url: str, month: str, orgs: list[str] | None) -> list[OrgClose] | CloseRefused:
    try:
        return close_period(url, Period.parse(month), orgs)
    except CloseRefused as refused:
        return refused


def closes_at_once(url: str, month: str, orgs: list[str] | None) -> list[object]:
    """Two closes started together: both wait for the close lock, released when both wait."""
    # The lock holder is closed before the pool is joined: a failed assertion here
    # releases the threads instead of leaving them waiting for the lock.
    with ThreadPoolExecutor(2) as pool, psycopg.connect(url, autocommit=True) as holder:
        acquire(holder, COMMISSION_CLOSE, "session")
        futures = [pool.submit(attempt, url, month, orgs) for _ in range(2)]
        deadline = time.monotonic() + 60
        while fetch(url, CLOSE_LOCK_WAITERS) != [(2,)]:
            assert time.monotonic() < deadline, "the two closes never both waited"
            assert not any(f.done() for f in futures), [f.result() for f in futures if f.done()]
            time.sleep(0.02)
        holder.execute("select pg_advisory_unlock_all()")
        return [f.result(timeout=60) for f in futures]


def test_two_closes_of_the_same_month_record_it_once(copy: str) -> None:
    url = copy
    before = ledger_lines(url)
    to_record = open_lines_now(url, "o1", "2026-03")
    outcomes = closes_at_once(url, "2026-03", ["o1"])
    refused = [o for o in outcomes if isinstance(o, CloseRefused)]
    recorded = [o for o in outcomes if not isinstance(o, CloseRefused)]
    assert len(refused) == len(recorded) == 1, outcomes
    assert "2026-03 is already closed for o1" in str(refused[0])
    assert [(r.org_id, r.closed) for r in recorded[0]] == [("o1", True)]
    assert fetch(url, "select count(*) from commissions.closings where org_id = 'o1'"
                 " and period = '2026-03-01'") == [(1,)]  # fmt: skip
    assert ledger_lines(url) == sorted(before + to_record, key=repr)

    # Two closes of every organization: each organization is recorded by one of them.
    outcomes = closes_at_once(url, "2026-04", None)
    closed_by = [
        {r.org_id for r in o if r.closed} for o in outcomes if not isinstance(o, CloseRefused)
    ]
    for outcome in outcomes:
        assert not isinstance(outcome, CloseRefused) or "already closed" in str(outcome)
    assert sorted(org for orgs in closed_by for org in orgs) == list(ORGS), outcomes
    assert closed_through(url) == dict.fromkeys(ORGS, "2026-04")
    assert fetch(url, "select count(*) from commissions.closings where period = '2026-04-01'") == [
        (len(ORGS),)
    ]
    assert_ledger_consistent(url)


@pytest.mark.slow  # ~15 s of pg_dump and pg_restore
def test_backup_and_restore_bring_back_the_ledger_and_its_guard(
    copy: str, server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = copy
    # No Dagster storage here: the backup holds the platform database only.
    monkeypatch.setenv("DAGSTER_PG_URL", with_database(server_url, "cd_no_dagster_storage"))
    before = ledger_rows(url)
    manifest = backup(url, tmp_path / "backup")
    assert [d["purpose"] for d in manifest["databases"]] == ["platform"]
    drop_database(server_url, url.rsplit("/", 1)[-1])

    restore(url, tmp_path / "backup")
    assert ledger_rows(url) == before
    assert_ledger_consistent(url)
    assert_append_only(url)
    (next_line,) = open_lines_now(url, "o2", "2026-02")  # d6, earned in February
    [result] = close_period(url, Period.parse("2026-02"), ["o2"])
    assert (result.closed, result.first_period.isoformat(), result.line_count) == (
        True, "2026-02-01", 1
    )  # fmt: skip
    assert result.closing_id > max(row[0] for row in before["closings"])
    assert ledger_lines(url) == sorted([*ledger_lines_of(before), next_line], key=repr)
    assert_ledger_consistent(url)


# --------------------------------------------------------------------------
# New data, a full refresh, a rebuild from raw
# --------------------------------------------------------------------------


def test_new_data_and_a_full_refresh_leave_closed_lines_adjusting_in_the_first_open_month(
    copy: str, tmp_path: Path
) -> None:
    url = copy
    before = ledger_rows(url)
    (tmp_path / "landing").mkdir()
    write_batch(tmp_path / "landing", "late", CHANGES)
    ingest(url, tmp_path / "landing")
    build(url, tmp_path / "dbt")

    assert ledger_rows(url) == before
    assert closed_mart_lines(url) == ledger_lines_of(before)
    assert fetch(url, LINES_OFF_DUE) == []
    open_lines = {
        (deal_id, partner_id): (line_type, f"{period:%Y-%m}", amount)
        for _org, period, deal_id, partner_id, line_type, *_, amount, _ in lines_of(
            url, "marts.fct_commission_lines", "period_status = 'open'"
        )
    }
    # The first open month: March for o1, February for o2 and o3.
    assert open_lines == {
        # d1 at 1,200: p1 10 % of 600 (50 booked), p2 20 % of 600 (100 booked).
        ("d1", "p1"): ("adjustment", "2026-03", Decimal("10.00")),
        ("d1", "p2"): ("adjustment", "2026-03", Decimal("20.00")),
        # d2 at 2,500.50 EUR x 1.3 = 3,250.65, with t11: linear p1 2/3 = 2,167.10
        # (137.53 booked); w_shaped p2 0.45 = 1,462.79 (275.05 booked).
        ("d2", "p1"): ("adjustment", "2026-03", Decimal("79.18")),
        ("d2", "p2"): ("adjustment", "2026-03", Decimal("17.51")),
        # d3 at 4,000 EUR x 1.3 = 5,200: p3 sources it, 3 % (132 booked); p4 5 % of 2,600 (110).
        ("d3", "p3"): ("adjustment", "2026-02", Decimal("24.00")),
        ("d3", "p4"): ("adjustment", "2026-02", Decimal("20.00")),
        # pl5 at 25 % since 1 January: 200 on d4 (120 booked).
        ("d4", "p5"): ("adjustment", "2026-02", Decimal("80.00")),
        # Never closed: d6 now 910 USD, 5 %; d9 10 %; d10 at pl5's new 25 %.
        ("d6", "p4"): ("earned", "2026-02", Decimal("45.50")),
        ("d9", "p1"): ("earned", "2026-03", Decimal("40.00")),
        ("d10", "p5"): ("earned", "2026-02", Decimal("150.00")),
        # d7 lost: its January payment taken back.
        ("d7", "p1"): ("adjustment", "2026-03", Decimal("-50.00")),
        # d8 won after January closed: earned in o3's first open month, 25 % of 250.
        ("d8", "p6"): ("earned", "2026-02", Decimal("62.50")),
    }
    assert_ledger_consistent(url)

    # A full refresh of every model gives the same lines, closed and open.
    marts = commission_marts(url)
    build(url, tmp_path / "dbt", "--full-refresh")
    assert ledger_rows(url) == before
    assert commission_marts(url) == marts


@pytest.mark.slow
def test_a_full_refresh_and_a_rebuild_from_raw_leave_closed_periods_alone(
    copy: str, tmp_path: Path
) -> None:
    url = copy
    build(url, tmp_path / "dbt")  # the marts after the closes
    ledger = ledger_rows(url)
    marts = commission_marts(url)
    assert closed_mart_lines(url) == ledger_lines_of(ledger)
    assert sum(1 for line in marts["fct_commission_lines"] if '"closed"' in line) == sum(
        RECORDED_AT_CLOSE.values()
    )

    build(url, tmp_path / "dbt", "--full-refresh")
    assert ledger_rows(url) == ledger
    assert commission_marts(url) == marts

    # Every schema dbt builds, gone: rebuilt from raw and the ledger alone.
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in ("marts", "intermediate", "staging"):
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
    build(url, tmp_path / "dbt")
    assert ledger_rows(url) == ledger
    assert commission_marts(url) == marts
    assert_ledger_consistent(url)
