"""Property: after every batch, the incremental marts equal the truth (docs/contract.md §2-§5).

Hypothesis writes random sequences of CRM export batches — new deals, status
flips in every direction, older versions loaded late and `updated_at` ties, late,
repeated and moved touchpoints, amount/currency/closed_at changes, FX rates that
arrive after their deals, partners moving organization, cross-organization
references, timestamps in several offsets, rows that must be quarantined, a file
landed twice and a file delivered again under a new name. Each batch goes
through the real pipeline: files in a landing folder, `ingest_directory`, an
incremental `dbt run`. After every batch the marts must equal a `--full-refresh`
build of the same raw data (a second database fed the same files) and the
Python reference implementation of docs/contract.md §4.

The entities are few (3 orgs, 4 partners, 4 deals, 8 touchpoint ids) so that
collisions — the interesting cases — are frequent and each dbt run is fast.
Days run from 20 February to 12 March, so deals close in two UTC months and the
data-driven model trains March's weights on February's paths. The first batch
always gives o1 a February and a March deal with touchpoints (`history`), later
ones may give any deal a new path (`later_path`); both builds and the reference
take tiny training-set limits (DBT_VARS) so that weights are really used (about
one generated scenario in five) and every fallback reason occurs. A hand-written
scenario (DATA_DRIVEN_SCENARIO) makes sure some deals are credited by weights,
some fall back, and weights change between runs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests import reference_attribution as reference
from tests.dbt_harness import (
    MARTS,
    assert_marts_equal,
    assert_matches_reference,
    assert_partner_marts_match_reference,
    build_pair,
    ingest,
    mart,
    paired_databases,
)
from tests.ingest_helpers import counts, fetch, write_batch

ORGS = ("o1", "o2", "o3")
PARTNER_HOME = {"p1": "o1", "p2": "o1", "p3": "o2", "p4": "o3"}
DEAL_HOME = {"d1": "o1", "d2": "o1", "d3": "o2", "d4": "o3"}
TOUCHPOINTS = tuple(f"t{i}" for i in range(1, 9))
ENTITIES = ("organizations", "partners", "fx_rates", "deals", "touchpoints")

# Day 0 = 20 February: days 0-8 are in February, 9 onwards in March.
BASE = datetime(2026, 2, 20, tzinfo=UTC)
# The data-driven model with tiny training sets: one path is enough, and at most
# two channels (of the four, so that each fallback reason occurs); the reference
# gets the same.
DBT_VARS = {"data_driven_min_paths": 1, "data_driven_max_channels": 2}
# Offset suffix -> hours east of UTC. No suffix means UTC (docs/contract.md §2).
OFFSETS = {"Z": 0, "+00:00": 0, "": 0, "+02:00": 2, "-05:00": -5}


def stamp(day: int, hour: int, offset: str) -> str:
    """The instant BASE + day + hour, written in the given offset."""
    local = BASE + timedelta(days=day, hours=hour + OFFSETS[offset])
    return local.strftime("%Y-%m-%dT%H:%M:%S") + offset


def stamps(days: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    return st.builds(stamp, days, st.sampled_from([0, 1, 12, 23]), st.sampled_from(list(OFFSETS)))


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------


@st.composite
def deal_rows(draw: st.DrawFn, batch: int) -> dict[str, str]:
    deal_id = draw(st.sampled_from(sorted(DEAL_HOME)))
    status = draw(st.sampled_from(["won", "lost", "open", "Won"]))
    created = draw(st.integers(0, 8))
    closed = draw(st.integers(created, created + 12))
    closed_at = draw(stamps(st.just(closed)))
    if status == "open" and draw(st.booleans()):
        closed_at = ""
    # Versions mostly move forward batch by batch; some are older than the
    # current one (loaded late: must not win) and some tie (loaded last wins).
    updated_day = draw(st.integers(3 * batch - 4, 3 * batch + 2))
    return {
        "deal_id": deal_id,
        "org_id": draw(st.sampled_from([DEAL_HOME[deal_id]] * 3 + list(ORGS))),
        "name": f"Deal {deal_id} v{batch}",
        "amount": draw(st.sampled_from(["1000", "250.50", "0", "999.99", "12345.678"])),
        "currency": draw(st.sampled_from(["USD", "EUR", "GBP", "eur"])),
        "status": status,
        "created_at": draw(stamps(st.just(created))),
        "closed_at": closed_at,
        "updated_at": stamp(updated_day, draw(st.sampled_from([0, 12])), "Z"),
    }


@st.composite
def touchpoint_rows(draw: st.DrawFn) -> dict[str, str]:
    deal_id = draw(st.sampled_from([*sorted(DEAL_HOME), "d9"]))  # d9: no such deal
    # Mostly the deal's org and a partner of it (creditable); sometimes another org,
    # a partner of another org or an unknown one (never credited).
    org = DEAL_HOME.get(deal_id, "o1")
    own = [p for p, home in sorted(PARTNER_HOME.items()) if home == org]
    partner_id = draw(st.sampled_from([*own, *own, *sorted(PARTNER_HOME), "ghost"]))
    return {
        "touchpoint_id": draw(st.sampled_from(TOUCHPOINTS)),
        "org_id": draw(st.sampled_from([org] * 3 + list(ORGS))),
        "deal_id": deal_id,
        "partner_id": partner_id,
        "touchpoint_type": draw(
            st.sampled_from(["referral", "deal_registration", "demo", "Intro", "REFERRAL"])
        ),
        # -370: outside the 365-day lookback of every deal; -360: inside for late closes.
        "occurred_at": draw(stamps(st.sampled_from([*range(0, 21), -1, -360, -370]))),
    }


FEBRUARY, MARCH = st.integers(0, 8), st.integers(9, 20)


@st.composite
def deal_path(
    draw: st.DrawFn,
    batch: int,
    deal_id: str,
    closed_days: st.SearchStrategy[int],
    touchpoint_ids: list[str],
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The deal, won or lost, in its home organization, closed on one of
    `closed_days`, with touchpoints (one per id) of that organization's partners
    before its close: a training path of the data-driven model, or a deal its
    weights credit."""
    org = DEAL_HOME[deal_id]
    closed = draw(closed_days)
    created = draw(st.integers(max(0, closed - 12), closed))
    deal = {
        **draw(deal_rows(batch)),
        "deal_id": deal_id,
        "org_id": org,
        "name": f"Deal {deal_id} v{batch}",
        "status": draw(st.sampled_from(["won", "won", "lost"])),
        "created_at": draw(stamps(st.just(created))),
        "closed_at": draw(stamps(st.just(closed))),
    }
    own = [p for p, home in sorted(PARTNER_HOME.items()) if home == org]
    kinds = st.sampled_from(["referral", "deal_registration", "demo", "Intro"])
    touches = [
        {
            "touchpoint_id": touchpoint_id,
            "org_id": org,
            "deal_id": deal_id,
            "partner_id": draw(st.sampled_from(own)),
            "touchpoint_type": draw(kinds),
            "occurred_at": draw(stamps(st.integers(created - 1, closed - 1))),
        }
        for touchpoint_id in touchpoint_ids
    ]
    return deal, touches


