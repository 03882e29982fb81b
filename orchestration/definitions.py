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
        dg.Definitions(resources=dict(resources)),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(platform_resources())
