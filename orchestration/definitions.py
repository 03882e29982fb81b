"""Dagster entry point (workspace.yaml): everything under defs/, plus the resources."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.resources import platform_resources


def build_definitions(resources: Mapping[str, Any]) -> dg.Definitions:
    """Every definition under defs/ with these resources: the workspace's (from the
    environment) or a command's (from its settings, orchestration/run.py)."""
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent.parent),
        # Every run executes its steps in the run's own process (jobs, the UI's
        # "Materialize", automation): a subprocess per step paid Python start-up and
        # the code location's imports again for each step — a UI-launched
        # daily_refresh spent 119 s for 27 s of step work. The steps are serialized by
        # the database pool anyway (docs/orchestration.md, "What a run costs").
        dg.Definitions(resources=dict(resources), executor=dg.in_process_executor),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(platform_resources())
