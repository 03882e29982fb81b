"""dbt's saved parse follows the connection across target folders, and a changed
model is still parsed again (orchestration/dbt_invocation.py, `PartialParse`).

Every Dagster dbt invocation, and every test build, has a target folder of its
own: without the saved parse each paid a full parse of the project. The project
here is a copy, so the model it changes is no one else's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from orchestration.dbt_invocation import DBT_PROJECT_DIR, PARTIAL_PARSE_FILE, dbt_executable

# `parse` never connects: any URL names the connection the parse is for.
URL = "postgresql://postgres@127.0.0.1:1/partial_parse_test"
MODEL = Path("models", "marts", "dim_organizations.sql")


def parse(project: Path, target: Path) -> str:
    """`attribution-dbt parse` of `project` into `target`; returns dbt's log."""
    done = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(project)],
        env={
            **os.environ,
            "DATABASE_URL": URL,
            "DBT_PROFILES_DIR": str(project),
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(target),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return (target / "dbt.log").read_text()


def test_a_new_target_folder_starts_from_the_saved_parse_and_sees_a_changed_model(
    tmp_path: Path,
) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))

    first = parse(project, tmp_path / "first")
    assert "Unable to do partial parsing because saved manifest not found" in first
    (kept,) = (project / "target" / "partial_parse").glob("*.msgpack")
    assert kept.read_bytes() == (tmp_path / "first" / PARTIAL_PARSE_FILE).read_bytes()

    # A model changes; the next invocation, in a folder of its own, parses that file
    # again and nothing else.
    with open(project / MODEL, "a") as model:
        model.write("\n-- changed after the first parse\n")
    second = parse(project, tmp_path / "second")
    assert "Partial parsing enabled: 0 files deleted, 0 files added, 1 files changed" in second
    manifest = json.loads((tmp_path / "second" / "manifest.json").read_text())
    (node,) = [n for n in manifest["nodes"].values() if n["original_file_path"] == str(MODEL)]
    assert node["raw_code"].rstrip().endswith("-- changed after the first parse")
