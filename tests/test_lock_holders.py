"""Advisory locks wait a bounded time and name whoever holds them (docs/reliability.md).

Each lock is held by a real session with a recognisable application_name; the
operation that needs it (a dbt build, a file load, the migrations) runs with a
small bound and must stop with an error naming that session's pid and
application — and say who it waits for while it waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from ingestion import ingest_directory
from orchestration.dbt_build_lock import build_lock
from platform_core import locks
from platform_core.migrations import migrate
from synthetic_crm import generate
from tests.fault_helpers import dbt_process
from tests.ingest_helpers import fetch


@contextmanager
def holding(
    url: str, statement: str, application: str, params: list[object] | None = None
) -> Iterator[int]:
    """A session named `application` that ran `statement` (taking a lock) and stays in
    its transaction until the block ends; yields its backend pid."""
    with psycopg.connect(url, application_name=application) as conn:
        conn.execute(statement, params or [])
        try:
            yield conn.info.backend_pid
        finally:
            conn.rollback()
            conn.execute("select pg_advisory_unlock_all()")


HOLD_BUILD = "select pg_advisory_lock(hashtext('attribution.dbt_build'))"
HOLD_INGEST = "select pg_advisory_xact_lock(hashtext('attribution.ingest'))"
HOLD_INGEST_SHARED = "select pg_advisory_xact_lock_shared(hashtext('attribution.ingest'))"
HOLD_MIGRATIONS = "select pg_advisory_lock(%s)"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate(out, orgs=2, days=2, seed=5)
    return out


def test_pg_locks_layout_of_a_bigint_key(db_url: str) -> None:
    """classid = high 32 bits, objid = low 32 bits (unsigned), objsubid = 1: a key with
    both halves set is found; another key and a two-int4 key with the same halves are not."""
    key = 0x1234_5678_9ABC_DEF0
    lock = locks.AdvisoryLock("a test lock", key, "UNUSED_TEST_WAIT", 1)
    other = locks.AdvisoryLock("another", key + 1, "UNUSED_TEST_WAIT", 1)
    with (
        holding(db_url, "select pg_advisory_lock(%s)", "layout-holder", [key]) as pid,
        holding(
            db_url,
            "select pg_advisory_lock(%s::int, %s::int)",
            "two-keys",
            [0x12345678, -0x65432110],
        ),  # fmt: skip
        psycopg.connect(db_url) as conn,
    ):
        (classid, objid, objsubid) = conn.execute(
            "select classid::bigint, objid::bigint, objsubid from pg_locks"
            " where locktype = 'advisory' and pid = %s",
            [pid],
        ).fetchone()  # type: ignore[misc]
        assert (classid, objid, objsubid) == (0x12345678, 0x9ABCDEF0, 1)
        assert [h["pid"] for h in locks.holders(conn, lock)] == [pid]
        assert locks.holders(conn, other) == []
        # hashtext() of the text keys is negative: the high half is all ones.
        with holding(db_url, HOLD_INGEST, "negative-key") as ingest_pid:
            assert [h["pid"] for h in locks.holders(conn, locks.INGESTION)] == [ingest_pid]


def test_build_lock_names_the_holder_while_waiting_and_when_giving_up(db_url: str) -> None:
    said: list[str] = []
    with (
        holding(db_url, HOLD_BUILD, "stuck-admin-psql") as pid,
        pytest.raises(SystemExit) as stopped,
        build_lock(db_url, 2, announce=said.append),
    ):
        raise AssertionError("the build lock was taken while another session held it")
    (waiting,) = said
    assert waiting.startswith("another dbt build is running on this database; waiting")
    assert f"pid {pid} " in waiting and "application 'stuck-admin-psql'" in waiting
    message = str(stopped.value.code)
    assert "\n" not in message
    assert "held the build lock for more than 2 s; not building" in message
    assert f"pid {pid} " in message and "application 'stuck-admin-psql'" in message
    assert "client " in message and "connected " in message
    assert "idle in transaction for " in message
    assert 'last query: "select pg_advisory_lock(hashtext(' in message


def test_attribution_dbt_names_the_holder_in_one_line(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTRIBUTION_BUILD_LOCK_WAIT", "1")
    with holding(db_url, HOLD_BUILD, "orphaned-dbt") as pid:
        blocked = dbt_process(db_url, ["run"], tmp_path)
        output, _ = blocked.communicate(timeout=300)
    assert blocked.returncode != 0
    (error,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert f"pid {pid} " in error and "application 'orphaned-dbt'" in error, error
    assert "START sql" not in output


@pytest.mark.parametrize(
    ("statement", "shared"),
    [(HOLD_INGEST, False), (HOLD_INGEST_SHARED, True)],
    ids=["another-load", "a-dbt-model-shared"],
)
def test_a_load_gives_up_naming_the_holder_and_loads_nothing(
    fresh_db_url: str, export: Path, monkeypatch: pytest.MonkeyPatch, statement: str, shared: bool
) -> None:
    """A load waits for the ingestion lock, exclusive or held shared the way the dbt
    models take it; past the bound the directory load stops at the first file (the
    others would wait for the same holder) and names it."""
    monkeypatch.setenv("ATTRIBUTION_INGEST_LOCK_WAIT", "1")
    clock = time.monotonic()
    with (
        holding(fresh_db_url, statement, "ingest-holder") as pid,
        pytest.raises(locks.LockWaitTimeout) as timeout,
    ):
        ingest_directory(fresh_db_url, export)
    assert time.monotonic() - clock < 15  # one wait of 1 s, not one per file
    message = str(timeout.value)
    assert message.startswith("gave up waiting for the ingestion lock after 1.0 s")
    assert "ATTRIBUTION_INGEST_LOCK_WAIT" in message
    assert f"pid {pid}{' (shared)' if shared else ''} (" in message
    assert "application 'ingest-holder'" in message
    assert fetch(fresh_db_url, "select count(*) from raw.ingest_batches") == [(0,)]


def test_attribution_ingest_reports_the_holder_in_one_line(fresh_db_url: str, export: Path) -> None:
    env = dict(os.environ, DATABASE_URL=fresh_db_url, ATTRIBUTION_INGEST_LOCK_WAIT="1")
    with holding(fresh_db_url, HOLD_INGEST, "nightly-backfill") as pid:
        done = subprocess.run(
            [sys.executable, "-m", "attribution.cli", "ingest", str(export)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gave up waiting for the ingestion lock")
    assert f"pid {pid} " in lines[0] and "application 'nightly-backfill'" in lines[0]


def test_a_load_waits_announcing_the_holder_then_loads(
    fresh_db_url: str, export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with holding(fresh_db_url, HOLD_INGEST, "slow-loader") as pid:
        loader = threading.Thread(target=ingest_directory, args=(fresh_db_url, export))
        loader.start()
        time.sleep(4)  # past the quiet first 2 s: the wait is announced
    loader.join(timeout=120)
    assert not loader.is_alive()
    err = capsys.readouterr().err
    waiting = [line for line in err.splitlines() if "waiting for it" in line]
    assert len(waiting) == 1, err
    assert waiting[0].startswith(f"the ingestion lock is held by pid {pid} (")
    assert "application 'slow-loader'" in waiting[0]
    assert "got the ingestion lock after " in err
    assert fetch(fresh_db_url, "select count(*) > 0 from raw.ingest_batches") == [(True,)]


def test_migrations_give_up_naming_the_holder(
    fresh_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with holding(fresh_db_url, HOLD_MIGRATIONS, "schema-admin", [0x5A77_0001]) as pid:
        with pytest.raises(locks.LockWaitTimeout) as timeout:
            migrate(fresh_db_url, lock_wait=1)
        monkeypatch.setenv("ATTRIBUTION_MIGRATION_LOCK_WAIT", "0.5")
        with pytest.raises(locks.LockWaitTimeout) as from_env:
            migrate(fresh_db_url)
    for error in (timeout.value, from_env.value):
        assert str(error).startswith("gave up waiting for the migration lock after")
        assert f"pid {pid} " in str(error) and "application 'schema-admin'" in str(error)
    assert "after 0.5 s" in str(from_env.value)
    assert migrate(fresh_db_url, lock_wait=1) == []  # free again: nothing left to apply


def test_waiting_keeps_the_callers_lock_timeout_and_the_lock_for_the_transaction(
    db_url: str,
) -> None:
    with holding(db_url, HOLD_INGEST, "brief-holder"), psycopg.connect(db_url) as conn:
        conn.execute("set lock_timeout = '7s'")
        with pytest.raises(locks.LockWaitTimeout), conn.transaction():
            locks.acquire(conn, locks.INGESTION, "transaction", wait=0.3, quiet=0)
        assert conn.execute("show lock_timeout").fetchone() == ("7s",)
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute("set local lock_timeout = '9s'")
        assert locks.acquire(conn, locks.INGESTION, "transaction", wait=1) == 0.0
        assert conn.execute("show lock_timeout").fetchone() == ("9s",)
        (held,) = conn.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
        ).fetchone()  # type: ignore[misc]
        assert held == 1


def test_a_password_in_the_holders_query_is_never_repeated(db_url: str) -> None:
    with psycopg.connect(db_url, application_name="role-admin", autocommit=True) as conn:
        conn.execute(HOLD_BUILD)
        conn.execute("select 'alter role x password ''s3cret-value''' as note")
        with psycopg.connect(db_url, autocommit=True) as waiter:
            text = locks.describe_holders(waiter, locks.DBT_BUILD)
        conn.execute("select pg_advisory_unlock_all()")
    assert "application 'role-admin'" in text
    assert "s3cret-value" not in text and "withheld" in text


def test_a_wait_bound_that_is_not_a_number_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTRIBUTION_INGEST_LOCK_WAIT", "ten minutes")
    with pytest.raises(ValueError, match="ATTRIBUTION_INGEST_LOCK_WAIT='ten minutes'"):
        locks.INGESTION.wait_seconds()
    monkeypatch.setenv("ATTRIBUTION_INGEST_LOCK_WAIT", "-1")
    with pytest.raises(ValueError, match="0 or more"):
        locks.INGESTION.wait_seconds()
    monkeypatch.delenv("ATTRIBUTION_INGEST_LOCK_WAIT")
    assert locks.INGESTION.wait_seconds() == 600