@st.composite
def history(draw: st.DrawFn) -> list[tuple[dict[str, str], list[dict[str, str]]]]:
    """o1's two deals, one closed in February and one in March, each with its own
    1-3 touchpoints: February's path trains the weights March's deal may get."""
    february, march = draw(st.permutations(["d1", "d2"]))
    ids = draw(st.permutations(TOUCHPOINTS))
    first, second = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return [
        draw(deal_path(0, february, FEBRUARY, ids[:first])),
        draw(deal_path(0, march, MARCH, ids[first : first + second])),
    ]


@st.composite
def later_path(draw: st.DrawFn, batch: int) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Any deal given a new path (its touchpoint ids may move others' touchpoints)."""
    deal_id = draw(st.sampled_from(sorted(DEAL_HOME)))
    ids = draw(st.lists(st.sampled_from(TOUCHPOINTS), min_size=1, max_size=3, unique=True))
    return draw(deal_path(batch, deal_id, st.one_of(FEBRUARY, MARCH), ids))


def partner_row(partner_id: str, org: str, batch: int, status: str = "active") -> dict[str, str]:
    return {
        "partner_id": partner_id,
        "org_id": org,
        "name": f"Partner {partner_id} v{batch}",
        "partner_type": "reseller",
        "status": status,
        "updated_at": stamp(3 * batch, 0, "Z"),
    }


def org_row(org: str, batch: int, plan: str = "pro") -> dict[str, str]:
    return {"org_id": org, "name": f"Org {org} v{batch}", "plan": plan,
            "updated_at": stamp(3 * batch, 0, "Z")}  # fmt: skip


@st.composite
def partner_rows(draw: st.DrawFn, batch: int) -> dict[str, str]:
    partner_id = draw(st.sampled_from(sorted(PARTNER_HOME)))
    org = draw(st.sampled_from([PARTNER_HOME[partner_id], *ORGS]))  # may move organization
    return partner_row(partner_id, org, batch, draw(st.sampled_from(["active", "inactive"])))


fx_rows = st.fixed_dictionaries(
    {
        "currency": st.sampled_from(["EUR", "GBP"]),
        "rate_date": st.builds(
            lambda d: (BASE + timedelta(days=d)).date().isoformat(), st.sampled_from([-5, 0, 6, 12])
        ),
        "usd_per_unit": st.sampled_from(["0.5", "1.1", "1.25", "2"]),
    }
)

# Rows that break one rule of docs/contract.md §3.2 each: (entity, field, bad value).
CORRUPTIONS = [
    ("deals", "amount", "-5"),
    ("deals", "status", "pending"),
    ("deals", "currency", "EURO"),
    ("deals", "created_at", "yesterday"),
    ("deals", "deal_id", ""),
    ("deals", "closed_at", ""),  # with status won (see bad_rows)
    ("touchpoints", "occurred_at", "2026-02-30T00:00:00Z"),
    ("touchpoints", "partner_id", ""),
    ("fx_rates", "usd_per_unit", "0"),
    ("fx_rates", "rate_date", "2026-13-01"),
    ("partners", "org_id", ""),
]


@st.composite
def bad_rows(draw: st.DrawFn, batch: int) -> tuple[str, dict[str, str]]:
    entity, column, value = draw(st.sampled_from(CORRUPTIONS))
    row = {
        "deals": lambda: draw(deal_rows(batch)),
        "touchpoints": lambda: draw(touchpoint_rows()),
        "fx_rates": lambda: draw(fx_rows),
        "partners": lambda: draw(partner_rows(batch)),
    }[entity]()
    if column == "closed_at":
        row["status"] = "won"
    return entity, {**row, column: value}


# --------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One delivery: good rows and rows to quarantine per entity, in file order."""

    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    bad: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    fmt: str = "csv"
    # Land the files of this earlier batch again, byte for byte, same names: a no-op.
    reland: int | None = None
    # Deliver the files of this earlier batch again under new names: new batches.
    redeliver: int | None = None

    def files(self) -> dict[str, list[dict[str, str]]]:
        """Rows per file: the bad rows first, so good rows do not start at line 1."""
        out = {e: [*self.bad.get(e, []), *self.rows.get(e, [])] for e in ENTITIES}
        return {e: rows for e, rows in out.items() if rows}


def opening_batch() -> Batch:
    """Every organization and partner exists from the start (they may change later)."""
    return Batch(
        rows={
            "organizations": [org_row(o, 0) for o in ORGS],
            "partners": [partner_row(p, o, 0) for p, o in sorted(PARTNER_HOME.items())],
        }
    )


@st.composite
def batches(draw: st.DrawFn, max_batches: int) -> list[Batch]:
    count = draw(st.integers(1, max_batches))
    out: list[Batch] = []
    for number in range(count):
        if out and draw(st.integers(0, 5)) == 0:
            out.append(Batch(reland=draw(st.integers(0, len(out) - 1))))
            continue
        rows: dict[str, list[dict[str, str]]] = {
            "deals": draw(st.lists(deal_rows(number), min_size=number == 0, max_size=4)),
            "touchpoints": draw(
                st.lists(touchpoint_rows(), min_size=2 * (number == 0), max_size=5)
            ),
            "fx_rates": draw(st.lists(fx_rows, max_size=2)),
            "partners": draw(st.lists(partner_rows(number), max_size=1)),
        }
        paths = draw(history()) if number == 0 else draw(st.lists(later_path(number), max_size=1))
        for deal, touches in paths:
            rows["deals"].append(deal)
            rows["touchpoints"] += touches
        if number == 0:
            rows = {**opening_batch().rows, **rows, "partners": opening_batch().rows["partners"]}
        elif draw(st.integers(0, 3)) == 0:
            rows["organizations"] = [org_row(draw(st.sampled_from(ORGS)), number, "enterprise")]
        bad: dict[str, list[dict[str, str]]] = {}
        for entity, row in draw(st.lists(bad_rows(number), max_size=2)):
            bad.setdefault(entity, []).append(row)
        redeliver = None
        if out and draw(st.integers(0, 4)) == 0:
            redeliver = draw(st.integers(0, len(out) - 1))
        out.append(
            Batch(
                rows={e: r for e, r in rows.items() if r},
                bad=bad,
                fmt=draw(st.sampled_from(["csv", "jsonl"])),
                redeliver=redeliver,
            )
        )
    return out


# --------------------------------------------------------------------------
# Running a scenario
# --------------------------------------------------------------------------


@dataclass
class Stats:
    examples: int = 0
    batches: int = 0
    attribution_rows: int = 0
    kinds: Counter = field(default_factory=Counter)
    # Won deals after each batch: credited by channel weights / fallen back to linear.
    data_driven: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)  # per step: ingest, dbt, compare
    progress: Callable[[str], None] | None = None  # a long run shows it is alive


