"""Which database errors are worth retrying, and a connect that retries with back-off.

A restarted or briefly unreachable PostgreSQL is *transient*: the same work,
tried again a few seconds later, succeeds — and every step of the platform is
idempotent (ingestion loads a file once, the incremental models keep their
watermark in the same transaction as their rows). A failing data test, a
refused file or a permission error is not: retrying only repeats it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import psycopg

from platform_core.database import DatabaseError, connect

# SQLSTATE classes/codes meaning "the connection or the server went away".
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
# The same conditions as they appear in dbt's or psycopg2's messages.
TRANSIENT_MARKERS = (
    "server closed the connection unexpectedly",
    "connection refused",
    "could not connect to server",
    "terminating connection due to administrator command",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "connection already closed",
    "ssl connection has been closed unexpectedly",
    "no connection to the server",
    "consuming input failed",
    "too many clients already",
    "remaining connection slots are reserved",
)


def is_transient_text(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in TRANSIENT_MARKERS)


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry a few seconds later can cure (server restart, network)."""
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate or ""
        if not state:  # libpq-level: the socket broke or the server is unreachable
            return True
        return state.startswith("08") or state in TRANSIENT_SQLSTATES
    if isinstance(exc, DatabaseError):
        return is_transient_text(str(exc))
    return is_transient_text(str(exc)) if exc.__class__.__name__ == "OperationalError" else False


def connect_with_retry(
    url: str,
    attempts: int = 5,
    first_delay: float = 0.5,
    announce: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    **kwargs: object,
) -> psycopg.Connection:
    """`connect`, retried with exponential back-off (0.5, 1, 2, 4 s) while the server is
    unreachable or starting up; then the last error, as one clear `DatabaseError`."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return connect(url, **kwargs)
        except DatabaseError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            announce(
                f"database not reachable (attempt {attempt}/{attempts}); retrying in {delay:g} s"
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
