"""The `attribution` command line (docs/contract.md §6.3)."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from platform_core.database import DatabaseError, connect, database_url, embedded_server, redact_url
from platform_core.settings import Settings

if TYPE_CHECKING:
    from orchestration.run import RefreshOutcome


def _cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from synthetic_crm import generate

    clock = time.perf_counter()
    summary = generate(
        Path(args.out),
        preset=args.preset,
        months=args.months,
        days=args.days,
        seed=args.seed,
        bad_row_rate=args.bad_row_rate,
        start=args.start,
        orgs=args.orgs,
        file_format=args.format,
    )
    for line in summary.lines():
        print(line)
    print(
        f"generated {len(summary.files)} files in {args.out} in {time.perf_counter() - clock:.1f} s"
    )
    return 0


def _cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingestion import ingest_directory
    from platform_core.connections import connect_with_retry

    directory = Path(args.directory)
    url = database_url(settings=settings)
    connect_with_retry(url).close()  # a server still starting up is waited for, briefly
    print(f"ingesting {directory} into {redact_url(url)}")
    report = ingest_directory(url, directory)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from platform_core.backup import backup, restore

    if not args.path:
        print(f"error: attribution db {args.action} needs a directory", file=sys.stderr)
        return 2
    url = database_url(settings=settings)
    folder = Path(args.path)
    if args.action == "backup":
        manifest = backup(url, folder)
        for entry in manifest["databases"]:
            print(
                f"{entry['purpose']:<9} {entry['name']:<20} {entry['size_bytes']:>14,} bytes"
                f"  (database {entry['database_size_bytes']:,} bytes)"
            )
        roles = manifest["roles"]
        hashes = "with password hashes" if roles["with_passwords"] else "WITHOUT passwords"
        print(f"roles     {len(roles['roles'])} roles {hashes} (file mode 0600)")
        for skipped in manifest["skipped"]:
            print(f"skipped   {skipped}: no such database yet")
        print(f"backup written to {folder} in {manifest['duration_s']} s")
        return 0
    report = restore(url, folder, force=args.force)
    for name in report.databases:
        print(f"restored  {name}")
    print(f"roles created: {', '.join(report.roles_created) or 'none (all existed)'}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"migrations applied after restore: {', '.join(report.migrations_applied) or 'none'}")
    print(f"restore finished in {report.duration_s} s into {redact_url(url)}")
    return 0


def _cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if args.action in ("backup", "restore"):
        return _cmd_backup(args, settings)
    server = embedded_server(settings)
    external = settings.database_url
    if args.action == "url":
        print(external or server.start())
        return 0
    if external:
        print(
            f"DATABASE_URL is set ({redact_url(external)}): the embedded server is not in use",
            file=sys.stderr,
        )
        return 1
    if args.action == "start":
        url = server.start()
        print(f"embedded PostgreSQL running: {url}")
        print(f"  data: {server.cluster}\n  connect: psql '{url}'")
        return 0
    stopped = server.stop()
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def refresh(settings: Settings, url: str, full_refresh: bool = False) -> RefreshOutcome:
    """Build the one way there is: the Dagster job `daily_refresh`, in-process, on the
    instance `attribution dev` shows (`attribution run`, `attribution demo`). Prints
    what failed (steps, then checks with whose rows fail) and the run's id; a stop
    by signal raises `RunStopped`."""
    from orchestration.run import run_daily_refresh
    from platform_core.migrations import migrate

    migrate(url)
    outcome = run_daily_refresh(settings, url, full_refresh=full_refresh)
    if outcome.step_failures:  # one line, however many steps failed
        print(f"error: daily_refresh failed: {'; '.join(outcome.step_failures)}", file=sys.stderr)
    for label in outcome.failed_warnings:
        print(f"check warning: {label}")
    for label in outcome.failed_errors:
        print(f"CHECK FAILED (error): {label}", file=sys.stderr)
    print(
        f"{outcome.materialized} assets materialized, {outcome.checks_evaluated} checks evaluated"
        f" ({len(outcome.failed_warnings)} warnings, {len(outcome.failed_errors)} errors)"
    )
    print(
        f"Dagster run {outcome.run_id} of daily_refresh"
        f"{' (full refresh)' if full_refresh else ''}:"
        f" {'succeeded' if outcome.success else 'FAILED'}"
    )
    return outcome


def marts_lines(url: str, ok: bool) -> list[str]:
    """The marts' summary after a run, or why there is none."""
    import psycopg

    from attribution.summaries import marts_summary

    try:
        return marts_summary(url)
    except psycopg.errors.UndefinedTable:  # the first build never completed
        return ["marts: not built yet"]
    except (psycopg.OperationalError, DatabaseError):
        if ok:
            raise
        return []  # the run already failed and said why: one error line is enough


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.run import RunStopped
    from platform_core.connections import connect_with_retry

    if settings.landing_dir is None:
        print("error: set LANDING_DIR to the folder where CRM exports land", file=sys.stderr)
        return 2
    url = database_url(settings=settings)
    connect_with_retry(url).close()  # a server still starting up is waited for, briefly
    print(f"running daily_refresh on {settings.landing_dir} into {redact_url(url)}")
    # SIGTERM/SIGINT stop the run within seconds, dbt included: one line, exit 128+signal.
    try:
        outcome = refresh(settings, url, full_refresh=args.full_refresh)
    except RunStopped as stopped:
        return stopped.finish()
    for line in marts_lines(url, outcome.ok):
        print(line)
    print("done" if outcome.ok else "FAILED")
    return 0 if outcome.ok else 1


