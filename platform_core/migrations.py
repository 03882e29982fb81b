"""Schema migrations: plain SQL files in `migrations/`, applied in name order, once each.

Each file runs in its own transaction and is recorded in `public.schema_migrations`
with its checksum, so an edited migration that already ran is reported instead of
silently diverging. A session-level advisory lock (the migration lock) lets
concurrent processes (the Dagster daemon, the CLI, tests) call `migrate()` at the
same time safely; a caller waits for it at most ATTRIBUTION_MIGRATION_LOCK_WAIT
seconds (default 600), then stops with an error naming the session that holds it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg

from platform_core import locks
from platform_core.database import DatabaseError, connect

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = locks.MIGRATIONS.key  # arbitrary, constant: "attribution migrations"


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available_migrations() -> list[Migration]:
    return [Migration(p.stem, p) for p in sorted(MIGRATIONS_DIR.glob("*.sql"))]


def _require_utf8(conn: psycopg.Connection) -> None:
    """Landing files are UTF-8 and the validation's SQL (lengths, `ascii()` of a
    first character) assumes the database stores text as UTF-8; in another
    encoding non-ASCII values would be converted, refused or measured in bytes."""
    (encoding,) = conn.execute("show server_encoding").fetchone()
    if encoding.upper() not in ("UTF8", "UTF-8"):
        (name,) = conn.execute("select current_database()").fetchone()
        raise DatabaseError(
            f"database {name} uses the encoding {encoding}; the platform needs UTF8 "
            f"(create it with: create database {name} encoding 'UTF8' template template0)"
        )


def migrate(url: str, lock_wait: float | None = None) -> list[str]:
    """Apply pending migrations; return the versions applied by this call.

    `lock_wait`: at most this many seconds waiting for another migrating session
    (default: ATTRIBUTION_MIGRATION_LOCK_WAIT or 600); past it, `LockWaitTimeout`."""
    applied_now: list[str] = []
    # connect() has already refused a server older than PostgreSQL 16.
    with connect(url, autocommit=True) as conn:
        _require_utf8(conn)
        locks.acquire(conn, locks.MIGRATIONS, "session", wait=lock_wait)
        try:
            conn.execute(
                """
                create table if not exists public.schema_migrations (
                    version text primary key,
                    checksum text not null,
                    applied_at timestamptz not null default now()
                )
                """
            )
            done = dict(conn.execute("select version, checksum from public.schema_migrations"))
            for migration in available_migrations():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise DatabaseError(
                            f"migration {migration.path.name} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "insert into public.schema_migrations (version, checksum) values (%s, %s)",
                        [migration.version, migration.checksum],
                    )
                applied_now.append(migration.version)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", [_LOCK_KEY])
    return applied_now
