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
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from urllib.parse import quote

from platform_core import locks

BUILD_LOCK = locks.DBT_BUILD.key
WRITING_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "run-operation"})
# How long a build waits for another one before giving up (seconds).
DEFAULT_WAIT_SECONDS = locks.DBT_BUILD.default_wait


def url_from_dbt_env(env: dict[str, str] | os._Environ[str]) -> str:
    """The connection dbt will use (dbt_project/profiles.yml reads these variables)."""
    user = quote(env.get("ATTRIBUTION_PGUSER", "postgres"), safe="")
    password = quote(env.get("DBT_ENV_SECRET_PGPASSWORD", ""), safe="")
    host = env.get("ATTRIBUTION_PGHOST", "127.0.0.1")
    port = env.get("ATTRIBUTION_PGPORT", "5432")
    database = quote(env.get("ATTRIBUTION_PGDATABASE", "postgres"), safe="")
    return f"postgresql://{user}:{password}@{host}:{port}/{database}"


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
    """Console script `attribution-dbt`: `dbt <args>`, writing commands under the build lock."""
    args = list(sys.argv[1:] if argv is None else argv)
    from dbt.cli.main import cli

    def run_dbt() -> int:
        try:
            cli.main(args=args, prog_name="dbt", standalone_mode=True)
        except SystemExit as exit_:
            code = exit_.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        return 0

    if _command(args) not in WRITING_COMMANDS:
        return run_dbt()
    from platform_core.database import DatabaseError

    try:
        wait = locks.DBT_BUILD.wait_seconds()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with build_lock(url_from_dbt_env(os.environ), wait):
            return run_dbt()
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