def _cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from orchestration.dev_server import refuse_to_start
    from orchestration.instance import dagster_environment
    from platform_core.migrations import migrate

    url = database_url(settings=settings)
    migrate(url)  # the sensors read raw.ingest_batches from their first tick
    landing = settings.landing_dir or Path("data/demo/landing")
    landing = landing.resolve()
    landing.mkdir(parents=True, exist_ok=True)
    # The environment of the Dagster processes started here: what they read.
    env = {**os.environ, **dagster_environment(settings, url), "LANDING_DIR": str(landing)}
    if args.print_env:  # for `eval "$(attribution dev --print-env)"; dg dev`
        for key in ("DATABASE_URL", "LANDING_DIR", "DAGSTER_HOME", "DAGSTER_PG_URL"):
            print(f"export {key}={shlex.quote(env[key])}")
        return 0
    refuse_to_start(settings, url, "127.0.0.1", args.port)
    print(
        f"Dagster UI on http://127.0.0.1:{args.port} — database {redact_url(url)}, landing {landing}"
    )
    dagster = str(Path(sys.executable).parent / "dagster")
    # Started in the background of a non-interactive shell, this process inherits
    # SIGINT and SIGTERM as ignored, and exec keeps that: `dagster dev` could then be
    # stopped only by SIGKILL, leaving its daemon and code server behind.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execvpe(
        dagster,
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)],
        env,
    )
    return 0  # not reached


def _cmd_bi(args: argparse.Namespace, settings: Settings) -> int:
    from platform_core import bi_access as bi

    url = database_url(settings=settings)
    if args.action == "set-password":
        bi.set_reader_password(url)
        print("bi_reader can log in; connect BI tools as described in docs/bi.md")
        return 0
    if args.action == "enforce-limits":
        actions = bi.enforce_tenant_limits(url)
        for action in actions:
            print(action)
        print(f"{len(actions)} tenant session(s) held to their limits")
        return 0
    if args.action == "grant-org":
        limits = bi.TenantLimits(connection_limit=args.connection_limit)
        report = bi.grant_org(
            url, args.org_id, args.role, reset_password=args.reset_password, limits=limits
        )
        verb = "created" if report.created else "updated"
        print(
            f"{args.role} ({verb}) can log in and reads only its organizations in the marts,"
            f" now including {args.org_id!r}; at most {limits.connection_limit} connections,"
            f" statements end after {limits.statement_timeout_ms // 1000} s"
        )
        if not report.created:
            print("password " + ("reset" if report.password_set else "unchanged"))
        if not report.org_known:
            print(f"note: no organization {args.org_id!r} has been loaded yet")
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    removed = bi.revoke_org(url, args.org_id, args.role)
    print(
        f"{args.role}: {'revoked' if removed else 'had no grant for'} organization {args.org_id!r}"
    )
    return 0


