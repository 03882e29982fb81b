"""One execution path: every command that builds models runs the Dagster job
`daily_refresh`, on the instance the UI shows (docs/orchestration.md, "Command line").

`attribution demo` and `attribution run --full-refresh` leave their runs in the
Dagster instance of DAGSTER_HOME (storage: DAGSTER_PG_URL): materializations of
every mart, asset check evaluations, the full refresh as run config of the dbt
asset. A static guard keeps a second path (dbt called from the CLI or from
ingestion) from coming back. dbt gets its connection and the ingestion lock's key
only from `attribution-dbt`.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from orchestration.dbt_invocation import DBT_PROJECT_DIR, run_dbt
from orchestration.dbt_project import mart_tables
from orchestration.instance import instance_ref, open_instance
from orchestration.run import DBT_OP, JOB
from platform_core import locks
from platform_core.settings import Settings, project_root
from tests.conftest import create_database, drop_database
from tests.dbt_harness import ingest, stage
from tests.test_cli import attribution
from tests.test_org_quality_isolation import (  # noqa: F401 - `export` is a fixture
    BAD_DEAL,
    BAD_ORG,
    STEPS,
    add_bad_deal,
    assert_named_failure,
    day_files,
    export,
)

MART_ASSETS = {f"marts/{table}" for table in mart_tables()}
RUN_LINE = re.compile(r"^Dagster run ([0-9a-f-]{36}) of daily_refresh\b.*: (succeeded|FAILED)$")


@pytest.fixture(scope="module")
def dagster_storage(server_url: str) -> Iterator[str]:
    """A Dagster storage database of this module's own: its runs are only ours."""
    url = create_database(server_url, "test_one_path_dagster")
    yield url.replace("postgresql://", "postgresql+psycopg2://", 1)
    drop_database(server_url, "test_one_path_dagster")


@pytest.fixture
def deployment(fresh_db_url: str, dagster_storage: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": fresh_db_url,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DAGSTER_PG_URL": dagster_storage,
    }


def run_of(output: str) -> tuple[str, str]:
    """(run id, outcome) from the command's `Dagster run … of daily_refresh` line."""
    found = [m for line in output.splitlines() if (m := RUN_LINE.match(line))]
    assert len(found) == 1, output[-4000:]
    return found[0].group(1), found[0].group(2)


