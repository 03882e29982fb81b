"""`attribution run`: the `daily_refresh` job, executed in-process — the same code the UI runs."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import dagster as dg
import psutil

from orchestration.instance import dagster_environment


@dataclass
class RefreshOutcome:
    success: bool
    run_id: str
    failed_errors: list[str] = field(default_factory=list)
    failed_warnings: list[str] = field(default_factory=list)
    step_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_errors


# Runs executed in-process by `attribution run` carry who executes them, so the next
# `attribution run` can tell a run whose process was killed from one still going.
HOST_TAG = "attribution/host"
PID_TAG = "attribution/pid"
STARTED_TAG = "attribution/process_started"
UNFINISHED = (
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.NOT_STARTED,
)


def _process_tags() -> dict[str, str]:
    me = psutil.Process()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(me.pid),
        STARTED_TAG: f"{me.create_time():.2f}",
    }


def _process_alive(tags: dict[str, str]) -> bool:
    try:
        process = psutil.Process(int(tags[PID_TAG]))
        return f"{process.create_time():.2f}" == tags[STARTED_TAG]
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return False


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process runs of this host whose process is gone (killed).

    Such a run stays STARTED forever and keeps its slot in the pool
    `attribution_database` (limit 1), so every later run would wait for it.
    Returns the run ids released.
    """
    released = []
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=list(UNFINISHED), tags={HOST_TAG: socket.gethostname()})
    )
    for run in runs:
        if _process_alive(run.tags):
            continue
        instance.report_run_failed(
            run,
            f"the process executing this run (pid {run.tags.get(PID_TAG)}) is gone;"
            " marked failed by the next `attribution run`",
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def run_daily_refresh(platform_url: str, landing_dir: str) -> RefreshOutcome:
    os.environ.update(dagster_environment(platform_url))
    os.environ["LANDING_DIR"] = landing_dir
    from orchestration.definitions import defs

    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        for run_id in fail_abandoned_runs(instance):
            print(f"run {run_id} was abandoned by a killed process: marked failed")
        result = definitions.resolve_job_def("daily_refresh").execute_in_process(
            instance=instance, raise_on_error=False, tags=_process_tags()
        )
    outcome = RefreshOutcome(result.success, result.run_id)
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        label = f"{evaluation.asset_key.to_user_string()} · {evaluation.check_name}"
        if evaluation.severity == dg.AssetCheckSeverity.ERROR:
            outcome.failed_errors.append(label)
        else:
            outcome.failed_warnings.append(label)
    for event in result.all_events:
        if event.is_step_failure:
            outcome.step_failures.append(
                f"{event.step_key}: {condense(event.event_specific_data.error.message)}"
            )
    return outcome


def condense(message: str, limit: int = 600) -> str:
    """A step's error as one line: no exception class prefix, no boilerplate, bounded."""
    text = " ".join(message.split())
    for prefix in ("dagster._core.definitions.events.Failure: ", "Failure: "):
        text = text.removeprefix(prefix)
    text = text.split(" Check the stdout in the Dagster compute logs")[0] + (
        " — " + text.split("Errors parsed from dbt logs:")[1].strip()
        if "Errors parsed from dbt logs:" in text
        else ""
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"
