"""`attribution commissions close | statements` end to end (docs/contract.md §8.4, §8.7).

The real console script against the session's PostgreSQL, with a Dagster instance
of the module's own (DAGSTER_HOME in a temporary folder, storage in a database of
its own), on a small built dataset: closes refused in one `error:` line, statements
whose files hold the marts' lines, safe to open in a spreadsheet and never written
outside the folder asked for; and (slow: each runs the Dagster job) closes that
succeed and leave a successful close_commission_period run in the instance.

The refusals run through `attribution.cli.main`, the function the console script
calls, in this process: in a process of its own each costs ~10 s of imports
(the command imports Dagster before it checks), one of them does so to show the
console script's own exit and stderr.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from attribution.cli import main
from commissions import Period
from orchestration.defs.commissions.closing import CLOSE_JOB, COMMISSION_MARTS, LEDGER_KEYS
from orchestration.instance import instance_ref, open_instance
from platform_core.settings import Settings
from tests.commission_helpers import (
    build_commissions,
    build_lines,
    close,
    deal,
    land,
    lines,
    org,
    partner,
    plan,
    statements,
    touch,
)
from tests.conftest import create_database, drop_database

CONSOLE_SCRIPT = Path(sys.executable).with_name("attribution")
# Display names a spreadsheet would run as formulas (ids cannot start so: §3.2).
NAMES = {
    "p_eq": '=HYPERLINK("http://x","y")',
    "p_plus": "+1 555",
    "p_minus": "-5",
    "p_at": "@SUM(A1)",
}
# ORG_X and its partners are no safe file names. ORG_A and ORG_X close in the fast
# tests (close_period), ORG_C and ORG_D through the command line (slow).
ORG_A, ORG_X, ORG_C, ORG_D = "org_a", "../x", "org_c", "org_d"
X_PARTNERS = ("a/b", "..")


def attribution(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
    )


def one_error_line(code: int, stdout: str, stderr: str) -> str:
    """A refusal: a non-zero exit, nothing on stdout, one `error:` line on stderr."""
    assert code != 0, stdout + stderr
    assert stdout == "" and stderr.count("\n") == 1, stdout + stderr
    assert stderr.startswith("error: "), stderr
    return stderr


@dataclass
class Deployment:
    env: dict[str, str]
    url: str
    dbt_tmp: Path
    landing: Path


@pytest.fixture(scope="module")
def deployment(
    db_url: str, server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Four organizations built (10 % linear plans, holding 0, deals won in March
    2026): org_a (2,000.00 over four partners with formula-like names: 50.00 each),
    ../x (100.00 over partners a/b and ..: 5.00 each), org_c and org_d (100.00 to one
    partner: 10.00)."""
    work = tmp_path_factory.mktemp("commissions_cli")
    storage = create_database(server_url, "test_commissions_cli_dagster")
    env = {k: v for k, v in os.environ.items() if k != "LANDING_DIR"}
    env.update(
        DATABASE_URL=db_url,
        DAGSTER_HOME=str(work / "dagster_home"),
        DAGSTER_PG_URL=storage.replace("postgresql://", "postgresql+psycopg2://", 1),
    )
    a_partners = list(NAMES)
    touches = [touch(f"t_a_{p}", "a1", p, ORG_A, f"2026-03-0{i + 1}T09:00:00Z")
               for i, p in enumerate(a_partners)]  # fmt: skip
    touches += [touch(f"t_x_{i}", "x1", p, ORG_X) for i, p in enumerate(X_PARTNERS)]
    touches += [touch("t_c", "c1", "pc1", ORG_C), touch("t_d", "d1", "pd1", ORG_D)]
    landing = work / "landing"
    land(
        db_url,
        landing,
        "cli",
        organizations=[org(o) for o in (ORG_A, ORG_X, ORG_C, ORG_D)],
        partners=[partner(p, ORG_A, NAMES[p]) for p in a_partners]
        + [partner(p, ORG_X) for p in X_PARTNERS]
        + [partner("pc1", ORG_C), partner("pd1", ORG_D)],
        deals=[
            deal("a1", ORG_A, "2026-03-10T12:00:00Z", "2000.00"),
            deal("x1", ORG_X, "2026-03-15T12:00:00Z", "100.00"),
            deal("c1", ORG_C, "2026-03-20T12:00:00Z", "100.00"),
            deal("d1", ORG_D, "2026-03-21T12:00:00Z", "100.00"),
        ],
        touchpoints=touches,
        commission_plans=[plan(f"plan_{o[-1]}", o) for o in (ORG_A, ORG_X, ORG_C, ORG_D)],
    )
    dbt_tmp = work / "dbt"
    build_lines(db_url, dbt_tmp)
    yield Deployment(env, db_url, dbt_tmp, landing)
    drop_database(server_url, "test_commissions_cli_dagster")


