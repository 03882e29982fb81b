"""PostgreSQL advisory locks that wait a bounded time and name whoever holds them.

The platform serializes work with three advisory locks: the dbt build lock (one
build per database), the ingestion lock (one batch commits at a time; the dbt
models take it shared) and the migration lock. Any session may hold one of them
for too long — a stuck process, an orphaned dbt, an administrator's `psql` left
in a transaction — so a waiter never waits forever: past its bound it stops with
one line naming the holder (pid, user, application, client address, how long it
has been connected and in its current state, the start of its query), which is
what an operator needs to find it, and `pg_terminate_backend(pid)` it if need be.

How a lock's holder is found: in `pg_locks`, an advisory lock taken with one
bigint key has `locktype = 'advisory'`, `classid` = the key's high 32 bits,
`objid` = its low 32 bits (both as unsigned numbers) and `objsubid = 1` (two int4
keys give `objsubid = 2`); `database` is the database it was taken in. Joined with
`pg_stat_activity` on the pid. A login without `pg_read_all_stats` sees other
users' sessions without their query text or client address; those parts are
then left out of the description.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from platform_core.database import DatabaseError

Scope = Literal["session", "transaction"]
# PostgreSQL's lock_timeout is an int of milliseconds.
_MAX_TIMEOUT_MS = 2**31 - 1
QUERY_CHARS = 80
MAX_HOLDERS_NAMED = 3


@dataclass(frozen=True)
class AdvisoryLock:
    """One advisory lock: what it is for, its key, and how long a waiter waits."""

    purpose: str  # how messages name it: "the dbt build lock"
    key: str | int  # text (hashed by hashtext(), as the dbt macros do) or a bigint
    wait_variable: str  # environment variable holding the bound, in seconds
    default_wait: float

    def key_sql(self) -> sql.Composable:
        if isinstance(self.key, str):
            return sql.SQL("hashtext({})::bigint").format(sql.Literal(self.key))
        return sql.SQL("{}::bigint").format(sql.Literal(self.key))

    def wait_seconds(self) -> float:
        """The bound from the environment, or the default."""
        raw = os.environ.get(self.wait_variable, "").strip()
        if not raw:
            return self.default_wait
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{self.wait_variable}={raw!r}: expected a number of seconds (0 or more)"
            )
        return value


DBT_BUILD = AdvisoryLock(
    "the dbt build lock", "attribution.dbt_build", "ATTRIBUTION_BUILD_LOCK_WAIT", 3600
)
# Held by one file's load, or shared by a dbt model's transaction: seconds to a
# minute at the largest preset; ten minutes means something is stuck.
INGESTION = AdvisoryLock(
    "the ingestion lock", "attribution.ingest", "ATTRIBUTION_INGEST_LOCK_WAIT", 600
)
# Held by `attribution commissions close` while it records one organization's
# lines: two closes never read the same open lines (docs/commissions.md).
COMMISSION_CLOSE = AdvisoryLock(
    "the commission close lock",
    "attribution.commission_close",
    "ATTRIBUTION_CLOSE_LOCK_WAIT",
    600,
)
# Migrations take seconds; a migration that builds an index on a large table, minutes.
MIGRATIONS = AdvisoryLock("the migration lock", 0x5A77_0001, "ATTRIBUTION_MIGRATION_LOCK_WAIT", 600)


class LockWaitTimeout(DatabaseError, psycopg.errors.LockNotAvailable):
    """Waited longer than the bound for an advisory lock; says who holds it.

    Also a `LockNotAvailable` (SQLSTATE 55P03, an OperationalError): code that
    stops on database errors (a directory load stops rather than making every
    later file wait again) stops here too, and it is never taken for a
    transient fault worth retrying.
    """

    def __init__(self, lock: AdvisoryLock, waited: float, holders: str) -> None:
        self.lock = lock
        self.waited = waited
        self.holders = holders
        message = (
            f"gave up waiting for {lock.purpose} after {_duration(waited)}"
            f" ({lock.wait_variable}): it is held by {holders}"
        )
        psycopg.errors.LockNotAvailable.__init__(self, message)

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.lock, self.waited, self.holders))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def acquire(
    conn: psycopg.Connection,
    lock: AdvisoryLock,
    scope: Scope,
    *,
    shared: bool = False,
    wait: float | None = None,
    quiet: float = 2.0,
    announce: Callable[[str], None] = _stderr,
    waiting_message: Callable[[float, str], str] | None = None,
    acquired_message: Callable[[float], str] | None = None,
) -> float:
    """Take `lock` on `conn`, waiting at most `wait` seconds (default: the lock's
    environment variable or default); returns the seconds waited.

    scope "session": held until unlocked or the connection closes (works on an
    autocommit connection). scope "transaction": `conn` must be inside a
    transaction, which then holds the lock until it ends. Either way the other
    settings of the transaction are left as they were. A wait longer than
    `quiet` seconds is announced, naming the holder (short waits behind a
    normal holder stay silent); past the bound, `LockWaitTimeout` names the
    holder at that moment.
    """
    wait = lock.wait_seconds() if wait is None else wait
    in_transaction = conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    if scope == "transaction" and not in_transaction:
        raise RuntimeError(f"{lock.purpose}: a transaction-level lock needs an open transaction")
    function = "pg_advisory" + ("_xact" if scope == "transaction" else "") + "_lock"
    function += "_shared" if shared else ""
    try_function = function.replace("pg_advisory", "pg_try_advisory", 1)
    # In a transaction this is a savepoint: a failed wait rolls back only itself,
    # and a transaction-level lock taken inside it passes to the transaction.
    with conn.transaction():
        (got,) = conn.execute(  # type: ignore[misc]
            sql.SQL("select {}({})").format(sql.Identifier(try_function), lock.key_sql())
        ).fetchone()
    if got:
        return 0.0
    clock = time.monotonic()
    if quiet > 0 and wait > 0 and _wait(conn, lock, function, min(quiet, wait)):
        return time.monotonic() - clock
    left = wait - (time.monotonic() - clock)
    holders = describe_holders(conn, lock)
    if left <= 0:
        raise LockWaitTimeout(lock, time.monotonic() - clock, holders)
    announce(
        waiting_message(wait, holders)
        if waiting_message
        else f"{lock.purpose} is held by {holders}; waiting for it"
        f" (at most {_duration(wait)}, {lock.wait_variable})"
    )
    if not _wait(conn, lock, function, left):
        raise LockWaitTimeout(lock, time.monotonic() - clock, describe_holders(conn, lock))
    waited = time.monotonic() - clock
    announce(
        acquired_message(waited)
        if acquired_message
        else f"got {lock.purpose} after {_duration(waited)}"
    )
    return waited


def _wait(conn: psycopg.Connection, lock: AdvisoryLock, function: str, seconds: float) -> bool:
    """Wait up to `seconds` for the lock (lock_timeout); True when taken."""
    timeout_ms = min(_MAX_TIMEOUT_MS, max(1, round(seconds * 1000)))
    try:
        with conn.transaction():
            (previous,) = conn.execute("select current_setting('lock_timeout')").fetchone()  # type: ignore[misc]
            conn.execute("select set_config('lock_timeout', %s, true)", [f"{timeout_ms}ms"])
            conn.execute(sql.SQL("select {}({})").format(sql.Identifier(function), lock.key_sql()))
            # SET LOCAL outlives a released savepoint: put the caller's value back.
            conn.execute("select set_config('lock_timeout', %s, true)", [previous])
    except psycopg.errors.LockNotAvailable:
        return False
    return True


_HOLDERS = """
with target as (select {key} as key)
select l.pid, l.mode, a.usename, a.application_name, host(a.client_addr), a.client_port,
       extract(epoch from clock_timestamp() - a.backend_start),
       a.state, extract(epoch from clock_timestamp() - a.state_change), a.query
