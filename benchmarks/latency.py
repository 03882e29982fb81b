"""Latency stage: a won deal dropped into the landing folder → visible in
`marts.fct_partner_attribution`, with the Dagster daemon's sensors running.

The daemon (`dagster-daemon run`) gets a temporary DAGSTER_HOME whose dagster.yaml
is the repository's, storage in a fresh `bench_dagster` database on the same
server, and an empty landing folder of its own. Waves of won deals (each with a
touchpoint of an existing partner, so they earn attribution rows) are dropped at
random intervals — arrivals are not in step with the sensor ticks — and each
deal's latency is from its file landing to its first row in the mart.

Where each deal's seconds went comes from Dagster's own storage (run creation,
PIPELINE_STARTING / PIPELINE_START, step starts and ends), the ledger (which run
loaded the deal's file: the one whose ingestion step was running when the ledger
row was finished) and the dbt.log of that run's models invocation (when
`fct_partner_attribution` was built: Dagster records the dbt events only once the
whole invocation has finished, and a run the bench stops half-way never does).

With `neighbour_touchpoints`, the largest organization also lands one file of
that many touchpoints just before wave 2 (the noisy neighbour, docs/scaling.md),
while the small organizations' won deals keep landing.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.server import BenchServer
from benchmarks.stats import latency_summary, percentile
from ingestion.contracts import DEALS, TOUCHPOINTS, Entity
from platform_core.settings import project_root

DAGSTER_DB = "bench_dagster"
POLL_SECONDS = 0.5
LANDING_JOB = "ingest_and_attribute"
DBT_STEP = "dbt_models"  # the op of every dbt asset (orchestration/defs/attribution/dbt_assets.py)
FCT = "fct_partner_attribution"
NEIGHBOUR_WAVE = 2  # the neighbour's file lands just before this wave
NEIGHBOUR_FILE = "touchpoints_neighbour.csv"
# Where a deal's seconds go, in order; they add up to its latency.
COMPONENTS = (
    ("sensor", "landing → run created (sensor tick, or the landing run under way)"),
    ("queue", "run created → dequeued (waiting for the previous landing run, dequeue)"),
    ("launch", "dequeued → run started (launch, run process start)"),
    ("code_load", "run started → first step (code location loaded; a wait for the pool)"),
    ("ingestion", "first step → dbt step (the load; checks or a pool wait before dbt)"),
    ("dbt_startup", "dbt step → first node (dbt process, lock, parse, on-run-start)"),
    ("models_to_fct", f"first node → `{FCT}` built (the models and unit tests before it)"),
    ("probe", "built → seen by the probe (polls every 0.5 s)"),
)
# The events a timeline is made of (Dagster stores RUN_* as PIPELINE_*).
EVENT_TYPES = (
    "PIPELINE_STARTING",
    "PIPELINE_START",
    "PIPELINE_SUCCESS",
    "PIPELINE_FAILURE",
    "PIPELINE_CANCELED",
    "STEP_START",
    "STEP_SUCCESS",
    "STEP_FAILURE",
    "ASSET_MATERIALIZATION",
)
# A landing run's parts (run_figures), summarized over the runs.
RUN_PARTS = (
    "wall_s", "queue_s", "launch_s", "code_load_s", "ingestion_s", "dbt_to_fct_s",
    "dbt_process_s", "dbt_prepare_s", "dbt_spawn_s", "dbt_parse_hooks_s", "dbt_parse_s",
    "models_before_fct_s", "tail_s",
    "models_after_fct_s", "data_tests_s", "after_dbt_s",
)  # fmt: skip
# dagster-dbt's log line "Running dbt command: …", stored as a plain message of the step.
DBT_COMMAND = "DBT_COMMAND"
RUN_END = {"PIPELINE_SUCCESS", "PIPELINE_FAILURE", "PIPELINE_CANCELED"}
STEP_END = {"STEP_SUCCESS", "STEP_FAILURE"}


def _write_atomically(path: Path, entity: Entity, rows: Iterable[dict[str, str]]) -> None:
    """Written under a hidden name, then renamed: the sensor never sees half a file.
    Columns are the contract's (a field a row lacks is empty; one it does not know fails)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, entity.field_names, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.rename(path)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def deals_file(wave: int) -> str:
    return f"deals_latency_{wave:03d}.csv"