def recorded(env: dict[str, str], run_id: str) -> dict[str, object]:
    """What the instance of `env` holds of a run: the run, materialized assets, check
    evaluations and log messages of the dbt step — opened the way the commands open it."""
    ref = instance_ref(Settings.from_environment(env), env["DATABASE_URL"])
    with open_instance(ref) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None, f"no run {run_id} in the instance of {env['DAGSTER_HOME']}"

        def events(kind: dg.DagsterEventType) -> list:
            return [
                r.event_log_entry
                for r in instance.get_records_for_run(run_id, of_type=kind).records
            ]

        materialized = {
            e.dagster_event.asset_key.to_user_string()
            for e in events(dg.DagsterEventType.ASSET_MATERIALIZATION)
        }
        checks = [
            e.dagster_event.event_specific_data
            for e in events(dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        logs = [e.user_message for e in instance.all_logs(run_id) if e.step_key == DBT_OP]
    return {"run": run, "materialized": materialized, "checks": checks, "dbt_logs": logs}


def test_demo_builds_through_daily_refresh_in_the_instance(demo_deployment) -> None:
    """`attribution demo` (the session's demo: a smaller dataset, same code): a
    successful daily_refresh run in the instance, every mart materialized by it, its
    checks evaluated."""
    text = demo_deployment.output
    run_id, outcome = run_of(text)
    assert run_id == demo_deployment.run_id and outcome == "succeeded"
    for summary in ("raw layer:", "marts:", "attributed revenue by model", "demo finished in"):
        assert summary in text, text[-3000:]
    # What `attribution run` prints after its run (the same summary; tests/test_cli.py's
    # end-to-end run, in `make test-all`, checks it after a plain `attribution run`).
    for model in ("first_touch", "last_touch", "linear", "time_decay", "position_based"):
        assert f"\n  {model} " in text, text[-3000:]
    assert "attribution backlog: 0 pending" in text, text[-3000:]

    found = recorded(demo_deployment.env, run_id)
    run = found["run"]
    assert run.job_name == JOB and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.run_config.get("ops", {}).get(DBT_OP) is None  # incremental: no full refresh
    assert found["materialized"] >= MART_ASSETS, MART_ASSETS - found["materialized"]
    assert len(found["checks"]) > 20 and any(c.passed for c in found["checks"])
    assert any("dbt models: build" in m and "--full-refresh" not in m for m in found["dbt_logs"])


def test_full_refresh_builds_every_mart_and_names_the_failing_organization(
    deployment: dict[str, str],
    export: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """`attribution run --full-refresh` is a daily_refresh run whose run config asks
    the dbt asset for a full refresh (its dbt ran with --full-refresh): models first,
    then the data tests, so one organization's bad deal fails its checks — named
    with the organization and the deal — and every mart is built for every one."""
    url, landing = deployment["DATABASE_URL"], tmp_path / "landing"
    stage(day_files(export, *STEPS[0]), landing)
    ingest(url, landing)
    add_bad_deal(url)
    env = {**deployment, "LANDING_DIR": str(landing)}
    done = attribution("run", "--full-refresh", env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    run_id, outcome = run_of(done.stdout)
    assert outcome == "succeeded" and "(full refresh)" in done.stdout  # no step failed
    assert "error: daily_refresh failed" not in output

    found = recorded(env, run_id)
    run = found["run"]
    assert run.job_name == JOB and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.run_config["ops"][DBT_OP]["config"] == {"full_refresh": True}
    assert any("dbt models: build" in m and "--full-refresh" in m for m in found["dbt_logs"])
    assert found["materialized"] >= MART_ASSETS, MART_ASSETS - found["materialized"]

    failed = [
        c for c in found["checks"] if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert failed, "the bad deal failed no error-severity check"
    # The rule's one owner (docs/data-quality.md): great-expectations on the model
    # the marts read.
    assert ("intermediate/int_deals__current", "gx_deal_amount_non_negative") in {
        (c.asset_key.to_user_string(), c.check_name) for c in failed
    }, [(c.asset_key.to_user_string(), c.check_name) for c in failed]
    named = f"fails for 1 organization: {BAD_ORG} (1 row: {BAD_DEAL})"
    for evaluation in failed:
        assert_named_failure(evaluation)
        label = f"{evaluation.asset_key.to_user_string()} · {evaluation.check_name}"
        assert f"CHECK FAILED (error): {label}: {named}" in done.stderr, done.stderr[-3000:]
    with psycopg.connect(url) as conn:
        built = conn.execute(
            "select (select count(*) from marts.fct_deals where deal_id = %(deal)s),"
            " (select count(distinct org_id) from marts.partner_performance),"
            " (select count(distinct org_id) from marts.org_daily_metrics),"
            " (select count(distinct org_id) from raw.organizations)",
            {"deal": BAD_DEAL},
        ).fetchone()
    assert built[0] == 1 and built[1] == built[2] == built[3] == 4, built


# Whatever would start dbt itself: a second way to build, beside the Dagster job.
DBT_MODULES = ("dbt", "dagster_dbt", "orchestration.dbt_invocation", "orchestration.dbt_build_lock")
DBT_PROGRAMS = re.compile(r"(^|/)(attribution-)?dbt$")
# Executing a job or assets other than through orchestration.run.
EXECUTING = {"execute_in_process", "materialize", "materialize_to_memory"}


def second_paths(folder: Path) -> list[str]:
    """Where the Python files under `folder` import dbt, name its program or execute
    Dagster work."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        where = path.relative_to(folder.parent)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            found += [
                f"{where}:{node.lineno} imports {module}"
                for module in modules
                if any(module == m or module.startswith(m + ".") for m in DBT_MODULES)
            ]
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and DBT_PROGRAMS.search(text):
                found.append(f"{where}:{node.lineno} names the program {text!r}")
            name = getattr(node, "attr", None) or getattr(node, "id", None)
            if isinstance(node, ast.Attribute | ast.Name) and name in EXECUTING:
                found.append(f"{where}:{node.lineno} uses {name}")
    return found


@pytest.mark.parametrize("package", ["attribution", "ingestion"])
def test_no_second_way_to_build(package: str) -> None:
    """The command line and ingestion never start dbt nor execute Dagster work
    themselves: models are built by the job `daily_refresh` (orchestration/run.py)."""
    assert second_paths(project_root() / package) == []


def test_the_guard_sees_a_second_path(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import subprocess\n"
        "from orchestration.dbt_invocation import run_dbt\n"
        "subprocess.run(['.venv/bin/attribution-dbt', 'build'])\n"
        "job.execute_in_process()\n"
    )
    found = second_paths(tmp_path / "pkg")
    kinds = sorted(line.split(" ")[1] for line in found)
    assert kinds == ["imports", "imports", "names", "uses"], found


def test_dbt_takes_its_connection_and_lock_key_only_from_the_wrapper(
    db_url: str, tmp_path: Path
) -> None:
    """A plain `dbt` has no connection (profiles.yml has no defaults) and stops naming
    the variable; `attribution-dbt` derives it from DATABASE_URL and passes the
    ingestion lock's key of platform_core/locks.py to the models."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ATTRIBUTION_PG", "DBT_ENV_SECRET_")) and k != "DATABASE_URL"
    }
    plain = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "parse", "--project-dir", str(DBT_PROJECT_DIR)],
        env={
            **env,
            "DBT_TARGET_PATH": str(tmp_path / "plain"),
            "DBT_LOG_PATH": str(tmp_path / "plain"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",  # no .user.yml in the checkout
        },
        cwd=DBT_PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plain.returncode != 0
    assert "Env var required but not provided: 'ATTRIBUTION_PG" in plain.stdout + plain.stderr

    compiled = run_dbt(
        db_url, ["compile", "--quiet", "--inline", "{{ lock_ingestion() }}"], True, tmp_path
    )
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    assert f"hashtext('{locks.INGESTION.key}')" in compiled.stdout, compiled.stdout[-2000:]
    key_spellings = [
        p
        for p in (DBT_PROJECT_DIR / "macros").rglob("*.sql")
        if str(locks.INGESTION.key) in p.read_text()
    ]
    assert key_spellings == []  # dbt never spells the key itself
