"""Shared fixtures: one PostgreSQL server per test session, a fresh database per module.

The server is the embedded one (in a temporary folder, on a free port), or the
server of `DATABASE_URL` when that is set — each test module then gets its own
database on it, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from platform_core.database import SUPERUSER, EmbeddedPostgres
from platform_core.migrations import migrate

# Sessions' temporary folders are kept this long (and the newest few always), for
# a look at what a failed test left.
SESSION_FOLDERS_KEPT = 3
SESSION_FOLDER_MAX_AGE_SECONDS = 24 * 3600


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Every session gets a temporary folder of its own (`--basetemp`), under
    `$TMPDIR/attribution-tests/` (short: a unix socket's path must stay under 108
    bytes), instead of pytest's shared
    `/tmp/pytest-of-<user>/`: pytest makes that one private (0700) again at each
    session's start, and as root the embedded servers of a session still running run
    as another user and lose their data folder. The workers of `-n 2` get folders
    inside the session's (pytest-xdist does that)."""
    if config.option.basetemp or hasattr(config, "workerinput"):
        return
    parent = Path(tempfile.gettempdir()) / "attribution-tests"
    parent.mkdir(exist_ok=True)
    _prune_session_folders(parent)
    config.option.basetemp = tempfile.mkdtemp(prefix="s", dir=parent)


def _prune_session_folders(parent: Path) -> None:
    """Drop the folders of old sessions: all but the newest few, once a day old."""
    folders = sorted(parent.glob("s*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in folders[SESSION_FOLDERS_KEPT:]:
        if time.time() - folder.stat().st_mtime > SESSION_FOLDER_MAX_AGE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the maintenance database of the session's server."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield with_database(external, "postgres")
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"), preferred_port=0)
    server.start()
    cheap_logins(server)
    yield server.url("postgres")
    server.stop()


def cheap_logins(server: EmbeddedPostgres) -> None:
    """Store the superuser's password with one SCRAM iteration instead of 4,096.

    Every connection proves its password with SCRAM-SHA-256, whose PBKDF2 rounds cost
    both sides about 10 ms of CPU on the 2-core box — and the suite opens tens of
    thousands of connections (Dagster's storage opens one per event it writes). The
    protocol and its checks stay the same (a wrong password is still refused); only
    this session server's stored hash is cheaper. Logins the tests create keep the
    server's default."""
    url = server.url("postgres")
    password = server.password_file.read_text().strip()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set scram_iterations = 1")  # this session's password hashing only
        conn.execute(
            sql.SQL("alter role {} password {}").format(
                sql.Identifier(SUPERUSER), sql.Literal(password)
            )
        )


def create_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        # `attribution bi grant-org` closes the server's other databases to PUBLIC
        # (docs/bi.md); the test server is shared, and later modules' own logins
        # expect to connect. (TEMPORARY stays as each platform database's migration left it.)
        for (database,) in conn.execute("select datname from pg_database where datallowconn"):
            conn.execute(
                sql.SQL("grant connect on database {} to public").format(sql.Identifier(database))
            )


# On the session's own server every module's database has one name, and every
# test's fresh database another: dbt's saved parse of the project belongs to a
# connection (its database name included; orchestration/dbt_invocation.py), so one
# parse then serves every module instead of a full parse (10–20 s) per database.
# Each is still dropped and created anew. On a DATABASE_URL server, which other
# sessions may share, the names stay the module's and the test's.
SHARED_NAMES = not os.environ.get("DATABASE_URL")


@pytest.fixture(scope="module")
def db_url(server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for this test module."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    name = "test_module" if SHARED_NAMES else "test_" + re.sub(r"\W", "_", module)
    url = create_database(server_url, name)
    migrate(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def fresh_db_url(server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for one test (for tests that compare whole tables)."""
    name = "test_fresh" if SHARED_NAMES else "t_" + re.sub(r"\W", "_", request.node.name)[:50]
    url = create_database(server_url, name)
    migrate(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


@dataclass(frozen=True)
class DemoDeployment:
    """What `attribution demo` left: its platform database and Dagster instance."""

    env: dict[str, str]  # DATABASE_URL, DAGSTER_HOME, DAGSTER_PG_URL
    landing: Path  # the export the demo generated and loaded
    output: str  # what the command printed
    run_id: str  # its daily_refresh run


DEMO_RUN_LINE = re.compile(r"^Dagster run ([0-9a-f-]{36}) of daily_refresh\b.*: succeeded$", re.M)


@pytest.fixture(scope="session")
def demo_deployment(
    server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoDeployment]:
    """`attribution demo` once per session, on a smaller dataset (4 organizations,
    20 days; same code): a database and a Dagster instance filled the way a user's
    first `make demo` fills them, for the tests that read what it left."""
    import attribution.demo
    from attribution.cli import main

    work = tmp_path_factory.mktemp("demo")
    env = {
        "DATABASE_URL": create_database(server_url, "test_demo"),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "DAGSTER_PG_URL": create_database(server_url, "test_demo_dagster").replace(
            "postgresql://", "postgresql+psycopg2://", 1
        ),
    }
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(attribution.demo, "DEMO_ORGS", 4)
        patch.setattr(attribution.demo, "DEMO_DAYS", 20)
        for key, value in env.items():
            patch.setenv(key, value)  # dbt, a child of this process, inherits them
        patch.delenv("LANDING_DIR", raising=False)  # the demo has its own
        code = main(["demo", "--workdir", str(work / "demo")])
    output = printed.getvalue()
    found = DEMO_RUN_LINE.search(output)
    assert code == 0 and found, output[-4000:]
    yield DemoDeployment(env, work / "demo" / "landing", output, found.group(1))
    drop_database(server_url, "test_demo")
    drop_database(server_url, "test_demo_dagster")