def drop_wave(landing: Path, wave: int, partners: list[tuple[str, str]], size: int) -> list[str]:
    """Touchpoints first, then the won deals: the wave has landed when the deals file has."""
    now = datetime.now(UTC)
    deals, touchpoints = [], []
    for i in range(size):
        org_id, partner_id = partners[(wave * size + i) % len(partners)]
        deal_id = f"bench_latency_{wave:03d}_{i:02d}"
        deals.append(
            {
                "deal_id": deal_id,
                "org_id": org_id,
                "name": f"latency probe {wave}.{i}",
                "amount": "1000.00",
                "currency": "USD",
                "status": "won",
                "created_at": _stamp(now - timedelta(days=2)),
                "closed_at": _stamp(now - timedelta(minutes=5)),
                "updated_at": _stamp(now),
            }
        )
        touchpoints.append(
            {
                "touchpoint_id": f"{deal_id}_tp",
                "org_id": org_id,
                "deal_id": deal_id,
                "partner_id": partner_id,
                "touchpoint_type": "referral",
                "occurred_at": _stamp(now - timedelta(days=1)),
            }
        )
    _write_atomically(landing / f"touchpoints_latency_{wave:03d}.csv", TOUCHPOINTS, touchpoints)
    _write_atomically(landing / deals_file(wave), DEALS, deals)
    return [row["deal_id"] for row in deals]


# --- the noisy neighbour -------------------------------------------------------------------


@dataclass(frozen=True)
class NeighbourDeal:
    deal_id: str
    created_at: datetime
    closed_at: datetime | None


def neighbour_rows(
    org_id: str, deals: Sequence[NeighbourDeal], partners: Sequence[str], count: int
) -> Iterable[dict[str, str]]:
    """`count` new touchpoints of `org_id` on its own deals, by its own partners. Each
    lies within a day before its deal closed (or after it was created, when open), so
    closed deals' attribution changes: the build does real work for every row."""
    if not deals or not partners:
        raise ValueError(f"organization {org_id} has no deals or no partners to touch")
    for i in range(count):
        deal = deals[i % len(deals)]
        minutes = 1 + (i // len(deals)) % 1440
        occurred = (
            deal.closed_at - timedelta(minutes=minutes)
            if deal.closed_at is not None
            else deal.created_at + timedelta(minutes=minutes)
        )
        yield {
            "touchpoint_id": f"bench_neighbour_{i:07d}",
            "org_id": org_id,
            "deal_id": deal.deal_id,
            "partner_id": partners[i % len(partners)],
            "touchpoint_type": ("referral", "co_sell", "meeting")[i % 3],
            "occurred_at": _stamp(occurred),
        }


def write_neighbour_file(
    landing: Path,
    org_id: str,
    deals: Sequence[NeighbourDeal],
    partners: Sequence[str],
    count: int,
) -> Path:
    path = landing / NEIGHBOUR_FILE
    _write_atomically(path, TOUCHPOINTS, neighbour_rows(org_id, deals, partners, count))
    return path


def _largest_org(url: str) -> tuple[str, list[NeighbourDeal], list[str]]:
    """The organization with the most deals, its deals and its active partners."""
    with psycopg.connect(url) as conn:
        (org_id,) = conn.execute(
            "select org_id from marts.fct_deals group by org_id"
            " order by count(*) desc, org_id limit 1"
        ).fetchone()
        deals = [
            NeighbourDeal(*row)
            for row in conn.execute(
                "select deal_id, created_at, closed_at from marts.fct_deals"
                " where org_id = %s order by deal_id",
                [org_id],
            )
        ]
        partners = [
            row[0]
            for row in conn.execute(
                "select partner_id from marts.partner_performance"
                " where org_id = %s and partner_status = 'active' order by partner_id",
                [org_id],
            )
        ]
    return org_id, deals, partners


def _active_partners(
    url: str, count: int = 50, exclude_org: str | None = None
) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select org_id, partner_id from marts.partner_performance"
            " where partner_status = 'active' and org_id is distinct from %s"
            " order by partner_id limit %s",
            [exclude_org, count],
        ).fetchall()


