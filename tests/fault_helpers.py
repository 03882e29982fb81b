"""Fault injection helpers: start the real processes, kill them at a chosen point,
and watch the marts from a reader's side the whole time.

Kill points are found deterministically (a line of dbt's own output such as
`START sql incremental model marts.fct_partner_attribution`, or a query of the
server's `pg_stat_activity` / `pg_stat_progress_copy`), optionally followed by a
delay drawn from a seeded random generator (the seed is in the test id).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from orchestration.dbt_invocation import DBT_PROJECT_DIR, dbt_executable
from tests.conftest import with_database

MART_TABLES = (
    "fct_partner_attribution",
    "fct_deals",
    "partner_performance",
    "org_daily_metrics",
    "dim_organizations",
)
READER_APPLICATION = "fault_test_reader"
# Every (deal, model) whose credits do not sum to 1: a half-built attribution.
BROKEN_CREDITS = (
    "select count(*) from (select deal_id, attribution_model from marts.fct_partner_attribution"
    " group by 1, 2 having abs(sum(credit) - 1) > count(*) * 0.00000000005 + 1e-15) as broken"
)


def clone_database(server_url: str, template: str, name: str) -> str:
    """A copy of database `template` (PostgreSQL copies the files: fast)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return with_database(server_url, name)


def fingerprint(conn: psycopg.Connection, table: str) -> tuple[int, str]:
    """(row count, hash of every row): equal fingerprints, equal contents.

    Without `computed_at`, a clock: a build killed after it committed a mart, then
    run again, writes the same rows at a later time — the same content."""
    query = sql.SQL(
        "select count(*), coalesce(md5(string_agg(md5(r), '' order by md5(r))), '')"
        " from (select (to_jsonb(t) - 'computed_at')::text as r from marts.{} as t) as rows"
    ).format(sql.Identifier(table))
    return conn.execute(query).fetchone()  # type: ignore[return-value]


def mart_states(url: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {table: fingerprint(conn, table) for table in MART_TABLES}


NOT_BUILT = (-1, "not built yet")


def _existing_marts(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "select table_name from information_schema.tables where table_schema = 'marts'"
    ).fetchall()
    return {row[0] for row in rows}


class MartReader(threading.Thread):
    """A BI user: polls every mart while builds run, are killed and re-run.

    Records each mart's fingerprint as seen by each query (one snapshot per
    statement, as a dashboard sees them), every (deal, model) whose credits do
    not sum to 1, and any error a reader would have got.
    """

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.seen: dict[str, set[tuple[int, str]]] = defaultdict(set)
        self.broken_credit_reads = 0
        self.errors: list[str] = []
        self.polls = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                with psycopg.connect(
                    self.url, autocommit=True, application_name=READER_APPLICATION
                ) as conn:
                    while not self._halt.is_set():
                        built = _existing_marts(conn)
                        for table in MART_TABLES:
                            # Before the first build commits, a mart does not exist yet:
                            # that is the state a dashboard sees then, not an error.
                            state = fingerprint(conn, table) if table in built else NOT_BUILT
                            self.seen[table].add(state)
                        if "fct_partner_attribution" in built:
                            (broken,) = conn.execute(BROKEN_CREDITS).fetchone()  # type: ignore[misc]
                            self.broken_credit_reads += broken > 0
                        self.polls += 1
                        time.sleep(self.interval)
            except psycopg.Error as exc:
                self.errors.append(f"{exc.__class__.__name__}: {exc}".strip())
                time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def assert_only_complete_states(
        self, before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]
    ) -> None:
        """Every read saw each mart either as it was before or as it is after: nothing between."""
        assert self.polls > 3, "the reader hardly ran; the test proves nothing"
        assert not self.errors, self.errors[:5]
        assert self.broken_credit_reads == 0
        for table in MART_TABLES:
            assert self.seen[table] <= {before[table], after[table]}, (
                f"marts.{table}: a reader saw {len(self.seen[table])} states,"
                f" not only the previous and the new complete state"
            )