@pytest.fixture(scope="module")
def closed_march(deployment: Deployment) -> Deployment:
    """March closed for org_a and ../x by the real close (not the job: fast)."""
    closed = close(deployment.url, "2026-03", [ORG_A, ORG_X])
    assert [(c.org_id, c.line_count) for c in closed] == [(ORG_X, 2), (ORG_A, 4)]
    return deployment


@pytest.fixture
def cli_env(closed_march: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """The deployment's variables in this process, for `main` in-process."""
    for key in ("DATABASE_URL", "DAGSTER_HOME", "DAGSTER_PG_URL"):
        monkeypatch.setenv(key, closed_march.env[key])
    monkeypatch.delenv("LANDING_DIR", raising=False)
    return closed_march


def refusal_cases() -> dict[str, tuple[list[str], str]]:
    current = str(Period.of(datetime.now(UTC).date()))
    return {
        "month not ended": (["--period", current, "--org", ORG_C], f"{current} has not ended"),
        "month already closed": (
            ["--period", "2026-03", "--org", ORG_A],
            "2026-03 is already closed for org_a",
        ),
        "earlier month, closed with a later one": (
            ["--period", "2026-02", "--org", ORG_A],
            "2026-02 is already closed for org_a (closed up to 2026-03)",
        ),
        "one of several already closed": (
            ["--period", "2026-03", "--org", ORG_C, "--org", ORG_X],
            "2026-03 is already closed for ../x",
        ),
        "unknown organization": (
            ["--period", "2026-03", "--org", ORG_C, "--org", "nope"],
            "unknown organization 'nope'",
        ),
        "month 13": (["--period", "2026-13", "--org", ORG_C], "expected a month as YYYY-MM"),
        "month in words": (["--period", "April", "--org", ORG_C], "expected a month as YYYY-MM"),
    }


def closings(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("select * from commissions.closings order by closing_id").fetchall()


@pytest.mark.parametrize("case", list(refusal_cases()))
def test_close_refusals_are_one_error_line(
    cli_env: Deployment, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """Refused before anything runs: one `error:` line, exit 2, nothing recorded."""
    args, says = refusal_cases()[case]
    before = closings(cli_env.url)
    code = main(["commissions", "close", *args])
    out = capsys.readouterr()
    assert code == 2 and says in one_error_line(code, out.out, out.err)
    assert closings(cli_env.url) == before


def test_console_script_refusal(closed_march: Deployment) -> None:
    """The console script itself: a month already closed, refused in one line, exit 2."""
    before = closings(closed_march.url)
    done = attribution("commissions", "close", "--period", "2026-03", "--org", ORG_X,
                       env=closed_march.env)  # fmt: skip
    assert done.returncode == 2
    assert "2026-03 is already closed for ../x" in one_error_line(
        done.returncode, done.stdout, done.stderr
    )
    assert closings(closed_march.url) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--org", ORG_C, "--all"], "not allowed with argument"),
        ([], "one of the arguments --org --all is required"),
    ],
)
def test_org_and_all_are_a_usage_error(
    cli_env: Deployment, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["commissions", "close", "--period", "2026-03", *args])
    assert exited.value.code == 2 and says in capsys.readouterr().err


@pytest.fixture(scope="module")
def closed_org_c(closed_march: Deployment) -> subprocess.CompletedProcess[str]:
    return attribution("commissions", "close", "--period", "2026-03", "--org", ORG_C,
                       env=closed_march.env)  # fmt: skip


@pytest.fixture(scope="module")
def closed_all(
    closed_march: Deployment, closed_org_c: subprocess.CompletedProcess[str]
) -> subprocess.CompletedProcess[str]:
    assert closed_org_c.returncode == 0
    return attribution("commissions", "close", "--period", "2026-03", "--all", env=closed_march.env)


RUN_LINE = re.compile(rf"^Dagster run ([0-9a-f-]{{36}}) of {CLOSE_JOB}: succeeded$", re.M)


@pytest.mark.slow
def test_close_one_organization(
    closed_march: Deployment, closed_org_c: subprocess.CompletedProcess[str]
) -> None:
    """`--org org_c`: its line and the run's; the job rebuilt the marts, so org_c's
    lines read closed, org_d's (never closed) still open."""
    done = closed_org_c
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "org_c: closed 2026-03: 1 lines, USD 10.00\n" in done.stdout
    assert RUN_LINE.search(done.stdout), done.stdout
    status = {(key[0], line["period_status"]) for key, line in lines(closed_march.url).items()}
    assert {(ORG_C, "closed"), (ORG_D, "open")} <= status
    assert (ORG_C, "open") not in status


@pytest.mark.slow
def test_all_closes_every_organization_still_open_then_refuses(
    closed_march: Deployment, closed_all: subprocess.CompletedProcess[str]
) -> None:
    done = closed_all
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "org_d: closed 2026-03: 1 lines, USD 10.00\n" in done.stdout
    for already in (ORG_A, ORG_X, ORG_C):  # closed before: skipped, not closed twice
        assert f"{already}:" not in done.stdout
    closed = {(row[1], row[3]) for row in closings(closed_march.url)}
    assert closed == {(o, Period.parse("2026-03").first_day) for o in (ORG_A, ORG_X, ORG_C, ORG_D)}
    assert len(closings(closed_march.url)) == 4
    again = attribution(
        "commissions", "close", "--period", "2026-03", "--all", env=closed_march.env
    )
    assert again.returncode == 2
    refused = one_error_line(again.returncode, again.stdout, again.stderr)
    assert "2026-03 is already closed for every organization" in refused


@pytest.mark.slow
def test_each_close_is_a_successful_run_of_the_job_in_the_instance(
    closed_march: Deployment,
    closed_org_c: subprocess.CompletedProcess[str],
    closed_all: subprocess.CompletedProcess[str],
) -> None:
    """The runs the UI shows: one successful close_commission_period run per close that
    ran (refusals start none), with the period and organizations as run config; each
    materialized the ledger (lines recorded as metadata) and the two commission marts."""
    recorded = {
        RUN_LINE.search(done.stdout).group(1): count  # type: ignore[union-attr]
        for done, count in ((closed_org_c, 1), (closed_all, 1))
    }
    ref = instance_ref(Settings.from_environment(closed_march.env), closed_march.url)
    with open_instance(ref) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name=CLOSE_JOB))
        assert {run.run_id for run in runs} == set(recorded)
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
        configs = [run.run_config["ops"]["commission_ledger"]["config"] for run in runs]
        assert sorted((c["period"], tuple(c["org_ids"])) for c in configs) == [
            ("2026-03", ()),
            ("2026-03", (ORG_C,)),
        ]
        by_run: dict[str, set[str]] = {run_id: set() for run_id in recorded}
        for key in (*LEDGER_KEYS, *COMMISSION_MARTS):
            for record in instance.fetch_materializations(key, limit=10).records:
                entry = record.event_log_entry
                by_run[entry.run_id].add(key.to_user_string())
                if key in LEDGER_KEYS:
                    metadata = entry.asset_materialization.metadata
                    assert metadata["lines_recorded"].value == recorded[entry.run_id]
    expected = {k.to_user_string() for k in (*LEDGER_KEYS, *COMMISSION_MARTS)}
    assert by_run == {run_id: expected for run_id in recorded}