def _cmd_commissions(args: argparse.Namespace, settings: Settings) -> int:
    """`close`: the Dagster job close_commission_period, in-process (as the schedule and
    the UI run it); a close that must not happen is refused first, in one line.
    `statements`: CSV files from the marts (docs/commissions.md)."""
    from commissions import CloseRefused, Period, check_close, write_statements

    url = database_url(settings=settings)
    period = Period.parse(args.period)
    if args.action == "statements":
        print(write_statements(url, period, Path(args.out)).line())
        return 0
    from platform_core.migrations import migrate

    migrate(url)
    org_ids = None if args.all else args.org
    try:
        check_close(url, period, org_ids)
    except CloseRefused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    # Only now: loading Dagster and the definitions takes seconds a refusal need not wait.
    from orchestration.defs.commissions.closing import CLOSE_JOB, close_run_config
    from orchestration.run import RunStopped, run_job

    with connect(url) as conn:
        (before,) = conn.execute(
            "select coalesce(max(closing_id), 0) from commissions.closings"
        ).fetchone()
    try:
        outcome = run_job(
            settings, url, CLOSE_JOB, close_run_config(period, org_ids), needs_landing=False
        )
    except RunStopped as stopped:
        return stopped.finish()
    for failure in outcome.step_failures:
        print(f"error: {CLOSE_JOB} failed: {failure}", file=sys.stderr)
    with connect(url) as conn:
        for org, first, last, count, total in conn.execute(
            "select org_id, first_period, period, line_count, total_usd from commissions.closings"
            " where closing_id > %s order by org_id",
            [before],
        ):
            months = f"{first:%Y-%m}" + ("" if first == last else f" to {last:%Y-%m}")
            print(f"{org}: closed {months}: {count:,} lines, USD {total:,.2f}")
    print(f"Dagster run {outcome.run_id} of {CLOSE_JOB}: {'succeeded' if outcome.ok else 'FAILED'}")
    return 0 if outcome.ok else 1


