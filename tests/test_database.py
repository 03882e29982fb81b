"""The embedded server and migrations (docs/contract.md §6.2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from platform_core.database import DatabaseError, EmbeddedPostgres, database_url, redact_url
from platform_core.migrations import available_migrations, migrate
from tests.conftest import create_database, drop_database, with_database


@pytest.fixture
def own_server(tmp_path: Path):
    server = EmbeddedPostgres(tmp_path / "pg", preferred_port=0)
    yield server
    server.stop()


def test_start_twice_reuses_the_running_server(own_server: EmbeddedPostgres) -> None:
    url = own_server.start()
    postmaster = own_server._postmaster_pid()
    assert own_server.start() == url
    assert own_server._postmaster_pid() == postmaster
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "select current_database(), current_setting('TimeZone')"
        ).fetchone() == (
            "attribution",
            "UTC",
        )
    assert own_server.stop() is True
    assert own_server.stop() is False
    assert not own_server.is_running()


def test_stale_pid_file_after_a_crash_is_recovered(own_server: EmbeddedPostgres) -> None:
    own_server.start()
    pid = own_server._postmaster_pid()
    assert pid is not None
    postmaster = psutil.Process(pid)
    postmaster.kill()  # a crash: postmaster.pid stays behind
    postmaster.wait(timeout=10)
    assert not own_server.is_running()
    pid_file = own_server.cluster / "postmaster.pid"
    # Point the stale file at a live process that is not PostgreSQL (this test's own).
    lines = pid_file.read_text().splitlines()
    lines[0] = str(os.getpid())
    pid_file.write_text("\n".join(lines) + "\n")
    url = own_server.start()
    assert own_server.is_running()
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_password_is_required_and_redacted(own_server: EmbeddedPostgres) -> None:
    url = own_server.start()
    assert "***" in redact_url(
        url
    ) and own_server.password_file.read_text().strip() not in redact_url(url)
    wrong = url.replace(url.split(":")[2].split("@")[0], "wrong")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wrong, connect_timeout=5)


def test_database_url_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db.invalid:5432/x")
    assert database_url() == "postgresql://u:secret@db.invalid:5432/x"
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("EMBEDDED_PG_DIR", "/nonexistent/never-started")
    with pytest.raises(DatabaseError, match="not running"):
        database_url(start=False)


def test_migrations_apply_once_in_order(server_url: str) -> None:
    url = create_database(server_url, "test_migrations")
    try:
        applied = migrate(url)
        assert applied == [m.version for m in available_migrations()]
        assert migrate(url) == []
        with psycopg.connect(url) as conn:
            versions = [
                v for (v,) in conn.execute("select version from schema_migrations order by 1")
            ]
            tables = {t for (t,) in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            )}  # fmt: skip
        assert versions == applied
        assert {"deals", "touchpoints", "quarantine", "ingest_batches"} <= tables
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("update schema_migrations set checksum = 'edited'")
        with pytest.raises(DatabaseError, match="changed after it was applied"):
            migrate(url)
    finally:
        drop_database(server_url, "test_migrations")


def test_cli_db_url_with_database_url_set(server_url: str) -> None:
    env = dict(os.environ, DATABASE_URL=server_url)
    out = subprocess.run(
        [sys.executable, "-m", "attribution.cli", "db", "url"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    assert out.stdout.strip() == server_url
    stop = subprocess.run(
        [sys.executable, "-m", "attribution.cli", "db", "stop"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert stop.returncode == 1 and "DATABASE_URL is set" in stop.stderr
    assert "secret" not in stop.stderr


def test_migrate_refuses_a_database_that_is_not_utf8(server_url: str) -> None:
    """The validation SQL assumes UTF-8 text; another encoding is refused up front,
    with the statement that fixes it, before anything is created."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("drop database if exists latin_db with (force)")
        conn.execute("create database latin_db encoding 'LATIN1' locale 'C' template template0")
    url = with_database(server_url, "latin_db")
    try:
        with pytest.raises(DatabaseError, match="latin_db uses the encoding LATIN1.*needs UTF8"):
            migrate(url)
        with psycopg.connect(url) as conn:
            assert conn.execute("select to_regclass('public.schema_migrations')").fetchone() == (
                None,
            )
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("drop database if exists latin_db with (force)")
