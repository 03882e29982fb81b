"""Dagster entry point (workspace.yaml): everything under defs/, plus the resources."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from orchestration.resources import platform_resources


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent.parent),
        dg.Definitions(resources=platform_resources()),
    )