def kinds(batch: Batch) -> list[str]:
    """What a batch exercised, for the summary line."""
    out = [f"{e} rows" for e, rows in batch.rows.items() for _ in rows]
    out += ["quarantined rows" for rows in batch.bad.values() for _ in rows]
    out += ["re-landed files"] * (batch.reland is not None)
    out += ["re-delivered files"] * (batch.redeliver is not None)
    out += ["jsonl batches"] * (batch.fmt == "jsonl" and batch.reland is None)
    return out


def label(number: int) -> str:
    return f"b{number:02d}"


def land(landing: Path, number: int, batch: Batch, history: list[Batch]) -> Counter:
    """Write a batch's files; returns the raw rows (per table) and quarantined rows expected."""
    expected: Counter = Counter()
    if batch.reland is not None:
        # Same names, same bytes, new modification time: must be skipped.
        for path in sorted(landing.glob(f"*_{label(batch.reland)}.*")):
            path.write_bytes(path.read_bytes())
        return expected
    write_batch(landing, label(number), batch.files(), batch.fmt)
    delivered = [batch]
    if batch.redeliver is not None:
        old, new = f"_{label(batch.redeliver)}.", f"_{label(number)}_again."
        for path in sorted(landing.glob(f"*{old}*")):
            shutil.copy(path, landing / path.name.replace(old, new))
        delivered.append(history[batch.redeliver])
    for each in delivered:
        for entity, rows in each.rows.items():
            expected[entity] += len(rows)
        expected["quarantine"] += sum(len(rows) for rows in each.bad.values())
    return expected


