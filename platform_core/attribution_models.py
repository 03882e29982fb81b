"""The attribution models' names, as the dbt project declares them.

dbt_project.yml's var `attribution_models` is the one declaration (name → credit
SQL); dbt builds from it, and ingestion checks commission plans against these
names, so a model added there is a valid plan model without another edit.
"""

from __future__ import annotations

from functools import cache

import yaml

from platform_core.settings import project_root


@cache
def attribution_model_names() -> tuple[str, ...]:
    """The models in their declared order (first_touch, last_touch, linear, ...)."""
    project = yaml.safe_load((project_root() / "dbt_project" / "dbt_project.yml").read_text())
    return tuple(project["vars"]["attribution_models"])
