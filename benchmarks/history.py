"""History stage: the same next day on top of 1 month and of 6 months of a preset.

docs/contract.md §7: a daily incremental run on top of 6 months of history costs at
most 1.25× what it costs on top of 1 month — run time and rows written, per model.
A day's run must cost what the day changed, not what history holds.

One generated dataset of 6 months plus the next day (cached like every dataset);
two fresh databases: "6 months" ingests all of it, "1 month" only the last month
of activity (deals, touchpoints) with every reference file (organizations,
partners, commission plans, exchange rates: see datasets.last_days). Each gets a
full refresh; then the same next-day folder (one folder, so the same bytes) is
ingested into both and a plain `dbt run` (models only, no data tests: the
attribution stage's incremental run) is timed on each, back to back.

Per model times below `NOISE_FLOOR_S` count as that floor. On this shared 2-core
machine the small tables that do the same work on both bases (exchange rates,
organizations, commission plans: the same rows) took 0.3–0.6 s, up to 0.15 s
apart between the two bases, and views 0.05–0.25 s: without the floor that alone
reads as 1.5–3×. Under a load average far above the core count even a model of
about a second can differ by half a second: such figures want a second run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.datasets import dataset, digest, last_days
from benchmarks.refresh import _ingest, dbt_invocation, layer_of, mart_rows
from benchmarks.server import BenchServer

LONG_MONTHS = 6
SHORT_MONTHS = 1
TARGET = 1.25  # docs/contract.md §7
NOISE_FLOOR_S = 0.5
BASES = ("one_month", "six_months")


def time_ratio(short: float, long: float) -> float:
    """Seconds on the long history over the short one, each at least the noise floor."""
    return round(max(long, NOISE_FLOOR_S) / max(short, NOISE_FLOOR_S), 2)


def rows_ratio(short: int | None, long: int | None) -> float | None:
    """Rows written on the long history over the short one (views write none: None);
    counts below 1 count as 1, so a model that writes nothing on either reads 1.0."""
    if short is None or long is None:
        return None
    return round(max(long, 1) / max(short, 1), 2)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _settle(url: str) -> None:
    """Untimed, after the full refresh: what autovacuum does to a production database
    in its first hours (statistics, visibility map, hint bits), so the timed run does
    not pay a one-off first touch of history that grows with the history."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum (analyze)")