def assert_loaded(before: dict[str, int], after: dict[str, int], expected: Counter) -> None:
    """docs/contract.md §3.1/§3.4: every row in exactly one place; a re-landed file changes nothing."""
    for table in after:
        assert after[table] - before[table] == expected[table], (table, before, after, expected)


def assert_no_cross_org_credit(url: str) -> None:
    """No attribution row credits a partner outside the deal's organization (docs/contract.md §4.1)."""
    with psycopg.connect(url) as conn:
        current = reference.current_versions(reference.from_database(conn))
    partner_org = {p["partner_id"]: p["org_id"] for p in current.partners}
    deal_org = {d["deal_id"]: d["org_id"] for d in current.deals}
    for (deal_id, partner_id, model), row in mart(url, "fct_partner_attribution").items():
        assert partner_org.get(partner_id) == row["org_id"] == deal_org[deal_id], (
            deal_id, partner_id, model, row["org_id"]
        )  # fmt: skip


def all_marts(url: str) -> dict[str, dict]:
    return {table: mart(url, table) for table in MARTS}


def run_scenario(server_url: str, workdir: Path, scenario: list[Batch], stats: Stats) -> None:
    """Feed the batches one by one to both databases; compare after each."""
    shutil.rmtree(workdir / "landing", ignore_errors=True)
    landing = workdir / "landing"
    landing.mkdir(parents=True)
    with paired_databases(server_url, "prop") as (incremental, full):
        for number, batch in enumerate(scenario):
            expected = land(landing, number, batch, scenario[:number])
            started = time.monotonic()
            before = counts(incremental)
            for url in (incremental, full):
                assert ingest(url, landing).count("refused") == 0
            assert_loaded(before, counts(incremental), expected)
            assert counts(full) == counts(incremental)
            previous = all_marts(incremental) if batch.reland is not None else None
            stats.seconds["ingest"] += time.monotonic() - started

            started = time.monotonic()
            build_pair(incremental, full, workdir, DBT_VARS)
            stats.seconds["dbt"] += time.monotonic() - started

            started = time.monotonic()
            assert_marts_equal(incremental, full)
            stats.attribution_rows += assert_matches_reference(incremental, DBT_VARS)
            assert_partner_marts_match_reference(incremental, DBT_VARS)
            assert_no_cross_org_credit(incremental)
            [(weighted, fallen_back)] = fetch(
                incremental,
                "select count(*) filter (where not data_driven_fallback),"
                " count(*) filter (where data_driven_fallback) from marts.fct_deals",
            )
            stats.data_driven.update(weights=weighted, fallback=fallen_back)
            assert fetch(incremental, "select count(*) from marts.attribution_backlog") == [(0,)]
            if previous is not None:
                assert all_marts(incremental) == previous, "a re-landed file changed the marts"
            stats.seconds["compare"] += time.monotonic() - started
            stats.batches += 1
            stats.kinds.update(kinds(batch))
    stats.examples += 1
    if stats.progress:
        stats.progress(f"example {stats.examples}: {len(scenario)} batches equal")