def _cmd_bench(argv: list[str]) -> int:
    """`python -m benchmarks` under the product's command. The harness is a dev-only tree
    (not in the wheel) that the product never imports: from a source checkout it runs
    as its own process, next to the packages, with the same arguments."""
    import subprocess

    from platform_core.settings import project_root

    root = project_root()
    if not (root / "benchmarks" / "__main__.py").is_file():
        print(
            "error: `attribution bench` needs the benchmarks/ folder of a source checkout;"
            " this installation has none",
            file=sys.stderr,
        )
        return 2
    command = [sys.executable, "-m", "benchmarks", *argv]
    env = dict(os.environ, ATTRIBUTION_BENCH_PROG="attribution bench")
    return subprocess.run(command, cwd=root, env=env, check=False).returncode


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from attribution.demo import run_demo

    return run_demo(settings, Path(args.workdir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attribution", description="Partner revenue attribution platform."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate", help="write a synthetic CRM export (docs/contract.md §2 format)"
    )
    gen.add_argument(
        "--preset", default="mvp", choices=["mvp", "early", "growth", "scale", "hyper"]
    )
    gen.add_argument("--months", type=int, default=1)
    gen.add_argument("--days", type=int, default=None, help="overrides --months")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True)
    gen.add_argument("--bad-row-rate", type=float, default=0.0)
    gen.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 1))
    gen.add_argument("--orgs", type=int, default=None, help="overrides the preset's org count")
    gen.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    gen.set_defaults(func=_cmd_generate)

    ing = sub.add_parser("ingest", help="load a landing directory once (docs/contract.md §3)")
    ing.add_argument("directory")
    ing.set_defaults(func=_cmd_ingest)

    db = sub.add_parser(
        "db", help="the database in use: url, start, stop, backup PATH, restore PATH"
    )
    db.add_argument("action", choices=["url", "start", "stop", "backup", "restore"])
    db.add_argument("path", nargs="?", help="backup directory (backup, restore)")
    db.add_argument(
        "--force", action="store_true", help="restore: replace databases that hold tables"
    )
    db.set_defaults(func=_cmd_db)

    run = sub.add_parser(
        "run", help="the Dagster job daily_refresh: ingest LANDING_DIR, build every model, check"
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the incremental models from scratch (run config of the dbt asset)",
    )
    run.set_defaults(func=_cmd_run)

    dev = sub.add_parser("dev", help="Dagster webserver and daemon on the platform database")
    dev.add_argument(
        "--port",
        type=int,
        default=3000,
        help="the UI's port (default %(default)s; `make dev PORT=N`)",
    )
    dev.add_argument("--print-env", action="store_true", help="print the environment as exports")
    dev.set_defaults(func=_cmd_dev)

    from platform_core.bi_access import TenantLimits

    bi = sub.add_parser("bi", help="BI access: logins for all organizations or for one")
    bi_sub = bi.add_subparsers(dest="action", required=True)
    bi_sub.add_parser(
        "set-password", help="give bi_reader (every organization) a password ($BI_READER_PASSWORD)"
    )
    bi_sub.add_parser(
        "enforce-limits",
        help="cancel organization-login statements and end idle transactions that overstay their"
        " login's timeouts (what the Dagster sensor tenant_session_watchdog runs)",
    )
    for action, help_text in (
        (
            "grant-org",
            "create or update a login that reads one organization only ($BI_ORG_PASSWORD)",
        ),
        ("revoke-org", "take an organization from such a login"),
    ):
        org = bi_sub.add_parser(action, help=help_text)
        org.add_argument("org_id")
        org.add_argument("--role", required=True, help="login name (lower-case letters, digits, _)")
        if action == "grant-org":
            org.add_argument(
                "--reset-password",
                action="store_true",
                help="give an existing login a new password ($BI_ORG_PASSWORD or a prompt)",
            )
            org.add_argument(
                "--connection-limit",
                type=int,
                default=TenantLimits().connection_limit,
                help="most connections the login may hold at once (default %(default)s)",
            )
    bi.set_defaults(func=_cmd_bi)

    com = sub.add_parser("commissions", help="close commission periods, write partner statements")
    com_sub = com.add_subparsers(dest="action", required=True)
    close = com_sub.add_parser(
        "close",
        help="close a month (and every earlier open one) into the commission ledger"
        " (the Dagster job close_commission_period)",
    )
    close.add_argument("--period", required=True, help="the month, YYYY-MM")
    who = close.add_mutually_exclusive_group(required=True)
    who.add_argument("--org", action="append", help="an organization (repeatable)")
    who.add_argument("--all", action="store_true", help="every organization")
    statements = com_sub.add_parser(
        "statements", help="one CSV per partner and organization for a month"
    )
    statements.add_argument("--period", required=True, help="the month, YYYY-MM")
    statements.add_argument("--out", required=True, help="the folder to write them to")
    com.set_defaults(func=_cmd_commissions)

    # Parsed by the harness itself (main hands it everything after `bench`).
    sub.add_parser(
        "bench",
        add_help=False,
        help="the benchmarks of docs/benchmarks.md (dev checkout only; `attribution bench --help`)",
    )

    demo = sub.add_parser("demo", help="generate a small dataset and run it end to end")
    demo.add_argument("--workdir", default="data/demo")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _one_line(exc: BaseException) -> str:
    """An error as one line a person can act on: what failed and on which resource."""
    import psycopg

    text = " ".join(str(exc).split())
    if isinstance(exc, psycopg.errors.DiskFull):
        return f"the database server ran out of disk space: {text}"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return f"the database refused access: {text}"
    if isinstance(exc, psycopg.Error):
        return f"database error ({exc.__class__.__name__}): {text}"
    if exc.__class__.__name__ == "OperationalError":  # SQLAlchemy: Dagster's storage
        return f"Dagster's storage database is unreachable: {text.split('(Background')[0]}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return text


def main(argv: list[str] | None = None) -> int:
    """Every anticipated failure ends as one `error:` line (no traceback) and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    # `bench` hands its arguments to the harness's own parser, unparsed.
    bench = argv[:1] == ["bench"]
    args = None if bench else build_parser().parse_args(argv)
    try:
        if args is None:
            return _cmd_bench(argv[1:])
        # Read once; every command gets its settings from here.
        return args.func(args, Settings.from_environment())
    except (DatabaseError, NotADirectoryError, ValueError) as exc:  # bi.AccessError is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a stack of frames
        import psycopg

        # Dagster wraps its storage's errors (DagsterPostgresException, "too many
        # retries for DB connection"): look down the chain for the cause.
        chain: list[BaseException] = []
        cause: BaseException | None = exc
        while cause is not None and len(chain) < 20:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        known = [
            e
            for e in chain
            if isinstance(e, (psycopg.Error, OSError))
            or e.__class__.__name__ in ("OperationalError", "DagsterPostgresException")
        ]
        if not known:
            raise
        print(f"error: {_one_line(known[-1])}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
