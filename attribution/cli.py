"""The `attribution` command line (SPEC §6.3)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from datetime import date
from pathlib import Path

from attribution.database import DatabaseError, database_url, embedded_server, redact_url


def _cmd_generate(args: argparse.Namespace) -> int:
    from attribution.synthetic import generate

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


def _cmd_ingest(args: argparse.Namespace) -> int:
    from attribution.transient import connect_with_retry
    from ingestion import ingest_directory

    directory = Path(args.directory)
    url = database_url()
    connect_with_retry(url).close()  # a server still starting up is waited for, briefly
    print(f"ingesting {directory} into {redact_url(url)}")
    report = ingest_directory(url, directory)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _cmd_db(args: argparse.Namespace) -> int:
    server = embedded_server()
    external = os.environ.get("DATABASE_URL")
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


def _cmd_run(args: argparse.Namespace) -> int:
    import psycopg

    from attribution.migrations import migrate
    from attribution.pipeline import marts_summary, run_pipeline
    from attribution.transient import connect_with_retry

    landing = os.environ.get("LANDING_DIR")
    if not landing:
        print("error: set LANDING_DIR to the folder where CRM exports land", file=sys.stderr)
        return 2
    url = database_url()
    connect_with_retry(url).close()  # a server still starting up is waited for, briefly
    print(f"running the pipeline on {landing} into {redact_url(url)}")
    if args.full_refresh:
        # A full rebuild is an operator's decision, not a schedule's: plain dbt.
        result = run_pipeline(url, Path(landing), full_refresh=True)
        ok = result.ok
    else:
        from orchestration.run import run_daily_refresh

        migrate(url)
        outcome = run_daily_refresh(url, landing)
        if outcome.step_failures:  # one line, however many steps failed
            print(
                f"error: daily_refresh failed: {'; '.join(outcome.step_failures)}", file=sys.stderr
            )
        for label in outcome.failed_warnings:
            print(f"check warning: {label}")
        for label in outcome.failed_errors:
            print(f"CHECK FAILED (error): {label}", file=sys.stderr)
        print(
            f"Dagster run {outcome.run_id} of daily_refresh: {'succeeded' if outcome.success else 'FAILED'}"
        )
        ok = outcome.ok
    try:
        summary = marts_summary(url)
    except psycopg.errors.UndefinedTable:  # the first build never completed
        summary = ["marts: not built yet"]
    except (psycopg.OperationalError, DatabaseError):
        if ok:
            raise
        summary = []  # the run already failed and said why: one error line is enough
    for line in summary:
        print(line)
    print("done" if ok else "FAILED")
    return 0 if ok else 1


def _cmd_dev(args: argparse.Namespace) -> int:
    from attribution.migrations import migrate
    from orchestration.instance import dagster_environment

    url = database_url()
    migrate(url)  # the sensors read raw.ingest_batches from their first tick
    env = dict(os.environ, **dagster_environment(url))
    env.setdefault("LANDING_DIR", str(Path("data/demo/landing").resolve()))
    Path(env["LANDING_DIR"]).mkdir(parents=True, exist_ok=True)
    if args.print_env:  # for `eval "$(attribution dev --print-env)"; dg dev`
        for key in ("DATABASE_URL", "LANDING_DIR", "DAGSTER_HOME", "DAGSTER_PG_URL"):
            print(f"export {key}={shlex.quote(env[key])}")
        return 0
    print(
        f"Dagster UI on http://127.0.0.1:{args.port} — database {redact_url(url)}, landing {env['LANDING_DIR']}"
    )
    dagster = str(Path(sys.executable).parent / "dagster")
    os.execvpe(
        dagster,
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)],
        env,
    )
    return 0  # not reached


def _cmd_bi(args: argparse.Namespace) -> int:
    from attribution.bi import set_reader_password

    url = database_url()
    set_reader_password(url)
    print("bi_reader can log in; connect BI tools as described in docs/bi.md")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from attribution.demo import run_demo

    return run_demo(Path(args.workdir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attribution", description="Partner revenue attribution platform."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic CRM export (SPEC §2 format)")
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

    ing = sub.add_parser("ingest", help="load a landing directory once (SPEC §3)")
    ing.add_argument("directory")
    ing.set_defaults(func=_cmd_ingest)

    db = sub.add_parser("db", help="the database in use: url, start, stop")
    db.add_argument("action", choices=["url", "start", "stop"])
    db.set_defaults(func=_cmd_db)

    run = sub.add_parser("run", help="ingest LANDING_DIR, build every model and test")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental marts")
    run.set_defaults(func=_cmd_run)

    dev = sub.add_parser("dev", help="Dagster webserver and daemon on the platform database")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--print-env", action="store_true", help="print the environment as exports")
    dev.set_defaults(func=_cmd_dev)

    bi = sub.add_parser("bi", help="BI access: set-password gives bi_reader a login password")
    bi.add_argument("action", choices=["set-password"])
    bi.set_defaults(func=_cmd_bi)

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
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatabaseError, NotADirectoryError, ValueError) as exc:
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