@pytest.fixture(scope="module")
def adjusted(closed_march: Deployment) -> Deployment:
    """After March closed for org_a, its plan drops to 7.5 % retroactively (a new
    version): each of its partners gets an adjustment of 37.50 − 50.00 = −12.50 in April."""
    land(closed_march.url, closed_march.landing, "rate_cut",
         commission_plans=[plan("plan_a", ORG_A, rate="0.075", updated_at="2026-04-02T00:00:00Z")])  # fmt: skip
    build_commissions(closed_march.url, closed_march.dbt_tmp)
    return closed_march


def read_statements(out: Path) -> dict[Path, list[dict[str, str]]]:
    found = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                found[path.relative_to(out)] = list(csv.DictReader(handle))
    return found


def assert_files_match_the_marts(url: str, period: str, files: dict[Path, list[dict]]) -> None:
    """Each file: the lines of one (org, partner) in the month as in fct_commission_lines,
    then a total row equal to partner_statements' total_usd."""
    mart_lines = {k: v for k, v in lines(url).items() if k[1] == period}
    totals = {k[:2]: v["total_usd"] for k, v in statements(url).items() if k[2] == period}
    seen = set()
    for rows in files.values():
        *body, total = rows
        assert total["line_type"] == "total"
        keys = {(r["org_id"], r["partner_id"]) for r in body}
        assert len(keys) == 1, keys
        for row in body:
            key = (row["org_id"], period, row["deal_id"], row["partner_id"], row["line_type"])
            assert Decimal(row["amount_usd"]) == mart_lines[key]["amount_usd"], key
            assert row["period"] == f"{period}-01" and row["plan_id"] == mart_lines[key]["plan_id"]
            seen.add(key)
        assert Decimal(total["amount_usd"]) == totals[keys.pop()]
    assert seen == set(mart_lines)  # every line of the month, each in one file


