"""`attribution dev` (`make dev PORT=…`) stops at once, in one line, on a taken port
or when a Dagster daemon already serves the same storage (a second `make dev`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from dagster._daemon.types import DaemonHeartbeat

from orchestration.dev_server import port_problem, running_daemon
from orchestration.instance import instance_ref, open_instance
from platform_core.settings import Settings, project_root
from tests.conftest import create_database, drop_database
from tests.test_cli import attribution

STORAGE = "test_dev_server_storage"


@pytest.fixture(scope="module")
def env(db_url: str, server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    storage = create_database(server_url, STORAGE)
    yield {
        "DATABASE_URL": db_url,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": storage.replace("postgresql://", "postgresql+psycopg2://", 1),
        "LANDING_DIR": str(tmp_path_factory.mktemp("landing")),
    }
    drop_database(server_url, STORAGE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_a_taken_port_stops_dev_at_once(env: dict) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = attribution("dev", "--port", str(port), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    line = one_error_line(done.stderr)
    assert f"port {port}" in line and f"make dev PORT={port + 1}" in line
    assert "Dagster UI on" not in done.stdout  # nothing was started


def test_a_second_dev_on_the_same_storage_stops_at_once(env: dict) -> None:
    settings = Settings.from_environment(env)
    with open_instance(instance_ref(settings, env["DATABASE_URL"])) as instance:
        instance.add_daemon_heartbeat(
            DaemonHeartbeat(timestamp=time.time(), daemon_type="SENSOR", daemon_id="other-dev")
        )
    done = attribution("dev", "--port", str(free_port()), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert "a Dagster daemon already serves this storage" in line and "SENSOR" in line
    # A heartbeat older than a minute is a daemon that has stopped: no refusal.
    later = time.time() + 120
    assert running_daemon(settings, env["DATABASE_URL"], now=later) is None


def test_port_check_accepts_a_free_port() -> None:
    assert port_problem("127.0.0.1", free_port()) is None


def test_make_dev_passes_the_port() -> None:
    """`make dev PORT=3111` runs `attribution dev --port 3111` (a dry run: nothing starts)."""
    dry = subprocess.run(
        ["make", "-n", "dev", "PORT=3111"],
        cwd=project_root(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "attribution dev --port 3111" in dry.stdout, dry.stdout