from target
cross join pg_locks as l
left join pg_stat_activity as a on a.pid = l.pid
where l.locktype = 'advisory' and l.granted and l.objsubid = 1
  and l.database = (select oid from pg_database where datname = current_database())
  and l.classid::bigint = (target.key >> 32) & 4294967295
  and l.objid::bigint = target.key & 4294967295
  and l.pid is distinct from pg_backend_pid()
order by a.backend_start nulls last, l.pid
"""


def holders(conn: psycopg.Connection, lock: AdvisoryLock) -> list[dict[str, object]]:
    """The sessions holding `lock` in this database now (other than `conn`'s own)."""
    names = ("pid", "mode", "user", "application", "client_addr", "client_port",
             "connected_s", "state", "state_s", "query")  # fmt: skip
    rows = conn.execute(sql.SQL(_HOLDERS).format(key=lock.key_sql())).fetchall()
    return [dict(zip(names, row, strict=True)) for row in rows]


def describe_holders(conn: psycopg.Connection, lock: AdvisoryLock) -> str:
    """Who holds `lock`, in one line: "pid 123 (user …, application '…', …)"."""
    found = holders(conn, lock)
    if not found:
        return "no session any more (it let go just now)"
    text = "; ".join(describe_session(h) for h in found[:MAX_HOLDERS_NAMED])
    if len(found) > MAX_HOLDERS_NAMED:
        text += f"; and {len(found) - MAX_HOLDERS_NAMED} more sessions"
    return text


def describe_session(holder: dict[str, object]) -> str:
    if holder["pid"] is None:
        return "a prepared transaction (see pg_prepared_xacts)"
    parts = []
    if holder["user"] is not None:
        parts.append(f"user {holder['user']}")
    parts.append(f"application '{holder['application'] or ''}'")
    if holder["client_addr"] is not None:
        parts.append(f"client {holder['client_addr']}:{holder['client_port']}")
    elif holder["connected_s"] is not None:
        parts.append("client on a local socket")
    if holder["connected_s"] is not None:
        parts.append(f"connected {_duration(float(holder['connected_s']))} ago")  # type: ignore[arg-type]
    if holder["state"] is not None:
        since = holder["state_s"]
        parts.append(
            f"{holder['state']}" + (f" for {_duration(float(since))}" if since is not None else "")  # type: ignore[arg-type]
        )
    if holder["query"]:
        label = "query" if holder["state"] == "active" else "last query"
        parts.append(f'{label}: "{_query_start(str(holder["query"]))}"')
    shared = " (shared)" if str(holder["mode"]).startswith("Share") else ""
    return f"pid {holder['pid']}{shared} ({', '.join(parts)})"


def _query_start(query: str) -> str:
    text = " ".join(query.split())
    # A statement setting a password would show it: never repeat such text.
    if re.search(r"password", text, re.IGNORECASE):
        return "(withheld: the statement mentions a password)"
    return text if len(text) <= QUERY_CHARS else text[: QUERY_CHARS - 1] + "…"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
