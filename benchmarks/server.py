"""The PostgreSQL server the benchmark runs on, and one fresh database per dataset.

With `DATABASE_URL` unset the benchmark starts an embedded server of its own
(in `<work>/pg`, same settings as the platform's), so it never touches the
developer's data, and changing `bi_reader`'s password (a server-wide role) is
harmless. With `DATABASE_URL` set it creates `bench_*` databases next to it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from platform_core.bi_access import PASSWORD_ENV, set_reader_password
from platform_core.database import EmbeddedPostgres, _bin
from platform_core.migrations import migrate


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass
class BenchServer:
    maintenance_url: str  # the `postgres` database
    psql: str  # path of the psql client matching the server
    embedded: bool
    reader_password: str = ""

    def fresh_database(self, name: str, migrated: bool = True) -> str:
        """Drop and create database `name`; return its URL (migrated unless told not)."""
        with psycopg.connect(self.maintenance_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        url = with_database(self.maintenance_url, name)
        if migrated:
            migrate(url)
        return url

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.maintenance_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )

    def reader_url(self, url: str) -> str:
        """`url` as the read-only role bi_reader (password set by `enable_reader`)."""
        parts = urlsplit(url)
        netloc = f"bi_reader:{quote(self.reader_password, safe='')}@{parts.hostname}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def enable_reader(self, url: str) -> None:
        """Let bi_reader log in: BI_READER_PASSWORD when set; on the benchmark's own
        embedded server a random one is fine (nobody else uses that server)."""
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            if not self.embedded:
                raise ValueError(
                    f"set {PASSWORD_ENV}: the BI stages connect as bi_reader, and on a shared"
                    " server the benchmark will not choose that role's password for you"
                )
            password = secrets.token_urlsafe(18)
        set_reader_password(url, password)
        self.reader_password = password


@contextlib.contextmanager
def bench_server(work: Path) -> Iterator[BenchServer]:
    """DATABASE_URL's server, else an embedded server in `work/pg` (stopped afterwards)."""
    external = os.environ.get("DATABASE_URL")
    if external:
        psql = shutil.which("psql")
        if psql is None:
            raise ValueError("psql is needed on PATH to benchmark against DATABASE_URL")
        yield BenchServer(with_database(external, "postgres"), psql, embedded=False)
        return
    server = EmbeddedPostgres(work / "pg", preferred_port=0)
    server.start()
    try:
        yield BenchServer(server.url("postgres"), _bin("psql"), embedded=True)
    finally:
        server.stop()