def test_statements_hold_the_marts_lines_spreadsheet_safe(
    adjusted: Deployment, tmp_path: Path
) -> None:
    """April: org_a's four adjustments, one file per partner, names neutralised with one
    quote, amounts as numbers."""
    out = tmp_path / "out"
    done = attribution("commissions", "statements", "--period", "2026-04", "--out", str(out),
                       env=adjusted.env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"4 statements (4 lines, 1 organizations) in {out}" in done.stdout
    files = read_statements(out)
    assert set(files) == {Path(ORG_A, f"{p}.csv") for p in NAMES}
    assert_files_match_the_marts(adjusted.url, "2026-04", files)
    for partner_id, name in NAMES.items():
        line, total = files[Path(ORG_A, f"{partner_id}.csv")]
        assert line["partner_name"] == "'" + name  # one quote: a formula never runs
        assert (line["line_type"], line["period_status"]) == ("adjustment", "open")
        assert line["amount_usd"] == "-12.50" and total["amount_usd"] == "-12.50"
    raw = (out / ORG_A / "p_minus.csv").read_bytes().decode("utf-8")
    assert ",'-5," in raw and ",-12.50\r\n" in raw and "'-12.50" not in raw


def test_statements_stay_inside_the_folder(adjusted: Deployment, tmp_path: Path) -> None:
    """March: ../x's partners a/b and .. get their files inside DIR, under escaped names."""
    out = tmp_path / "deep" / "out"
    done = attribution("commissions", "statements", "--period", "2026-03", "--out", str(out),
                       env=adjusted.env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    everywhere = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert everywhere == {p for p in out.rglob("*") if p.is_file()}  # nothing outside DIR
    files = read_statements(out)
    x_files = {path for path, rows in files.items() if rows[0]["org_id"] == ORG_X}
    assert len(x_files) == 2 and len(files) == 8  # 4 + 2 + org_c's + org_d's
    for path in files:
        assert (out / path).resolve().is_relative_to(out.resolve())
        assert ".." not in path.parts and len(path.parts) == 2
    assert {rows[0]["partner_id"] for path, rows in files.items() if path in x_files} == set(
        X_PARTNERS
    )
    assert_files_match_the_marts(adjusted.url, "2026-03", files)
    for rows in files.values():
        if rows[0]["org_id"] in (ORG_A, ORG_X):
            assert {r["period_status"] for r in rows[:-1]} == {"closed"}