BASE_DATE = BASE.date().isoformat()


def deal(
    deal_id: str, org: str, status: str, created: str, closed: str, updated: str
) -> dict[str, str]:
    """A deal row of a hand-written scenario: 1000 USD."""
    return {"deal_id": deal_id, "org_id": org, "name": f"Deal {deal_id}", "amount": "1000",
            "currency": "USD", "status": status, "created_at": created, "closed_at": closed,
            "updated_at": updated}  # fmt: skip


def touch(
    touchpoint_id: str, deal_id: str, org: str, partner_id: str, kind: str, occurred: str
) -> dict[str, str]:
    """A touchpoint row of a hand-written scenario."""
    return {"touchpoint_id": touchpoint_id, "org_id": org, "deal_id": deal_id,
            "partner_id": partner_id, "touchpoint_type": kind, "occurred_at": occurred}  # fmt: skip


# The data-driven model across three runs, replayed first by both tests (so the
# default test cannot pass without weights in use). o1's March deal d2 is credited
# by the weights of o1's February paths: d1 referral -> demo (won) and d4 demo
# (lost; closed 28 February 23:00 UTC, written as 1 March in +02:00). Its
# February deal d1 and o2's d3 fall back (nothing closed before them). d2's
# W-shaped creation touch is t5, the last one before its creation.
#  1. weights referral 1/3, demo 2/3, stored 0.3333333333 and 0.6666666667: d2
#     (intro, referral, demo, demo) gets p1 0.4000000000, p2 0.6000000000 (the
#     stored weights make them 0.40000000001.. and 0.59999999998..);
#  2. t3 is delivered again as a REFERRAL (loads as referral): d4's path is referral
#     (lost); referral and demo weigh 1/2 each, d2 re-credited p1 1/3, p2 2/3;
#  3. d1 turns lost: February has no won deal to credit (its month goes) and March
#     no won training path: d2 falls back to linear, March's weights go out of use.
DATA_DRIVEN_SCENARIO: list[Batch] = [
    Batch(
        rows={
            **opening_batch().rows,
            "deals": [
                deal("d1", "o1", "won", stamp(0, 0, "Z"), stamp(6, 12, "Z"), stamp(1, 0, "Z")),
                deal(
                    "d4", "o1", "lost", stamp(1, 0, "Z"), stamp(8, 23, "+02:00"), stamp(1, 0, "Z")
                ),
                deal(
                    "d2", "o1", "won", stamp(2, 12, "-05:00"), stamp(14, 0, "Z"), stamp(1, 0, "Z")
                ),
                deal("d3", "o2", "won", stamp(3, 0, "Z"), stamp(12, 1, "Z"), stamp(1, 0, "Z")),
            ],
            "touchpoints": [
                touch("t1", "d1", "o1", "p1", "referral", stamp(0, 0, "Z")),
                touch("t2", "d1", "o1", "p2", "demo", stamp(3, 0, "+02:00")),
                touch("t3", "d4", "o1", "p2", "demo", stamp(2, 0, "Z")),
                touch("t4", "d2", "o1", "p1", "intro", stamp(1, 0, "Z")),
                touch("t5", "d2", "o1", "p2", "referral", stamp(2, 1, "Z")),
                touch("t6", "d2", "o1", "p1", "demo", stamp(10, 0, "Z")),
                touch("t7", "d2", "o1", "p2", "demo", stamp(12, 0, "Z")),
                touch("t8", "d3", "o2", "p3", "deal_registration", stamp(4, 0, "Z")),
            ],
        }
    ),
    Batch(
        rows={"touchpoints": [touch("t3", "d4", "o1", "p2", "REFERRAL", stamp(2, 0, "Z"))]},
        fmt="jsonl",
    ),
    Batch(
        rows={
            "deals": [
                deal("d1", "o1", "lost", stamp(0, 0, "Z"), stamp(6, 12, "Z"), stamp(7, 0, "Z"))
            ]
        }
    ),
]

