"""`attribution run`: the `daily_refresh` job, executed in-process — the same code the UI runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dagster as dg

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


def run_daily_refresh(platform_url: str, landing_dir: str) -> RefreshOutcome:
    os.environ.update(dagster_environment(platform_url))
    os.environ["LANDING_DIR"] = landing_dir
    from orchestration.definitions import defs

    definitions = defs()
    with dg.DagsterInstance.get() as instance:
        result = definitions.resolve_job_def("daily_refresh").execute_in_process(
            instance=instance, raise_on_error=False
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
                f"{event.step_key}: {event.event_specific_data.error.message.strip()}"
            )
    return outcome