def _visible(conn: psycopg.Connection, deal_ids: list[str]) -> set[str]:
    rows = conn.execute(
        "select distinct deal_id from marts.fct_partner_attribution where deal_id = any(%s)",
        [deal_ids],
    ).fetchall()
    return {row[0] for row in rows}


def _runs(dagster_url: str) -> dict[str, dict]:
    """Per job: runs, successes, mean duration (from Dagster's run storage)."""
    with psycopg.connect(dagster_url) as conn:
        rows = conn.execute(
            "select pipeline_name, status, end_time - start_time from runs"
        ).fetchall()
    jobs: dict[str, dict] = {}
    for job, status, seconds in rows:
        entry = jobs.setdefault(job, {"runs": 0, "succeeded": 0, "durations": []})
        entry["runs"] += 1
        entry["succeeded"] += status == "SUCCESS"
        if seconds is not None:
            entry["durations"].append(seconds)
    for entry in jobs.values():
        durations = entry.pop("durations")
        entry["mean_run_seconds"] = round(sum(durations) / len(durations), 1) if durations else None
    return jobs


# --- where the seconds went ----------------------------------------------------------------


@dataclass
class RunTimeline:
    """One run, as epoch seconds (None: did not happen before the daemon stopped)."""

    run_id: str
    job: str
    created: float
    starting: float | None = None  # the daemon dequeued it and launches it
    started: float | None = None  # the run process executes the job
    ended: float | None = None
    steps: dict[str, list[float | None]] = field(default_factory=dict)  # key → [start, end]
    fct_built: float | None = None
    fct_source: str | None = None  # "dbt" (its log) or "dagster" (its event: all models done)
    dbt_command: float | None = None  # dagster-dbt logs the command it starts dbt with
    dbt_first_log: float | None = None  # dbt's first log line: its process is up
    dbt_parse: float | None = None  # seconds dbt spent reading the project
    full_parse: bool | None = None  # True: it could not reuse its partial parse
    first_model: float | None = None
    models_done: float | None = None
    tests_done: float | None = None
    models: dict[str, float] = field(default_factory=dict)  # model or unit test → seconds
    before_fct: set[str] = field(default_factory=set)  # models finished before FCT started

    @property
    def first_step(self) -> float | None:
        return min((s for s, _ in self.steps.values() if s is not None), default=None)

    @property
    def dbt_start(self) -> float | None:
        return self.steps.get(DBT_STEP, [None])[0]


def run_timelines(
    runs: Iterable[tuple[str, str, float]],
    events: Iterable[tuple[str, str, str | None, float, str | None]],
) -> dict[str, RunTimeline]:
    """Timelines from Dagster's storage: runs as (run_id, job, created), events as
    (run_id, event type, step key, timestamp, asset key)."""
    timelines = {run_id: RunTimeline(run_id, job, created) for run_id, job, created in runs}
    for run_id, kind, step, at, asset in sorted(events, key=lambda e: e[3]):
        t = timelines.get(run_id)
        if t is None:
            continue
        if kind == "PIPELINE_STARTING":
            t.starting = at
        elif kind == "PIPELINE_START":
            t.started = at
        elif kind in RUN_END:
            t.ended = at
        elif kind == "STEP_START" and step:
            t.steps.setdefault(step, [at, None])
        elif kind in STEP_END and step:
            t.steps.setdefault(step, [None, None])[1] = at
        elif kind == DBT_COMMAND and t.dbt_command is None:
            t.dbt_command = at
        elif kind == "ASSET_MATERIALIZATION" and asset and FCT in asset and t.fct_built is None:
            t.fct_built, t.fct_source = at, "dagster"
    return timelines