# Scenarios Hypothesis found failing, replayed first by the slow variant. The one
# below broke the test's own bookkeeping (an `fx_rates` file delivered again under
# a new name was misnamed); the pipeline was right. Kept, made small by hand: the
# re-delivered old EUR rate loads after the new one for the same date and wins.
REGRESSIONS: list[list[Batch]] = [
    [
        Batch(
            rows={
                **opening_batch().rows,
                "fx_rates": [{"currency": "EUR", "rate_date": BASE_DATE, "usd_per_unit": "1.1"}],
                "deals": [
                    {
                        "deal_id": "d1",
                        "org_id": "o1",
                        "name": "Deal d1",
                        "amount": "1000",
                        "currency": "EUR",
                        "status": "won",
                        "created_at": stamp(0, 0, "Z"),
                        "closed_at": stamp(2, 12, "+02:00"),
                        "updated_at": stamp(2, 12, "Z"),
                    }
                ],  # fmt: skip
                "touchpoints": [
                    {
                        "touchpoint_id": "t1",
                        "org_id": "o1",
                        "deal_id": "d1",
                        "partner_id": "p1",
                        "touchpoint_type": "referral",
                        "occurred_at": stamp(0, 1, "Z"),
                    }
                ],  # fmt: skip
            }
        ),
        Batch(
            rows={"fx_rates": [{"currency": "EUR", "rate_date": BASE_DATE, "usd_per_unit": "2"}]},
            fmt="jsonl",
            redeliver=0,
        ),
    ],
]


def check_property(
    server_url: str,
    workdir: Path,
    max_examples: int,
    max_batches: int,
    progress: Callable[[str], None] | None = None,
    regressions: tuple[list[Batch], ...] = (),
) -> Stats:
    stats = Stats(progress=progress)

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
        # Each step of shrinking replays whole scenarios (dbt runs): allow skipping it.
        phases=[
            p for p in Phase if p is not Phase.shrink or not os.environ.get("PROPERTY_NO_SHRINK")
        ],
    )
    @given(scenario=batches(max_batches))
    def incremental_equals_truth(scenario: list[Batch]) -> None:
        run_scenario(server_url, workdir, scenario, stats)

    for scenario in regressions:
        incremental_equals_truth = example(scenario=scenario)(incremental_equals_truth)
    incremental_equals_truth()
    return stats


def printer(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print past pytest's output capture."""

    def say(line: str) -> None:
        with capsys.disabled():
            print(line, flush=True)

    return say


def report(stats: Stats, capsys: pytest.CaptureFixture[str]) -> None:
    printer(capsys)(
        f"\nproperty test: {stats.examples} examples, {stats.batches} batches,"
        f" {stats.attribution_rows} attribution rows compared with the reference;"
        f" won deals after each batch, data-driven {dict(stats.data_driven)};"
        f" {dict(sorted(stats.kinds.items()))};"
        f" seconds { ({k: round(v) for k, v in stats.seconds.items()}) }"
    )


def assert_data_driven_exercised(stats: Stats) -> None:
    """Not vacuous: some deals were credited by channel weights, some fell back."""
    assert stats.data_driven["weights"] > 0 and stats.data_driven["fallback"] > 0, stats


def test_incremental_equals_truth(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The data-driven scenario (3 batches) and one generated example (up to 2).
    stats = check_property(
        server_url, tmp_path, max_examples=1, max_batches=2, regressions=(DATA_DRIVEN_SCENARIO,)
    )
    report(stats, capsys)
    assert stats.batches >= 4
    assert_data_driven_exercised(stats)


@pytest.mark.slow
def test_incremental_equals_truth_many_examples(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
    stats = check_property(
        server_url,
        tmp_path,
        examples,
        max_batches=5,
        progress=printer(capsys),
        regressions=(DATA_DRIVEN_SCENARIO, *REGRESSIONS),
    )
    report(stats, capsys)
    assert stats.examples >= examples
    assert_data_driven_exercised(stats)
