"""Launch overhead: what a run costs beyond its steps, when the UI or a sensor starts it.

`python -m benchmarks.launch_overhead` (after `make demo`): starts `attribution dev`
on a free port, launches `daily_refresh` the way the UI's Materialize/Launch button
does (a GraphQL `launchRun` through the webserver: queued, dequeued by the daemon,
launched in a run worker), then drops a wave of won deals into the landing folder
so the landing sensor starts `ingest_and_attribute`. For each run it prints

    wall   run created → run finished (queueing, worker start, code load, steps, …)
    steps  the time covered by at least one executing step (union of step intervals)
    overhead = wall − steps, and overhead / steps

A dev-only measurement; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg

from benchmarks.latency import _active_partners, _stop, drop_wave
from orchestration.instance import instance_ref, open_instance
from platform_core.database import database_url
from platform_core.settings import Settings, project_root

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_dev(port: int, log: Path) -> subprocess.Popen:
    attribution = str(Path(sys.executable).parent / "attribution")
    return subprocess.Popen(
        [attribution, "dev", "--port", str(port)],
        cwd=project_root(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_server(port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Dagster webserver did not answer on port {port}")


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def run_figures(instance, run_id: str) -> dict[str, float | str]:
    record = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]), limit=1)[0]
    steps = [
        (s.start_time, s.end_time)
        for s in instance.get_run_step_stats(run_id)
        if s.start_time and s.end_time
    ]
    wall = record.end_time - record.create_timestamp.timestamp()
    step_seconds = _union_seconds(steps)
    overhead = wall - step_seconds
    return {
        "job": record.dagster_run.job_name,
        "status": record.dagster_run.status.value,
        "wall_s": round(wall, 1),
        "steps_s": round(step_seconds, 1),
        "steps": len(steps),
        "overhead_s": round(overhead, 1),
        "overhead_ratio": round(overhead / step_seconds, 3) if step_seconds else float("nan"),
    }


def _wait_run(instance, run_id: str, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run and run.status.value in FINISHED:
            return
        time.sleep(1)
    raise RuntimeError(f"run {run_id} did not finish in {timeout:.0f} s")


def _launch_from_ui(port: int, job: str) -> str:
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    return client.submit_job_execution(job, run_config={})


def _next_run(instance, job: str, after: set[str], timeout: float = 300.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in instance.get_runs(filters=dg.RunsFilter(job_name=job), limit=5):
            if run.run_id not in after:
                return run.run_id
        time.sleep(0.5)
    raise RuntimeError(f"no {job} run started within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.launch_overhead")
    parser.add_argument("--log", default="data/launch-overhead-dev.log")
    args = parser.parse_args(argv)
    settings = Settings.from_environment()
    url = database_url(settings=settings)
    landing = (settings.landing_dir or Path("data/demo/landing")).resolve()
    partners = _active_partners(url)
    if not partners:
        print("no active partner in the marts: run `make demo` first", file=sys.stderr)
        return 2
    port = _free_port()
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    process = _start_dev(port, log)
    figures = []
    try:
        _wait_for_server(port)
        with open_instance(instance_ref(settings, url)) as instance:
            run_id = _launch_from_ui(port, "daily_refresh")
            _wait_run(instance, run_id)
            figures.append(run_figures(instance, run_id))
            before = {r.run_id for r in instance.get_runs(limit=50)}
            drop_wave(landing, int(time.time()) % 100_000, partners, 3)
            run_id = _next_run(instance, "ingest_and_attribute", before)
            _wait_run(instance, run_id)
            figures.append(run_figures(instance, run_id))
    finally:
        _stop(process)
    for row in figures:
        print(
            f"{row['job']:<22} {row['status']:<8} wall {row['wall_s']:>6} s"
            f"  steps {row['steps_s']:>6} s ({row['steps']} steps)"
            f"  overhead {row['overhead_s']:>6} s = {row['overhead_ratio']:.0%} of step time"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