def _dbt_time(text: str) -> float:
    """dbt's timestamps are UTC, with or without the Z."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _node_name(unique_id: str) -> str:
    """`fct_deals` for a model; `unit_test:<model>.<test>` for a unit test."""
    kind, _, *rest = unique_id.split(".")
    return rest[-1] if kind == "model" else f"{kind}:{'.'.join(rest)}"


def apply_dbt_logs(timeline: RunTimeline, invocations: Iterable[list[dict]]) -> None:
    """When the run's dbt invocations ran, from each one's dbt.log (JSON lines, written as
    dbt goes, so also for an invocation stopped half-way): the models invocation holds
    models and unit tests, the data tests' invocation only data tests."""
    for events in invocations:
        if not events:
            continue
        finished = [
            e["data"]["node_info"]
            for e in events
            if e.get("info", {}).get("name") == "NodeFinished"
            and e.get("data", {}).get("node_info", {}).get("node_started_at")
        ]
        done = [_dbt_time(e["info"]["ts"]) for e in events
                if e.get("info", {}).get("name") == "CommandCompleted"]  # fmt: skip
        end = done[0] if done else None
        building = [n for n in finished if n["resource_type"] in ("model", "unit_test")]
        if not building:
            if finished and end is not None:
                timeline.tests_done = end
            continue
        timeline.dbt_first_log = _dbt_time(events[0]["info"]["ts"])
        timeline.models_done = end
        names = {e.get("info", {}).get("name"): e for e in events}
        if "FoundStats" in names:  # dbt has read the project: its parse is over
            parsed = _dbt_time(names["FoundStats"]["info"]["ts"])
            timeline.dbt_parse = parsed - timeline.dbt_first_log
        # dbt says so whenever it cannot use a saved parse (none, or made for another profile).
        timeline.full_parse = "UnableToPartialParse" in names
        spans = {
            _node_name(n["unique_id"]): (
                _dbt_time(n["node_started_at"]),
                _dbt_time(n["node_finished_at"]),
            )
            for n in building
        }
        timeline.first_model = min(start for start, _ in spans.values())
        timeline.models = {name: round(e - s, 3) for name, (s, e) in spans.items()}
        if FCT in spans:
            fct_start, timeline.fct_built = spans[FCT]
            timeline.fct_source = "dbt"
            timeline.before_fct = {m for m, (_, e) in spans.items() if e <= fct_start}


def loading_run(loaded_at: float, timelines: Iterable[RunTimeline]) -> RunTimeline | None:
    """The run whose steps before dbt (a load; a run building only has none) were
    running when the ledger recorded the load; within a second of them at worst."""
    best, best_miss = None, 1.0
    for t in timelines:
        first, dbt = t.first_step, t.dbt_start
        if first is None or dbt is None or first >= dbt:
            continue
        miss = max(first - loaded_at, loaded_at - dbt, 0.0)
        if miss <= best_miss:
            best, best_miss = t, miss
    return best


def deal_breakdown(landed: float, seen: float, run: RunTimeline) -> dict[str, float | None]:
    """A deal's latency split at its run's milestones; the parts add up to seen − landed.
    A milestone that is missing leaves its part None (folded into the next one); one
    passed before the deal landed leaves its part 0."""
    marks = [
        ("sensor", run.created),
        ("queue", run.starting),
        ("launch", run.started),
        ("code_load", run.first_step),
        ("ingestion", run.dbt_start),
        ("dbt_startup", run.first_model if run.fct_source == "dbt" else None),
        ("models_to_fct", run.fct_built),
        ("probe", seen),
    ]
    parts: dict[str, float | None] = {}
    previous = landed
    for name, at in marks:
        if at is None:
            parts[name] = None
            continue
        # A run created (or even dequeued) before the file landed still loads it when
        # it starts: the deal waited only from its landing.
        parts[name] = round(max(0.0, at - previous), 3)
        previous = max(previous, at)
    return parts


def run_figures(t: RunTimeline) -> dict:
    """A landing run: its fixed costs, its way to FCT, and the tail after it, which the
    next landing run waits for (one landing run at a time)."""

    def gap(a: float | None, b: float | None) -> float | None:
        return round(b - a, 1) if a is not None and b is not None else None

    return {
        "run_id": t.run_id,
        "job": t.job,
        "wall_s": gap(t.created, t.ended),
        "queue_s": gap(t.created, t.starting),
        "launch_s": gap(t.starting, t.started),
        "code_load_s": gap(t.started, t.first_step),
        "ingestion_s": gap(t.first_step, t.dbt_start),
        "dbt_to_fct_s": gap(t.dbt_start, t.fct_built),
        "dbt_process_s": gap(t.dbt_start, t.dbt_first_log),
        "dbt_prepare_s": gap(t.dbt_start, t.dbt_command),
        "dbt_spawn_s": gap(t.dbt_command, t.dbt_first_log),
        "dbt_parse_hooks_s": gap(t.dbt_first_log, t.first_model),
        "dbt_parse_s": _round(t.dbt_parse),
        "full_parse": t.full_parse,
        "models_before_fct_s": gap(t.first_model, t.fct_built) if t.fct_source == "dbt" else None,
        "tail_s": gap(t.fct_built, t.ended),
        "models_after_fct_s": gap(t.fct_built, t.models_done) if t.fct_source == "dbt" else None,
        "data_tests_s": gap(t.models_done, t.tests_done),
        # A landing run without data tests ends after its models invocation.
        "after_dbt_s": gap(t.tests_done or t.models_done, t.ended),
        "steps": {key: gap(start, end) for key, (start, end) in t.steps.items()},
    }


