"""`python -m benchmarks` (what `make bench` runs): the performance figures of docs/benchmarks.md.

A dev-only tool: it lives outside the product package and is not in the wheel.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmarks.runner import STAGES, BenchOptions, run_bench


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    bench = argparse.ArgumentParser(
        prog=prog,
        description="Without options: every stage at every preset (what `make bench` runs). Writes docs/benchmarks.md and docs/benchmarks.json."
        " bi-load: only the 50-session BI load during daily_refresh, at growth."
        " history: the same next day on 1 and on 6 months of one preset (growth, else the"
        " largest given), with the ratio table.",
    )
    bench.add_argument("action", nargs="?", choices=["all", "bi-load"], default="all")
    bench.add_argument(
        "--preset",
        action="append",
        choices=["mvp", "early", "growth", "scale", "hyper"],
        help="repeatable; default: all five",
    )
    bench.add_argument(
        "--months",
        type=int,
        default=1,
        help="history of the per-preset stages (default 1; the history stage always compares 1 and 6)",
    )
    bench.add_argument(
        "--stage",
        action="append",
        choices=list(STAGES),
        help="repeatable; default: all",
    )
    bench.add_argument("--seed", type=int, default=42)
    bench.add_argument("--work", default="data/bench", help="generated data, embedded server, logs")
    bench.add_argument("--out", default="docs", help="where benchmarks.md/.json are written")
    bench.add_argument("--sessions", type=int, default=50, help="BI sessions of bi-load")
    bench.add_argument("--waves", type=int, default=8, help="waves of won deals (latency)")
    bench.add_argument("--samples", type=int, default=200, help="organizations per BI query")
    bench.add_argument("--no-dbt-tests", action="store_true", help="skip timing dbt test")
    return bench


def run(args: argparse.Namespace) -> int:
    stages = ["bi-load"] if args.action == "bi-load" else (args.stage or list(STAGES))
    presets = args.preset or (["growth"] if args.action == "bi-load" else None)
    options = BenchOptions(
        **({"presets": presets} if presets else {}),
        months=args.months,
        stages=stages,
        seed=args.seed,
        work=Path(args.work),
        out=Path(args.out),
        sessions=args.sessions,
        latency_waves=args.waves,
        bi_samples=args.samples,
        dbt_tests=not args.no_dbt_tests,
    )
    figures = run_bench(options)
    if args.action == "bi-load":
        load = figures["bi_load"]
        lat = load["latency"]
        print(
            f"{load['sessions']} sessions, {load['queries']:,} queries during daily_refresh"
            f" ({load['refresh_seconds']} s, exit code {load['refresh_exit_code']}):"
            f" {load['errors']} errors; p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms,"
            f" p99 {lat['p99_ms']} ms"
        )
        return 0 if load["errors"] == 0 and load["refresh_exit_code"] == 0 else 1
    print(f"report: {Path(args.out) / 'benchmarks.md'} and benchmarks.json")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """Entry point of `python -m benchmarks` and of `attribution bench`."""
    return run(build_parser(prog).parse_args(argv))


# `attribution bench` runs this module as its own process and names itself here.
PROG_VARIABLE = "ATTRIBUTION_BENCH_PROG"

if __name__ == "__main__":
    sys.exit(main(prog=os.environ.get(PROG_VARIABLE, "python -m benchmarks")))