def _checkpoint(url: str) -> None:
    """Dirty pages of the other base's preparation written now, not during a timed run."""
    # On a shared server where we may not checkpoint, the timing is only a bit noisier.
    with (
        psycopg.connect(url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("checkpoint")


def compare(short: dict, long: dict) -> list[dict]:
    """Per model (hooks left out): seconds and rows on each base and their ratios,
    worst first."""
    nodes = {b: {n["node"]: n for n in run["nodes"] if n["layer"] != "hooks"}
             for b, run in (("short", short), ("long", long))}  # fmt: skip
    rows = []
    for model in dict.fromkeys([*nodes["short"], *nodes["long"]]):
        a, b = nodes["short"].get(model, {}), nodes["long"].get(model, {})
        seconds = a.get("seconds") or 0.0, b.get("seconds") or 0.0
        ratio = time_ratio(*seconds)
        written = rows_ratio(a.get("rows"), b.get("rows"))
        rows.append(
            {
                "model": model,
                "layer": layer_of(model),
                "seconds_1": seconds[0],
                "seconds_6": seconds[1],
                "ratio": ratio,
                "rows_1": a.get("rows"),
                "rows_6": b.get("rows"),
                "rows_ratio": written,
                "met": ratio <= TARGET and (written is None or written <= TARGET),
            }
        )
    return sorted(rows, key=lambda r: (-r["ratio"], -(r["rows_ratio"] or 0.0), r["model"]))


def run(
    server: BenchServer,
    work: Path,
    preset: str,
    seed: int,
    orgs: int | None = None,
    days: int | None = None,
) -> dict:
    """The whole stage; `orgs` and `days` shrink it (`days` of long history, a sixth of it short)."""
    ds = dataset(work, preset, LONG_MONTHS, seed, orgs, days)
    long_days = ds.days
    short_days = max(1, long_days * SHORT_MONTHS // LONG_MONTHS)
    folders = {"one_month": last_days(ds, short_days), "six_months": ds.month}
    history_days = {"one_month": short_days, "six_months": long_days}
    urls = {base: server.fresh_database(f"bench_history_{base}") for base in BASES}
    bases: dict[str, dict] = {}
    for base in BASES:
        url = urls[base]
        print(f"[history] {preset}, {base}: ingest {history_days[base]} days …", flush=True)
        ingest = _ingest(url, folders[base])
        print(f"[history] {preset}, {base}: dbt run --full-refresh …", flush=True)
        full = dbt_invocation(url, ["run", "--full-refresh"])
        _settle(url)
        bases[base] = {
            "history_days": history_days[base],
            "ingest_history": ingest,
            "full_refresh_wall_seconds": full["wall_seconds"],
            "full_refresh_model_seconds": full["model_seconds"],
        }
    next_day_digest = digest(ds.next_day)
    for base in BASES:
        bases[base]["ingest_next_day"] = _ingest(urls[base], ds.next_day)
    if (
        bases["one_month"]["ingest_next_day"]["rows"]
        != bases["six_months"]["ingest_next_day"]["rows"]
    ):
        raise RuntimeError("the next day loaded differently on the two bases")
    # A profile of the timed runs: every statement slower than this many ms goes to
    # the server's log (work/pg/server.log on the embedded server).
    profile_ms = os.environ.get("BENCH_HISTORY_PROFILE_MS")
    for base in BASES:
        if profile_ms:
            with psycopg.connect(urls[base], autocommit=True) as conn:
                database = sql.Identifier(f"bench_history_{base}")
                for setting, value in (
                    ("log_min_duration_statement", int(profile_ms)),
                    # and each such statement's plan (superuser: the embedded server)
                    ("session_preload_libraries", "auto_explain"),
                    ("auto_explain.log_min_duration", int(profile_ms)),
                ):
                    conn.execute(
                        sql.SQL("alter database {} set {} = {}").format(
                            database, sql.SQL(setting), sql.Literal(value)
                        )
                    )
    for base in BASES:
        _checkpoint(urls[base])
        bases[base]["load_average"] = _load()
        print(f"[history] {preset}, {base}: next day, dbt run (incremental) …", flush=True)
        bases[base]["incremental"] = dbt_invocation(urls[base], ["run"])
        bases[base]["mart_rows"] = mart_rows(urls[base])
    for base in BASES:
        server.drop_database(f"bench_history_{base}")

    next_day = {
        "date": ds.last_day.isoformat(),
        "files": len([p for p in ds.next_day.iterdir() if not p.name.startswith(".")]),
        "sha256": next_day_digest,
    }
    return summarize({"preset": preset, "seed": seed, "orgs": orgs, "next_day": next_day}, bases)


def summarize(about: dict, bases: dict) -> dict:
    """The ratios from the two bases' figures (also re-derives a stored result's ratios)."""
    short, long = bases["one_month"]["incremental"], bases["six_months"]["incremental"]
    models = compare(short, long)
    run_ratio = round(long["wall_seconds"] / short["wall_seconds"], 2)
    return {
        **about,
        "target": TARGET,
        "noise_floor_s": NOISE_FLOOR_S,
        "bases": bases,
        "run_ratio": run_ratio,
        "models_ratio": round(long["model_seconds"] / short["model_seconds"], 2)
        if short["model_seconds"]
        else None,
        "per_model": {m["model"]: m["ratio"] for m in models},
        "rows_ratio": {m["model"]: m["rows_ratio"] for m in models},
        "models": models,
        "met": run_ratio <= TARGET and all(m["met"] for m in models),
    }


def table_lines(h: dict) -> list[str]:
    """The ratio table printed to stdout, worst model first."""
    one, six = h["bases"]["one_month"], h["bases"]["six_months"]
    head = (f"{'model':<42} {'s 1m':>7} {'s 6m':>7} {'ratio':>6} "
            f"{'rows 1m':>10} {'rows 6m':>10} {'ratio':>6}  ≤{h['target']}?")  # fmt: skip
    lines = [
        f"next day {h['next_day']['date']} on {one['history_days']} days and on"
        f" {six['history_days']} days of `{h['preset']}` (times under"
        f" {h['noise_floor_s']} s count as {h['noise_floor_s']} s)",
        head,
        "-" * len(head),
    ]
    for m in h["models"]:
        lines.append(
            f"{m['model']:<42} {m['seconds_1']:>7.2f} {m['seconds_6']:>7.2f} {m['ratio']:>6.2f} "
            f"{_count(m['rows_1']):>10} {_count(m['rows_6']):>10} "
            f"{_ratio(m['rows_ratio']):>6}  {'yes' if m['met'] else 'NO'}"
        )
    inc1, inc6 = one["incremental"], six["incremental"]
    lines.append("-" * len(head))
    lines.append(
        f"run: {inc1['wall_seconds']:.1f} s on 1 month, {inc6['wall_seconds']:.1f} s on 6 months:"
        f" {h['run_ratio']:.2f}× ({'met' if h['run_ratio'] <= h['target'] else 'NOT met'});"
        f" models' own seconds {inc1['model_seconds']:.1f} / {inc6['model_seconds']:.1f}:"
        f" {_ratio(h['models_ratio'])}×; load average {one['load_average']} / {six['load_average']}"
    )
    return lines


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