def _spread(values: Iterable[float | None]) -> dict[str, float | None]:
    measured = [v for v in values if v is not None]
    return {
        "n": len(measured),
        "p50_s": _round(percentile(measured, 50)),
        "p95_s": _round(percentile(measured, 95)),
        "max_s": _round(max(measured, default=None)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarize(deals: dict[str, dict], timelines: dict[str, RunTimeline]) -> dict:
    """figures["latency"]["breakdown"]: p50/p95/max of each part over the deals, the
    p95 deal's own parts, the landing runs and the dbt models of those runs."""
    names = [name for name, _ in COMPONENTS]
    components = {n: _spread(d["parts"].get(n) for d in deals.values()) for n in names}
    totals = sorted(deals.values(), key=lambda d: d["latency_s"])
    p95_deal = totals[max(1, -(-95 * len(totals) // 100)) - 1] if totals else None
    run_ids = {d["run_id"] for d in deals.values()}
    landing = [
        t for t in sorted(timelines.values(), key=lambda t: t.created) if t.run_id in run_ids
    ]
    runs = [run_figures(t) for t in landing]
    model_runs = [t for t in landing if t.models]
    models = {}
    for name in sorted({m for t in model_runs for m in t.models}):
        seconds = [t.models[name] for t in model_runs if name in t.models]
        models[name] = {
            "median_s": round(statistics.median(seconds), 2),
            "max_s": round(max(seconds), 2),
            "runs": len(seconds),
            "before_fct": sum(name in t.before_fct for t in model_runs),
        }
    step_keys = sorted({k for r in runs for k in r["steps"]})
    steps = {k: _spread(r["steps"].get(k) for r in runs) for k in step_keys}
    return {
        "labels": dict(COMPONENTS),
        "components": components,
        "total": _spread(d["latency_s"] for d in deals.values()),
        "p95_deal": p95_deal,
        "deals_placed": len(deals),
        "runs": runs,
        "run_parts": {key: _spread(r[key] for r in runs) for key in RUN_PARTS},
        "steps": steps,
        "dbt_models": models,
    }


def _dagster_timelines(dagster_url: str) -> dict[str, RunTimeline]:
    # Dagster writes its timestamps as UTC without a zone; epoch of such a value is UTC.
    with psycopg.connect(dagster_url) as conn:
        runs = conn.execute(
            "select run_id, pipeline_name, extract(epoch from create_timestamp)::float8 from runs"
        ).fetchall()
        events = conn.execute(
            "select run_id, coalesce(dagster_event_type, %s), step_key,"
            " extract(epoch from timestamp)::float8, asset_key"
            " from event_logs where dagster_event_type = any(%s)"
            " or (dagster_event_type is null and step_key = %s and event like %s)",
            [DBT_COMMAND, list(EVENT_TYPES), DBT_STEP, "%Running dbt command%"],
        ).fetchall()
    return run_timelines(runs, events)


def _dbt_invocations(run_id: str) -> list[list[dict]]:
    """The dbt.log events of each dbt invocation of the run (dagster-dbt's target folder
    `dbt_models-<run id prefix>-<uuid>` under dbt_project/target)."""
    target = project_root() / "dbt_project" / "target"
    found = []
    for path in target.glob(f"{DBT_STEP}-{run_id[:7]}-*/dbt.log"):
        events = []
        with contextlib.suppress(OSError), path.open(encoding="utf-8") as handle:
            for line in handle:
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        found.append(events)
    return found


def _ledger_loads(url: str, names: list[str]) -> dict[str, dict[str, float]]:
    """file name → when its load started and finished (epoch seconds), rows loaded and
    quarantined."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select file_name, extract(epoch from started_at)::float8,"
            " extract(epoch from finished_at)::float8, rows_loaded, rows_quarantined"
            " from raw.ingest_batches where file_name = any(%s) and outcome = 'loaded'",
            [names],
        ).fetchall()
    keys = ("started", "finished", "rows_loaded", "rows_quarantined")
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}


def breakdown(
    url: str,
    dagster_url: str,
    landed: dict[str, float],
    seen: dict[str, float],
    files: dict[str, str],
) -> tuple[dict, dict[str, RunTimeline]]:
    """Each deal (landed/seen in epoch seconds, `files`: its deals file) placed in the
    run that loaded it, and the summary."""
    timelines = _dagster_timelines(dagster_url)
    for t in timelines.values():
        apply_dbt_logs(t, _dbt_invocations(t.run_id))
    loads = _ledger_loads(url, sorted(set(files.values())))
    deals = {}
    for deal_id, name in files.items():
        load = loads.get(name)
        run = loading_run(load["finished"], timelines.values()) if load else None
        if run is None or deal_id not in seen:
            continue
        deals[deal_id] = {
            "run_id": run.run_id,
            "latency_s": round(seen[deal_id] - landed[deal_id], 3),
            "parts": deal_breakdown(landed[deal_id], seen[deal_id], run),
        }
    return summarize(deals, timelines), timelines


def _neighbour_figures(
    url: str, org_id: str, rows: int, landed: float | None, timelines: dict[str, RunTimeline]
) -> dict:
    """The neighbour's file: its load (ledger) and the run that loaded and built it."""
    load = _ledger_loads(url, [NEIGHBOUR_FILE]).get(NEIGHBOUR_FILE)
    run = loading_run(load["finished"], timelines.values()) if load else None
    figures: dict = {"org_id": org_id, "touchpoints": rows, "lands_before_wave": NEIGHBOUR_WAVE}
    if load:
        figures |= {
            "load_s": round(load["finished"] - load["started"], 1),
            "rows_loaded": load["rows_loaded"],
            "rows_quarantined": load["rows_quarantined"],
        }
    if run:
        figures["run"] = run_figures(run)
        if landed is not None and run.ended is not None:
            figures["landed_to_run_end_s"] = round(run.ended - landed, 1)
    return figures


# --- the daemon ----------------------------------------------------------------------------


def _start_daemon(url: str, dagster_url: str, home: Path, landing: Path, log: Path):
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    env = dict(
        os.environ,
        DATABASE_URL=url,
        DAGSTER_HOME=str(home),
        DAGSTER_PG_URL=dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        LANDING_DIR=str(landing),
    )
    daemon = str(Path(sys.executable).parent / "dagster-daemon")
    handle = log.open("w")
    # Its own session, so stopping it stops its code server and run workers too.
    return subprocess.Popen(
        [daemon, "run", "-w", "workspace.yaml"],
        cwd=project_root(),
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    """Stop the daemon, then whatever it started (code server, run workers) in its session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run(
    server: BenchServer,
    url: str,
    work: Path,
    waves: int = 8,
    deals_per_wave: int = 3,
    max_gap_seconds: float = 40.0,
    timeout_seconds: float = 600.0,
    seed: int = 11,
    neighbour_touchpoints: int = 0,
) -> dict:
    """Drop `waves` waves of won deals; each deal's seconds from landing to the mart.

    With `neighbour_touchpoints` > 0 the largest organization lands one touchpoints
    file of that many rows just before wave 2; the waves' deals then belong to other
    organizations only, and only they are timed."""
    if neighbour_touchpoints > 0 and waves < NEIGHBOUR_WAVE:
        raise ValueError(f"the neighbour lands before wave {NEIGHBOUR_WAVE}: waves ≥ 2")
    rng = random.Random(seed)
    neighbour = _largest_org(url) if neighbour_touchpoints > 0 else None
    partners = _active_partners(url, exclude_org=neighbour[0] if neighbour else None)
    if not partners:
        raise RuntimeError("no active partner in the marts: run the attribution stage first")
    dagster_url = server.fresh_database(DAGSTER_DB, migrated=False)
    log = work / "latency-daemon.log"
    # Wall-clock times for the breakdown (Dagster's storage and the ledger use them).
    to_wall = time.time() - time.monotonic()
    neighbour_landed: float | None = None
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp:
        home, landing = Path(tmp) / "home", Path(tmp) / "landing"
        home.mkdir()
        landing.mkdir()
        process = _start_daemon(url, dagster_url, home, landing, log)
        try:
            # Warm-up wave, not counted: code server start, first sensor ticks, dbt parse.
            print("  latency: warm-up wave …", flush=True)
            _wait_all(url, {d: time.monotonic() for d in drop_wave(landing, 0, partners, 1)},
                      timeout_seconds, process, log)  # fmt: skip
            dropped: dict[str, float] = {}
            seen: dict[str, float] = {}
            for wave in range(1, waves + 1):
                if neighbour and wave == NEIGHBOUR_WAVE:
                    write_neighbour_file(landing, *neighbour, neighbour_touchpoints)
                    neighbour_landed = time.time()
                    print(f"  latency: {neighbour_touchpoints:,} touchpoints of {neighbour[0]}"
                          " landed", flush=True)  # fmt: skip
                for deal_id in drop_wave(landing, wave, partners, deals_per_wave):
                    dropped[deal_id] = time.monotonic()
                    files[deal_id] = deals_file(wave)
                print(f"  latency: wave {wave}/{waves} dropped", flush=True)
                if wave < waves:
                    # The mart is polled during the gap too: a deal is seen when it lands
                    # in the mart, not when the last wave has been dropped.
                    gap = rng.uniform(5, max_gap_seconds)
                    _wait_all(url, dropped, timeout_seconds, process, log, seen, gap)
            _wait_all(url, dropped, timeout_seconds, process, log, seen)
        finally:
            _stop(process)
    latencies = [seen[d] - dropped[d] for d in dropped]
    runs = _runs(dagster_url)
    parts, timelines = breakdown(
        url,
        dagster_url,
        {d: t + to_wall for d, t in dropped.items()},
        {d: t + to_wall for d, t in seen.items()},
        files,
    )
    summary = latency_summary(latencies)
    result = {
        "deals": len(latencies),
        "waves": waves,
        "p50_s": round(summary["p50_ms"] / 1000, 1),
        "p95_s": round(summary["p95_ms"] / 1000, 1),
        "max_s": round(summary["max_ms"] / 1000, 1),
        "latencies_s": sorted(round(x, 1) for x in latencies),
        "latencies_by_wave": {
            str(w): sorted(
                round(seen[d] - dropped[d], 1) for d in dropped if files[d] == deals_file(w)
            )
            for w in range(1, waves + 1)
        },
        "runs": runs,
        "breakdown": parts,
    }
    if neighbour:
        result["neighbour"] = _neighbour_figures(
            url, neighbour[0], neighbour_touchpoints, neighbour_landed, timelines
        )
    server.drop_database(DAGSTER_DB)
    return result


def _wait_all(
    url: str,
    dropped: dict[str, float],
    timeout: float,
    process: subprocess.Popen,
    log: Path,
    seen: dict[str, float] | None = None,
    for_seconds: float | None = None,
) -> dict[str, float]:
    """Poll the mart until every dropped deal is visible (or, with `for_seconds`, for that
    long); `seen` gets when each deal was first seen."""
    seen = {} if seen is None else seen
    start = time.monotonic()
    deadline = start + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while len(seen) < len(dropped) or for_seconds is not None:
            if for_seconds is not None and time.monotonic() - start >= for_seconds:
                break
            if process.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited ({process.returncode}); see {log}")
            if time.monotonic() > deadline:
                missing = sorted(set(dropped) - set(seen))
                raise RuntimeError(f"not visible after {timeout:.0f} s: {missing[:5]}; see {log}")
            now = time.monotonic()
            unseen = [d for d in dropped if d not in seen]
            if unseen:
                for deal_id in _visible(conn, unseen):
                    seen[deal_id] = now
            time.sleep(POLL_SECONDS)
    return seen
