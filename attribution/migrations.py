"""Schema migrations: plain SQL files in `migrations/`, applied in name order, once each.

Each file runs in its own transaction and is recorded in `public.schema_migrations`
with its checksum, so an edited migration that already ran is reported instead of
silently diverging. A session-level advisory lock lets concurrent processes (the
Dagster daemon, the CLI, tests) call `migrate()` at the same time safely.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg

from attribution.database import DatabaseError, connect

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x5A77_0001  # arbitrary, constant: "attribution migrations"


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


def migrate(url: str) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    applied_now: list[str] = []
    with connect(url, autocommit=True) as conn:
        _require_utf8(conn)
        conn.execute("select pg_advisory_lock(%s)", [_LOCK_KEY])
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
