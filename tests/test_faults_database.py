"""Database and disk faults: a restarted or unreachable PostgreSQL, a full disk, a
file the process may not read, a read-only folder (docs/reliability.md).

These tests stop and restart PostgreSQL, so they get their own embedded server in
a temporary folder: the session's server is never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from platform_core.database import SYSTEM_USER, EmbeddedPostgres, _bin
from platform_core.migrations import migrate
from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.dbt_harness import assert_marts_equal, dbt, ingest
from tests.fault_helpers import (
    attribution_process,
    blocking,
    finish,
    holding_watermark,
    wait_for_line,
    wait_for_query,
)
from tests.ingest_helpers import good_deal, write_csv

AS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this module's own, which the tests may stop and restart."""
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("faults-pg"), preferred_port=0)
    pg.start()
    yield pg
    pg.stop()


def pg_ctl(server: EmbeddedPostgres, action: str) -> None:
    """`pg_ctl restart|stop` of the module's server (fast mode: sessions are cut)."""
    done = subprocess.run(
        [_bin("pg_ctl"), "-D", str(server.cluster), "-l", str(server.log_file),
         "-m", "fast", "-w", action],
        user=SYSTEM_USER if AS_ROOT else None,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd="/", timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"pg_ctl {action} failed; see {server.log_file}"


def attribution(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attribution.cli", *args],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=900,
    )


def error_lines(stderr: str) -> list[str]:
    """What a person reads: the lines that are not retry notices."""
    return [line for line in stderr.splitlines() if line and "retrying in" not in line]


def test_cli_waits_with_backoff_for_a_server_that_is_starting(
    server: EmbeddedPostgres, landing: Path
) -> None:
    url = create_database(server.url("postgres"), "restart_cli")
    write_csv(landing / "deals_a.csv", [good_deal()])
    server.stop()
    try:
        load = attribution_process({"DATABASE_URL": url}, "ingest", str(landing))
        # The server comes back while the command backs off (0.5, 1, 2, 4 s).
        wait_for_line(load, r"database not reachable \(attempt 1/5\); retrying in 0.5 s")
    finally:
        server.start()
    output, _ = load.communicate(timeout=300)
    assert load.returncode == 0, output
    assert "deals_a.csv  batch" in output and "1 loaded" in output


def test_unreachable_database_is_one_clear_line(server: EmbeddedPostgres, landing: Path) -> None:
    url = create_database(server.url("postgres"), "down_cli")
    write_csv(landing / "deals_a.csv", [good_deal()])
    server.stop()
    try:
        started = time.monotonic()
        done = attribution({"DATABASE_URL": url}, "ingest", str(landing))
        waited = time.monotonic() - started
    finally:
        server.start()
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert line.startswith("error: cannot connect to postgresql://postgres:***@127.0.0.1:")
    assert "Connection refused" in line and server.url().split(":")[2].split("@")[0] not in line
    assert done.stderr.count("retrying in") == 4 and waited >= 7  # 0.5 + 1 + 2 + 4 s


def _big_deals(path: Path, rows: int) -> None:
    with open(path, "w") as handle:
        handle.write("deal_id,org_id,amount,currency,status,created_at,closed_at,updated_at\n")
        for i in range(rows):
            handle.write(f"d{i},o{i % 7},{i}.50,EUR,open,2026-01-02T03:04:05Z,,2026-01-02\n")


def test_restart_during_ingest_fails_with_one_line_and_the_next_run_loads(
    server: EmbeddedPostgres, landing: Path
) -> None:
    url = create_database(server.url("postgres"), "restart_ingest")
    migrate(url)
    _big_deals(landing / "deals_big.csv", 300_000)
    load = attribution_process({"DATABASE_URL": url}, "ingest", str(landing))
    wait_for_query(url, "copy %")
    pg_ctl(server, "restart")
    output, _ = load.communicate(timeout=300)
    assert load.returncode == 2, output
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "database" in line and ("terminat" in line or "closed" in line), line

    again = attribution({"DATABASE_URL": url}, "ingest", str(landing))
    assert again.returncode == 0, again.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from raw.deals").fetchone() == (300_000,)
        assert conn.execute("select count(*) from raw.ingest_batches").fetchone() == (1,)


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str, owner: str | None = None, readonly: bool = False):
    """A small filesystem of its own at `path` (root only): ENOSPC and EROFS for real."""
    path.mkdir(parents=True, exist_ok=True)
    options = [f"size={size}", "mode=0755"]
    if owner:
        import pwd

        entry = pwd.getpwnam(owner)
        options += [f"uid={entry.pw_uid}", f"gid={entry.pw_gid}", "mode=0700"]
    if readonly:
        options.append("ro")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(not AS_ROOT, reason="mounting a small tmpfs needs root")