@contextlib.contextmanager
def sigint_as_from_a_terminal() -> Iterator[None]:
    """Children started inside get SIGINT at its default, as from a terminal.

    A test session started as a background job of a non-interactive shell (`make
    test &`, nohup, some CI runners) has SIGINT ignored, and its children inherit
    that; `attribution run` then rightly keeps ignoring it, like any `cmd &` job,
    and a test's Ctrl-C would prove nothing. A handler (not an ignore) in this
    process becomes the default in a child at exec."""
    if (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def dbt_process(url: str, args: list[str], target: Path) -> subprocess.Popen[str]:
    """`attribution-dbt <args>` (dbt under the build lock, on DATABASE_URL), output piped
    line by line."""
    env = dict(os.environ, DATABASE_URL=url, DBT_PROFILES_DIR=str(DBT_PROJECT_DIR))
    env.update(DBT_TARGET_PATH=str(target / "target"), DBT_LOG_PATH=str(target / "logs"))
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    with sigint_as_from_a_terminal():
        return subprocess.Popen(
            [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR)],
            env=env,
            cwd=DBT_PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def attribution_process(
    env: dict[str, str], *args: str, log: Path | None = None
) -> subprocess.Popen[str]:
    """`attribution <args>` in its own process group; output piped, or written to `log`
    (Dagster logs a lot: a pipe nobody reads fills up and blocks the run)."""
    output = open(log, "w") if log is not None else subprocess.PIPE  # noqa: SIM115
    with sigint_as_from_a_terminal():
        return subprocess.Popen(
            [sys.executable, "-m", "attribution.cli", *args],
            env=dict(os.environ, **env),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def finish(process: subprocess.Popen[str], log: Path, timeout: float = 1800) -> str:
    """Wait for a process started with `log=` and return its output."""
    process.wait(timeout=timeout)
    return log.read_text()


def wait_for_batches(url: str, count: int, timeout: float = 900) -> None:
    """Wait until ingestion has committed `count` ledger rows (a file-level kill point)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (loaded,) = conn.execute("select count(*) from raw.ingest_batches").fetchone()  # type: ignore[misc]
            if loaded >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"ingestion did not reach {count} files within {timeout} s")


def wait_for_line(process: subprocess.Popen[str], pattern: str, timeout: float = 300) -> list[str]:
    """Read the process's output until a line matches `pattern`; returns the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before {pattern!r}:\n" + "".join(lines[-40:]))
        lines.append(line)
        if regex.search(line):
            return lines
    raise AssertionError(f"no line matched {pattern!r} in {timeout} s")


def wait_for_query(
    url: str,
    pattern: str,
    timeout: float = 900,
    process: subprocess.Popen[str] | None = None,
) -> None:
    """Wait until another session runs a statement whose text matches `pattern` (ILIKE).

    With `process`, fail at once when it ends first (a statement of a few
    milliseconds can run between two polls: hold `blocking()` to make it wait)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"the process ended (exit {process.returncode}) before any session"
                    f" ran a query like {pattern!r}"
                )
            (found,) = conn.execute(  # type: ignore[misc]
                "select count(*) from pg_stat_activity where pid <> pg_backend_pid()"
                " and datname = current_database() and state = 'active' and query ilike %s",
                [pattern],
            ).fetchone()
            if found:
                return
            time.sleep(0.02)
    raise AssertionError(f"no session ran a query like {pattern!r} within {timeout} s")


@contextlib.contextmanager
def _open_transaction(url: str) -> Iterator[psycopg.Connection]:
    """A connection whose transaction (and locks) last until the block ends, then are
    rolled back. It may die meanwhile (a server stopped by the test): that is fine."""
    conn = psycopg.connect(url)
    try:
        yield conn
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        with contextlib.suppress(psycopg.Error):
            conn.close()


@contextlib.contextmanager
def blocking(url: str, table: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on `table` (schema.name, an existing table): a
    build's statement on it waits, active, until the block ends, so a test can act
    while that model is being built however small the data."""
    schema, name = table.split(".")
    with _open_transaction(url) as conn:
        conn.execute(
            sql.SQL("lock table {}.{} in access exclusive mode").format(
                sql.Identifier(schema), sql.Identifier(name)
            )
        )
        yield


@contextlib.contextmanager
def holding_watermark(url: str, model: str, timeout: float = 600) -> Iterator[None]:
    """Keep `model`'s build from committing, however small the data: the build saves
    its watermark row inside its transaction, and this holds that row locked
    (inserted, uncommitted, when it does not exist yet). The build then waits, active,
    in its post-hook; kill it or stop the server there. Waits for dbt's on-run-start
    to create the watermark table when a first build is under way."""
    deadline = time.monotonic() + timeout
    with _open_transaction(url) as conn:
        while (
            conn.execute("select to_regclass('intermediate.dbt_watermarks')").fetchone()[0] is None
        ):  # type: ignore[index]
            conn.rollback()
            if time.monotonic() > deadline:
                raise AssertionError(f"no watermark table within {timeout} s")
            time.sleep(0.02)
        conn.execute(
            "insert into intermediate.dbt_watermarks (model, batch_id) values (%s, 0)"
            " on conflict (model) do update set batch_id = dbt_watermarks.batch_id",
            [model],
        )
        yield


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the process and every process it started (a power cut of one machine)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def children_named(process: subprocess.Popen[str], name: str) -> list[psutil.Process]:
    try:
        return [
            child
            for child in psutil.Process(process.pid).children(recursive=True)
            if name in " ".join(child.cmdline())
        ]
    except psutil.NoSuchProcess:
        return []


def wait_until_connections_gone(url: str, timeout: float = 120) -> None:
    """Wait until no other session is connected to the database (the killed build's
    server processes notice the dead client and abort its transaction)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (others,) = conn.execute(  # type: ignore[misc]
                "select count(*) from pg_stat_activity where pid <> pg_backend_pid()"
                " and datname = current_database() and backend_type = 'client backend'"
                " and application_name <> %s",
                [READER_APPLICATION],
            ).fetchone()
            if not others:
                return
            time.sleep(0.1)
    raise AssertionError("sessions of the killed process never went away")


def day_files(export: Path, first: int, last: int) -> list[Path]:
    """The generated files of days first..last (day 0 also brings orgs and partners)."""
    stamps = {(date(2026, 1, 1) + timedelta(days=d)).isoformat() for d in range(first, last + 1)}
    files = sorted(p for p in export.iterdir() if p.stem.rsplit("_", 1)[-1] in stamps)
    if first == 0:
        files += [export / "organizations.csv", export / "partners.csv"]
    return files


def descendants(process: subprocess.Popen[str]) -> list[psutil.Process]:
    """Every process `process` has started and that is still there (recursively)."""
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_for_child(process: subprocess.Popen[str], name: str, timeout: float = 600) -> None:
    """Wait until `process` has started a process whose command line holds `name`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before {name}")
        if children_named(process, name):
            return
        time.sleep(0.02)
    raise AssertionError(f"no {name} within {timeout} s")


def assert_all_gone(processes: list[psutil.Process], timeout: float = 15) -> None:
    """Each process has ended (a zombie waiting for its parent counts as ended)."""
    deadline = time.monotonic() + timeout
    alive: list[str] = []
    while time.monotonic() < deadline:
        alive = []
        for proc in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"still running {timeout} s after the stop: {alive}")


def dagster_run_status(server_url: str, run_id: str) -> str:
    """The status Dagster's storage (database `dagster`, next to the platform's) holds
    for a run: SUCCESS, FAILURE, CANCELED, STARTED…"""
    with psycopg.connect(with_database(server_url, "dagster")) as conn:
        row = conn.execute("select status from runs where run_id = %s", [run_id]).fetchone()
    assert row is not None, f"Dagster has no run {run_id}"
    return row[0]
