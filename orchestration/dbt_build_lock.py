"""One dbt build at a time per database: `attribution-dbt`, dbt behind a session lock.

dbt commits each model in its own transaction, so two builds running at once
interleave: both read the same watermark, both create `<model>__dbt_tmp`, both
delete+insert the same keys. Every path that builds (`attribution run`, Dagster's
dbt asset, the won-deals sensor's `attribution` job, a person running the wrapper)
starts dbt through this module, which takes a PostgreSQL *session* advisory lock
and then runs dbt in the same process. The lock lives exactly as long as the dbt
process: killed (even with SIGKILL) or finished, its connection closes and the
lock goes with it, so a dead build never blocks the next one, and a parent killed
while its dbt keeps running (an orphan) still holds the next build back until the
orphan is done. Commands that do not write (parse, ls, compile, docs, debug) take
no lock, so loading the Dagster definitions never waits for a build. A build
waits at most ATTRIBUTION_BUILD_LOCK_WAIT seconds for the lock, and both its
"waiting" message and its error name the session holding it (platform_core/locks.py).

The wrapper is also where dbt's connection comes from: it resolves the database
from its environment as every command does (`DATABASE_URL`, else the embedded
server, started if need be) and hands it to the dbt it runs as the variables
`dbt_project/profiles.yml` reads — so the lock is taken on exactly the database
dbt connects to. A plain `dbt` has none of them and stops at once, naming the
first one missing: run `.venv/bin/attribution-dbt <args>` instead. The key of the
ingestion lock, which the models take shared, is handed over the same way
(`ATTRIBUTION_INGEST_LOCK_KEY`): platform_core/locks.py is the only place it is spelled.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from orchestration.dbt_invocation import PartialParse
from platform_core import locks
from platform_core.database import DatabaseError, conninfo_params, database_url
from platform_core.settings import DEFAULT_DATABASE, Settings

BUILD_LOCK = locks.DBT_BUILD.key
WRITING_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "run-operation"})
# How long a build waits for another one before giving up (seconds).
DEFAULT_WAIT_SECONDS = locks.DBT_BUILD.default_wait


# Commands that never connect: they resolve the database without starting the
# embedded server (loading the Dagster definitions parses the project).
OFFLINE_COMMANDS = frozenset({None, "parse", "ls", "list", "deps", "clean", "init"})
# What an offline command renders the profile with when no database is there to
# name: never connected to (dbt only records the database name in its manifest).
OFFLINE_URL = f"postgresql://postgres@127.0.0.1:5432/{DEFAULT_DATABASE}"
INGEST_LOCK_KEY_VARIABLE = "ATTRIBUTION_INGEST_LOCK_KEY"
CLOSE_LOCK_KEY_VARIABLE = "ATTRIBUTION_CLOSE_LOCK_KEY"


def dbt_variables(url: str) -> dict[str, str]:
    """What dbt_project/profiles.yml and the models read: the connection of `url` (the
    password in DBT_ENV_SECRET_PGPASSWORD, which dbt masks in its logs) and the keys
    of the ingestion and commission close locks."""
    params = conninfo_params(url)  # libpq's reading, as every other connection
    user = params.get("user", "postgres")
    return {
        "ATTRIBUTION_PGHOST": params.get("host", "127.0.0.1"),
        "ATTRIBUTION_PGPORT": params.get("port", "5432"),
        "ATTRIBUTION_PGUSER": user,
        "DBT_ENV_SECRET_PGPASSWORD": params.get("password", ""),
        "ATTRIBUTION_PGDATABASE": params.get("dbname", user),
        INGEST_LOCK_KEY_VARIABLE: str(locks.INGESTION.key),
        CLOSE_LOCK_KEY_VARIABLE: str(locks.COMMISSION_CLOSE.key),
    }


def connection_url(settings: Settings, command: str | None) -> str:
    """The database dbt uses: `DATABASE_URL`, else the embedded server's (started when
    the command connects; an offline command takes it as it is, or OFFLINE_URL)."""
    if command not in OFFLINE_COMMANDS:
        return database_url(settings=settings)
    try:
        return database_url(start=False, settings=settings)
    except (DatabaseError, OSError):
        return OFFLINE_URL


@contextlib.contextmanager
def build_lock(
    url: str,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    announce: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> Iterator[None]:
    """Hold the build lock of the database at `url` for the duration of the block.

    Waits at most `wait_seconds` for another holder; the messages name it (pid,
    application, client, since when, its query), so a stuck one can be found."""
    from platform_core.connections import connect_with_retry

    conn = connect_with_retry(url, autocommit=True)
    try:
        try:
            locks.acquire(
                conn,
                locks.DBT_BUILD,
                "session",
                wait=wait_seconds,
                quiet=0,  # a build waits long: say so at once
                announce=announce,
                waiting_message=lambda wait, holders: (
                    "another dbt build is running on this database; waiting for it to finish"
                    f" (at most {wait:.0f} s): {locks.DBT_BUILD.purpose} is held by {holders}"
                ),
                acquired_message=lambda waited: "the other dbt build finished; building now",
            )
        except locks.LockWaitTimeout as timeout:
            raise SystemExit(
                f"error: another session held the build lock for more than {wait_seconds:.0f} s;"
                f" not building: {locks.DBT_BUILD.purpose} is held by {timeout.holders}"
            ) from None
        yield
    finally:
        conn.close()


def _command(args: list[str]) -> str | None:
    """dbt's sub-command: the first argument that is not an option."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Console script `attribution-dbt`: `dbt <args>` on the platform's database,
    writing commands under the build lock."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = _command(args)
    try:
        url = connection_url(Settings.from_environment(), command)
        wait = locks.DBT_BUILD.wait_seconds() if command in WRITING_COMMANDS else 0.0
    except (DatabaseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # This process exists to run dbt, which reads its configuration from the
    # environment (dbt_project/profiles.yml): set here, for the dbt below only.
    variables = dbt_variables(url)
    os.environ.update(variables)
    from dbt.cli.main import cli

    # This connection's latest parse, so dbt re-reads only what changed (dbt_invocation.py).
    parse = PartialParse.for_invocation(args, variables, os.environ)

    def run_dbt() -> int:
        if parse is not None:
            parse.restore()  # under the lock: after the build it waited for wrote its own
        try:
            cli.main(args=args, prog_name="dbt", standalone_mode=True)
        except SystemExit as exit_:
            code = exit_.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        finally:
            if parse is not None:
                parse.keep()
        return 0

    if command not in WRITING_COMMANDS:
        return run_dbt()
    try:
        with build_lock(url, wait):
            return run_dbt()
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
