"""Shared fixtures: one PostgreSQL server per test session, a fresh database per module.

The server is the embedded one (in a temporary folder, on a free port), or the
server of `DATABASE_URL` when that is set — each test module then gets its own
database on it, dropped afterwards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from platform_core.database import EmbeddedPostgres
from platform_core.migrations import migrate


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
    yield server.url("postgres")
    server.stop()


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


@pytest.fixture(scope="module")
def db_url(server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for this test module."""
    name = "test_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])
    url = create_database(server_url, name)
    migrate(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def fresh_db_url(server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for one test (for tests that compare whole tables)."""
    name = "t_" + re.sub(r"\W", "_", request.node.name)[:50]
    url = create_database(server_url, name)
    migrate(url)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path