def test_database_out_of_disk_space_is_one_clear_line(
    server: EmbeddedPostgres, landing: Path, tmp_path: Path
) -> None:
    """Ingestion stages each file in a temporary table: put temporary tables on a
    2 MB tablespace and load a bigger file. PostgreSQL reports ENOSPC; the command
    says so in one line naming the file, and the server carries on."""
    url = create_database(server.url("postgres"), "disk_full")
    migrate(url)
    _big_deals(landing / "deals_big.csv", 100_000)
    # Outside pytest's folders (mode 0700, root's): the server's user must reach it.
    mount_point = Path(tempfile.mkdtemp(prefix="faults-tiny-"))
    with tiny_tmpfs(mount_point, "2m", owner=SYSTEM_USER) as tiny:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create tablespace tiny_space location {}").format(sql.Literal(str(tiny)))
            )
            conn.execute("alter database disk_full set temp_tablespaces = 'tiny_space'")
        try:
            done = attribution({"DATABASE_URL": url}, "ingest", str(landing))
            assert done.returncode == 2, done.stdout + done.stderr
            assert "Traceback" not in done.stderr
            (line,) = error_lines(done.stderr)
            assert line.startswith("error: the database server ran out of disk space:"), line
            assert "No space left on device" in line and "pg_tblspc" in line
            with psycopg.connect(url) as conn:  # nothing half-loaded, the server is fine
                assert conn.execute("select count(*) from raw.deals").fetchone() == (0,)
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("alter database disk_full reset temp_tablespaces")
            drop_database(server.url("postgres"), "disk_full")
            with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
                conn.execute("drop tablespace if exists tiny_space")
    mount_point.rmdir()
    again = create_database(server.url("postgres"), "disk_full_after")
    write_csv(landing / "deals_big.csv", [good_deal()])
    assert attribution({"DATABASE_URL": again}, "ingest", str(landing)).returncode == 0


@pytest.mark.skipif(not AS_ROOT or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unreadable_landing_file_is_named_and_the_rest_loads(
    server: EmbeddedPostgres, landing: Path
) -> None:
    """Root reads every file, so the command runs without the capability to bypass
    file permissions (setpriv), as an unprivileged service account would."""
    url = create_database(server.url("postgres"), "unreadable")
    write_csv(landing / "deals_ok.csv", [good_deal()])
    write_csv(landing / "deals_secret.csv", [good_deal(deal_id="d9")])
    (landing / "deals_secret.csv").chmod(0)
    caps = "-dac_override,-dac_read_search"
    done = subprocess.run(
        ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}",
         sys.executable, "-m", "attribution.cli", "ingest", str(landing)],
        env=dict(os.environ, DATABASE_URL=url), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "ERROR:" in line]
    assert "deals_secret.csv" in line and "Permission denied" in line, line
    assert "deals_ok.csv  batch" in done.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("select deal_id from raw.deals").fetchall() == [("d1",)]


@pytest.mark.skipif(not AS_ROOT, reason="mounting a read-only tmpfs needs root")
def test_read_only_dagster_home_is_one_clear_line(
    server: EmbeddedPostgres, landing: Path, tmp_path: Path
) -> None:
    url = create_database(server.url("postgres"), "read_only_home")
    write_csv(landing / "deals_ok.csv", [good_deal()])
    with tiny_tmpfs(tmp_path / "home", "1m", readonly=True) as home:
        done = attribution(
            {"DATABASE_URL": url, "LANDING_DIR": str(landing), "DAGSTER_HOME": str(home)}, "run"
        )
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = error_lines(done.stderr)
    assert line == f"error: Read-only file system: {home / 'dagster.yaml'}", line


@pytest.mark.slow
def test_restart_during_daily_refresh_is_retried_and_a_dead_server_fails_clearly(
    server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """PostgreSQL restarted while dbt builds: the Dagster step is retried with back-off
    and the run succeeds. Stopped for good: the run fails with one clear line. Started
    again: the next run completes and the marts equal an uninterrupted build."""
    url = create_database(server.url("postgres"), "restart_run")
    landing = tmp_path / "landing"
    generate(landing, orgs=6, days=20, seed=5)
    env = {"DATABASE_URL": url, "LANDING_DIR": str(landing), "DAGSTER_HOME": str(tmp_path / "dh")}

    run = attribution_process(env, "run", log=tmp_path / "run1.log")
    with holding_watermark(url, "fct_deals"):  # the build waits inside fct_deals' transaction
        wait_for_query(url, "%insert into intermediate.dbt_watermarks%'fct_deals'%", process=run)
        pg_ctl(server, "restart")
    output = finish(run, tmp_path / "run1.log")
    assert run.returncode == 0, output[-5000:]
    assert "STEP_UP_FOR_RETRY" in output or "retry" in output.lower()

    generate(landing, orgs=6, days=25, seed=5)  # five more days
    # Five small days build in milliseconds: the lock keeps int_deals__current's
    # build waiting until the server goes down under it.
    with blocking(url, "intermediate.int_deals__current"):
        run = attribution_process(env, "run", log=tmp_path / "run2.log")
        wait_for_query(url, '%"intermediate"."int_deals__current%', process=run)
        pg_ctl(server, "stop")
    try:
        output = finish(run, tmp_path / "run2.log")
    finally:
        server.start()
    assert run.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output.split("RUN_FAILURE")[-1], output[-4000:]

    final = attribution(env, "run")
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    expected = create_database(server.url("postgres"), "restart_run_expected")
    ingest(expected, landing)
    dbt(expected, tmp_path / "dbt", "run")
    # Loaded over two runs, the files got other batch ids than in one load of them all.
    assert_marts_equal(url, expected, ignore_load_ids=True)
