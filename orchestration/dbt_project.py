"""The dbt project as Dagster sees it: one translator for keys, groups and owners,
and the explanation of a failed data test (which organizations, which ids)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import psycopg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
)
from packaging import version
from psycopg import sql

from orchestration.dbt_invocation import DBT_PROJECT_DIR, dbt_executable
from platform_core.database import DatabaseError, connect

if TYPE_CHECKING:
    from orchestration.quality import FailureSummary

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# dbt folder → Dagster group.
GROUPS = {"staging": "staging", "intermediate": "attribution", "marts": "marts"}
DEFAULT_OWNER = "team:data-platform"


class AttributionTranslator(DagsterDbtTranslator):
    """Keys are <schema>/<name> (sources: raw/<table>, so they connect to the
    ingestion assets, and commissions/<table>, the close job's); groups follow the dbt folder; owners come from `meta.owner`;
    dbt tests are asset checks that never block."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        # A source's schema: raw/<table> for the CRM tables (the ingestion assets),
        # commissions/<table> for the ledger (the close job's assets).
        return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "commissions" if dbt_resource_props["schema"] == "commissions" else "ingestion"
        folder = dbt_resource_props["fqn"][1] if len(dbt_resource_props["fqn"]) > 2 else None
        return GROUPS.get(folder or "", "attribution")

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """The model's dbt description (a source table's, else its source's), without
        the "Raw SQL" block dagster-dbt appends: a description says what the asset
        holds; the SQL is in the dbt project and its docs (`make docs`)."""
        description = dbt_resource_props.get("description") or (
            dbt_resource_props.get("source_description")
            if dbt_resource_props["resource_type"] == "source"
            else None
        )
        if description and description.strip():
            return description.strip()
        return f"dbt {dbt_resource_props['resource_type']} {dbt_resource_props['name']}"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        owner = (dbt_resource_props.get("config", {}).get("meta") or {}).get("owner")
        return [owner or DEFAULT_OWNER]

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        """dagster-dbt makes error-severity tests blocking: one failure would skip every
        asset and check after the dbt step, for all organizations. A data test reports
        on the data (its check fails, the run exits 1); it never holds the rest back."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        return spec._replace(blocking=False) if spec is not None else None


TRANSLATOR = AttributionTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


class AttributionDbt(DbtCliResource):
    """dagster-dbt's dbt CLI resource, without the in-process dbt adapter.

    Before each invocation dagster-dbt loads the dbt profile in *this* process to
    build an adapter, which it uses only to fetch column and row-count metadata
    (not used here). The profile's connection variables exist only inside
    `attribution-dbt`, so that load would fail and log a traceback on every run;
    skipping it also saves loading the project twice."""

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        """dbt's version, which dagster-dbt learns by running `attribution-dbt --version`
        before a run's first invocation: a process that imports dbt (3–5 s) for a
        number this process can read. `attribution-dbt` runs the dbt-core installed
        here, so it is that package's version."""
        return version.parse(importlib.metadata.version("dbt-core"))


def manifest_path() -> Path:
    """target/manifest.json, parsed anew when a model, macro or YAML file is newer.

    The parse writes into a folder of this process and then replaces the manifest in
    one step: processes that load the definitions at once (a test session's
    workers, the webserver and the daemon) never read half a manifest."""
    manifest = DBT_PROJECT.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < _newest_source():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=manifest.parent))
        try:
            dbt_cli().cli(["parse", "--quiet"], target_path=scratch).wait()
            os.replace(scratch / "manifest.json", manifest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _newest_source() -> float:
    """When a model, macro or YAML file of the project last changed. dbt's own folders
    (target/, logs/) are not walked: every dbt invocation of a run leaves its
    compiled SQL in target/, tens of thousands of files on a working machine."""
    newest = 0.0
    for folder, subfolders, files in os.walk(DBT_PROJECT_DIR):
        if folder == str(DBT_PROJECT_DIR):
            subfolders[:] = [name for name in subfolders if name not in ("target", "logs")]
        for name in files:
            if name.endswith((".sql", ".yml")):
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
    return newest


def dbt_cli() -> AttributionDbt:
    return AttributionDbt(project_dir=DBT_PROJECT, dbt_executable=dbt_executable())


# Failed data tests, explained: which organizations fail and with which ids.


def explain_test_failures(
    url: str, manifest: Mapping[str, Any], results: list[Mapping[str, Any]]
) -> dict[str, FailureSummary]:
    """For each failed or errored test in dbt's `run_results` entries (unique_id →)
    the organizations its failing rows belong to, with sample ids.

    The failing rows come from the test's compiled SQL (run again, read-only and
    under a time limit, only for tests that failed).
    """
    # great-expectations comes with quality.py: imported only when a test failed.
    from orchestration.quality import FailureSummary, summarize_failures

    failed = [r for r in results if r.get("status") in ("fail", "error", "warn")]
    if not failed:
        return {}
    try:
        conn = connect(url)
    except DatabaseError as exc:  # the tests' own results still say what failed
        return {r["unique_id"]: FailureSummary(error=str(exc)) for r in failed}
    summaries = {}
    with conn:
        for result in failed:
            unique_id = result["unique_id"]
            compiled = (result.get("compiled_code") or "").strip().rstrip(";")
            node = manifest["nodes"].get(unique_id, {})
            if result.get("status") == "error":
                message = " ".join((result.get("message") or "test errored").split())[:500]
                summaries[unique_id] = FailureSummary(error=message)
            elif compiled:
                columns = returned_columns(conn, compiled)
                query = failing_rows_query(manifest, node, compiled, columns)
                summaries[unique_id] = summarize_failures(conn, query)
            else:
                summaries[unique_id] = FailureSummary(error="no compiled SQL for this test")
    return summaries


def failing_rows_query(
    manifest: Mapping[str, Any], node: Mapping[str, Any], compiled: str, columns: list[str]
) -> sql.Composable:
    """The test's failing rows with an org_id: the test's own query when it returns
    org_id (our singular tests do), else the tested model's rows behind them.

    `columns` are the columns the test's query returns. Generic tests return the
    tested column's values first (`unique`, `relationships`, `accepted_values`) or
    its null rows (`not_null`); the model's rows with those values name the
    organizations. The SQL is dbt's compiled project code, never data.
    """
    failures = sql.SQL(compiled)
    metadata = node.get("test_metadata") or {}
    kwargs = metadata.get("kwargs") or {}
    model = manifest["nodes"].get(node.get("attached_node") or "", {})
    if "org_id" in columns or not columns or not model.get("alias"):
        return failures
    relation = sql.Identifier(model["schema"], model["alias"])
    column = kwargs.get("column_name") or node.get("column_name")
    if metadata.get("name") == "not_null" and column:
        return sql.SQL(
            "select {label} as failing_row, m.org_id from {model} as m where m.{column} is null"
        ).format(
            label=sql.Literal(f"{column} is null"), model=relation, column=sql.Identifier(column)
        )
    if column:
        return sql.SQL(
            "select m.{column}, m.org_id from {model} as m"
            " where m.{column} in (select f.{first} from ({failures}) as f)"
        ).format(
            column=sql.Identifier(column),
            model=relation,
            first=sql.Identifier(columns[0]),
            failures=failures,
        )
    keys = kwargs.get("columns")
    if isinstance(keys, list) and keys and set(keys) <= set(columns):  # unique_combination
        m_keys = sql.SQL(", ").join(sql.Identifier("m", k) for k in keys)
        return sql.SQL(
            "select concat_ws(' / ', {m_keys}) as failing_key, m.org_id from {model} as m"
            " where ({m_keys}) in (select {keys} from ({failures}) as f)"
        ).format(
            m_keys=m_keys,
            keys=sql.SQL(", ").join(sql.Identifier(k) for k in keys),
            model=relation,
            failures=failures,
        )
    return failures


def returned_columns(conn: psycopg.Connection, compiled: str) -> list[str]:
    """The columns a test's query returns (planned, not run)."""
    try:
        with conn.transaction():
            conn.execute("set transaction read only")
            cursor = conn.execute(
                sql.SQL("select * from ({}) as failures limit 0").format(sql.SQL(compiled))
            )
            return [c.name for c in cursor.description or []]
    except psycopg.Error:
        return []


def mart_tables(manifest: Mapping[str, Any] | None = None) -> list[str]:
    """The marts' table names, as the dbt project declares them (models under models/marts/).

    The one list of marts: the summaries, tests and benchmarks read it from here."""
    if manifest is None:
        manifest = json.loads(manifest_path().read_text())
    return sorted(
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1:2] == ["marts"]
    )


def failed_test_lines(url: str, target: Path = DBT_PROJECT_DIR / "target") -> list[str]:
    """The last dbt invocation's failed data tests, each with the organizations it
    fails for (read from dbt's run_results.json and manifest.json in `target`)."""
    try:
        results = json.loads((target / "run_results.json").read_text())["results"]
        manifest = json.loads((target / "manifest.json").read_text())
    except (OSError, ValueError, KeyError):
        return []
    failed = [
        r
        for r in results
        if r.get("status") in ("fail", "error") and r.get("unique_id", "").startswith("test.")
    ]
    if not failed:
        return []
    summaries = explain_test_failures(url, manifest, failed)
    nodes = manifest.get("nodes", {})
    lines = []
    for result in failed:
        unique_id = result["unique_id"]
        name = nodes.get(unique_id, {}).get("name", unique_id)
        lines.append(f"{name}: {summaries[unique_id].text()}")
    return lines
