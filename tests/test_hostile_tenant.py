"""A hostile tenant: an organization login that tries to exhaust, block or read around the platform.

Each test takes one route a tenant login (made by `attribution bi grant-org`)
could use — a connection flood, the platform's advisory locks, timeouts it sets
off itself, other databases, marts polled while dbt rebuilds them (incremental,
full refresh, failing after staging), a dropped and re-created role, and the
grant command's own edge cases. The index and planner-statistics probes are in
tests/test_mart_index_leaks.py; the input bounds in tests/test_contract_bounds.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from orchestration.dbt_project import mart_tables
from platform_core.bi_access import AccessError, TenantLimits, enforce_tenant_limits, grant_org
from synthetic_crm import generate
from tests.dbt_harness import build, ingest

PASSWORD = "hostile-tenant-password"
ORG, OTHER = "org_00001", "org_00002"
ROLE = "mallory_bi"
LIMIT = 3
MARTS = tuple(mart_tables())


def login_url(
    url: str, role: str = ROLE, password: str = PASSWORD, database: str | None = None
) -> str:
    parts = urlsplit(url)
    path = f"/{database}" if database else parts.path
    netloc = f"{role}:{quote(password)}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def cli(url: str, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=url, BI_ORG_PASSWORD=password)
    return subprocess.run(
        [sys.executable, "-m", "attribution.cli", *args], env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def built(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, orgs=3, days=20, seed=5)
    ingest(db_url, landing)
    build(db_url, tmp_path_factory.mktemp("dbt"))
    grant_org(db_url, ORG, ROLE, PASSWORD, limits=TenantLimits(connection_limit=LIMIT))
    yield db_url


# --- cannot exhaust the server ---------------------------------------------------------


def test_connections_stop_at_the_login_limit(built: str) -> None:
    with ExitStack() as stack:
        for _ in range(LIMIT):
            stack.enter_context(psycopg.connect(login_url(built)))
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            psycopg.connect(login_url(built)).close()
        # The platform still gets in while the tenant holds all it may hold.
        with psycopg.connect(built) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_login_carries_its_limits(built: str) -> None:
    with psycopg.connect(login_url(built)) as conn:
        shown = {
            name: conn.execute(sql.SQL("show {}").format(sql.Identifier(name))).fetchone()[0]
            for name in (
                "statement_timeout",
                "idle_in_transaction_session_timeout",
                "idle_session_timeout",
                "temp_file_limit",
                "work_mem",
            )
        }
        assert shown == {
            "statement_timeout": "30s",
            "idle_in_transaction_session_timeout": "30s",
            "idle_session_timeout": "10min",
            "temp_file_limit": "1GB",
            "work_mem": "16MB",
        }
        # temp_file_limit is a superuser setting: the tenant cannot lift it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("set temp_file_limit = -1")


def test_statement_that_lifts_its_own_timeout_is_cancelled(built: str) -> None:
    grant_org(
        built, ORG, "sleepy_bi", PASSWORD,
        limits=TenantLimits(statement_timeout_ms=1_000, idle_in_transaction_timeout_ms=1_000),
    )  # fmt: skip
    outcome: dict[str, BaseException | None] = {}

    def sleep_forever() -> None:
        with psycopg.connect(login_url(built, "sleepy_bi"), autocommit=True) as conn:
            conn.execute("set statement_timeout = 0")
            try:
                conn.execute("select pg_sleep(60)")
                outcome["error"] = None
            except psycopg.Error as exc:
                outcome["error"] = exc

    worker = threading.Thread(target=sleep_forever)
    worker.start()
    time.sleep(2.5)
    actions = enforce_tenant_limits(built, grace_ms=0)
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert isinstance(outcome["error"], psycopg.errors.QueryCanceled)
    assert any("sleepy_bi" in action and "cancelled" in action for action in actions)


def test_transaction_left_open_is_ended(built: str) -> None:
    grant_org(
        built, ORG, "idle_bi", PASSWORD,
        limits=TenantLimits(statement_timeout_ms=1_000, idle_in_transaction_timeout_ms=1_000),
    )  # fmt: skip
    conn = psycopg.connect(login_url(built, "idle_bi"))
    conn.execute("set idle_in_transaction_session_timeout = 0")
    conn.execute("select count(*) from marts.fct_deals")  # opens the transaction
    time.sleep(2.5)
    actions = enforce_tenant_limits(built, grace_ms=0)
    assert any("idle_bi" in action for action in actions)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")
    conn.close()


def test_enforce_limits_command(built: str) -> None:
    grant_org(
        built, ORG, "late_bi", PASSWORD,
        limits=TenantLimits(statement_timeout_ms=1_000, idle_in_transaction_timeout_ms=1_000),
    )  # fmt: skip
    conn = psycopg.connect(login_url(built, "late_bi"))
    conn.execute("set idle_in_transaction_session_timeout = 0")
    conn.execute("select 1")
    time.sleep(7)  # past the login's 1 s and the command's 5 s grace
    result = cli(built, "bi", "enforce-limits")
    conn.close()
    assert result.returncode == 0, result.stderr
    assert "late_bi" in result.stdout and "1 tenant session(s)" in result.stdout


@pytest.mark.parametrize(
    "statement",
    [
        "select pg_advisory_lock(hashtext('attribution.ingest'))",
        "select pg_advisory_lock(hashtext('attribution.dbt_build'))",
        "select pg_try_advisory_lock(1517748225)",
        "select pg_advisory_lock_shared(hashtext('attribution.ingest'))",
        "select pg_advisory_xact_lock(hashtext('attribution.ingest'))",
        "select pg_try_advisory_xact_lock_shared(1, 2)",
        "select lo_create(0)",
        "select lo_from_bytea(0, 'x')",
    ],
)
def test_platform_locks_and_large_objects_are_out_of_reach(built: str, statement: str) -> None:
    with (
        psycopg.connect(login_url(built)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


@pytest.mark.parametrize("database", ["postgres", "template1"])
def test_no_other_database_to_connect_to(built: str, database: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(login_url(built, database=database)).close()


def test_no_temporary_objects_in_the_platform_database(built: str) -> None:
    with psycopg.connect(login_url(built)) as conn:
        assert conn.execute(
            "select has_database_privilege(current_database(), 'TEMPORARY')"
        ).fetchone() == (False,)


# --- never sees a mart missing ---------------------------------------------------------


@contextmanager
def polling_tenant(url: str) -> Iterator[dict[str, list]]:
    """A tenant reading every mart in a loop until the block ends; collects its errors."""
    seen: dict[str, list] = {"errors": [], "reads": [0]}
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(login_url(url), autocommit=True) as conn:
            while not stop.is_set():
                for table in MARTS:
                    try:
                        conn.execute(
                            sql.SQL("select count(*) from marts.{}").format(sql.Identifier(table))
                        ).fetchone()
                        seen["reads"][0] += 1
                    except psycopg.Error as exc:
                        seen["errors"].append(f"{table}: {type(exc).__name__}: {exc}")

    worker = threading.Thread(target=poll)
    worker.start()
    try:
        yield seen
    finally:
        stop.set()
        worker.join(timeout=60)


@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "full-refresh"])
def test_marts_never_missing_during_a_build(built: str, tmp_path: Path, full_refresh: bool) -> None:
    with polling_tenant(built) as seen:
        build(built, tmp_path, full_refresh=full_refresh)
    assert seen["errors"] == []
    assert seen["reads"][0] > len(MARTS)


def test_marts_never_missing_when_a_build_fails_after_staging(
    built: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.dbt_invocation import run_dbt

    # The intermediate models wait for a lock this test holds, and give up after 3 s:
    # the staging views have been replaced by then, the marts not.
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=3000")
    with polling_tenant(built) as seen, psycopg.connect(built) as holder:
        holder.execute("lock table intermediate.int_deals__current in access exclusive mode")
        failed = run_dbt(built, ["run"], capture=True, target_path=tmp_path)
        holder.rollback()
    assert failed.returncode != 0
    assert "lock timeout" in failed.stdout
    assert seen["errors"] == []
    with psycopg.connect(built) as conn:
        missing = [
            table
            for table in MARTS
            if conn.execute("select to_regclass(%s)", [f"marts.{table}"]).fetchone()[0] is None
        ]
    assert missing == []


# --- grants belong to the role, not its name -------------------------------------------


def test_dropped_and_recreated_role_inherits_nothing(built: str) -> None:
    grant_org(built, ORG, "reborn_bi", PASSWORD)
    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute("drop owned by reborn_bi")
        conn.execute("drop role reborn_bi")
    report = grant_org(built, OTHER, "reborn_bi", PASSWORD)
    assert report.created
    with psycopg.connect(login_url(built, "reborn_bi")) as conn:
        orgs = {row[0] for row in conn.execute("select distinct org_id from marts.fct_deals")}
        assert conn.execute("select security.visible_org_ids()").fetchone()[0] == [OTHER]
    assert orgs == {OTHER}


def test_grants_of_a_dropped_role_are_forgotten_at_the_next_build(
    built: str, tmp_path: Path
) -> None:
    grant_org(built, ORG, "gone_bi", PASSWORD)
    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute("drop owned by gone_bi")
        conn.execute("drop role gone_bi")
    build(built, tmp_path)
    with psycopg.connect(built) as conn:
        left = conn.execute(
            "select count(*) from security.bi_org_grants where role_name = 'gone_bi'"
        ).fetchone()[0]
    assert left == 0


@pytest.mark.parametrize("keyword", ["none", "select", "user", "current_user", "grant"])
def test_keywords_are_refused_as_role_names(built: str, keyword: str) -> None:
    with pytest.raises(AccessError, match="SQL keyword"):
        grant_org(built, ORG, keyword, PASSWORD)
    result = cli(built, "bi", "grant-org", ORG, "--role", keyword)
    assert result.returncode == 2
    assert "SQL keyword" in result.stderr and "Traceback" not in result.stderr


def test_existing_login_keeps_its_password_unless_told(built: str) -> None:
    assert cli(built, "bi", "grant-org", ORG, "--role", "keeper_bi").returncode == 0
    again = cli(
        built, "bi", "grant-org", OTHER, "--role", "keeper_bi", password="another-password-1"
    )
    assert again.returncode == 0 and "password unchanged" in again.stdout
    psycopg.connect(login_url(built, "keeper_bi")).close()  # the first password still works
    reset = cli(
        built, "bi", "grant-org", ORG, "--role", "keeper_bi", "--reset-password",
        password="another-password-1",
    )  # fmt: skip
    assert reset.returncode == 0 and "password reset" in reset.stdout
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(login_url(built, "keeper_bi")).close()
    psycopg.connect(login_url(built, "keeper_bi", "another-password-1")).close()


def test_bookkeeping_columns_are_not_in_the_marts(built: str) -> None:
    with psycopg.connect(login_url(built)) as conn:
        hidden = conn.execute(
            """
            select table_name, column_name from information_schema.columns
            where table_schema = 'marts' and column_name like '\\_%'
            """
        ).fetchall()
    assert hidden == []
