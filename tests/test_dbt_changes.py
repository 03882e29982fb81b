"""Every change of docs/contract.md §4.5 is honoured on the next incremental run.

Hand-made batches exercise one kind of change each; after every batch the
incremental marts must equal a full refresh of the same raw data and the
reference implementation.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.dbt_harness import (
    assert_marts_equal,
    assert_matches_reference,
    build_pair,
    ingest,
    mart,
    paired_databases,
)
from tests.ingest_helpers import T, deal, fetch, partner, tp, write_batch

BATCHES: list[dict[str, list[dict[str, str]]]] = [
    {  # 1: the starting state
        "organizations": [
            {"org_id": "o1", "name": "One", "updated_at": "2026-01-01"},
            {"org_id": "o2", "name": "Two", "updated_at": "2026-01-01"},
        ],
        "partners": [partner("p1", "o1"), partner("p2", "o1"), partner("p3", "o2")],
        "fx_rates": [{"currency": "EUR", "rate_date": "2026-03-01", "usd_per_unit": "1.10"}],
        "deals": [
            deal("d1", "won", "1000", "EUR", T.format(10, 12), T.format(10, 12)),
            deal("d2", "won", "500", "USD", T.format(9, 12), T.format(9, 12)),
            deal("d3", "open", "300", "USD", "", T.format(1, 9)),
            deal("d4", "won", "800", "GBP", T.format(8, 12), T.format(8, 12)),  # no GBP rate yet
        ],
        "touchpoints": [
            tp("t1", "d1", "p1", "referral", T.format(1, 10)),
            tp("t2", "d1", "p2", "demo", T.format(5, 10)),
            tp("t3", "d1", "p3", "demo", T.format(6, 10)),  # partner of another org
            tp("t4", "d1", "ghost", "demo", T.format(6, 11)),  # unknown partner
            tp("t5", "d2", "p2", "deal_registration", T.format(1, 11)),
            tp("t6", "d3", "p1", "intro", T.format(2, 10)),
            tp("t7", "d4", "p1", "demo", T.format(3, 10)),
        ],
    },
    {  # 2: late touchpoint, won -> lost, open -> won, amount change, FX rate arrives
        "fx_rates": [{"currency": "GBP", "rate_date": "2026-03-05", "usd_per_unit": "1.25"}],
        "deals": [
            deal("d1", "won", "1200", "EUR", T.format(10, 12), T.format(11, 9)),
            deal("d2", "lost", "500", "USD", T.format(12, 12), T.format(12, 12)),
            deal("d3", "won", "300", "USD", T.format(12, 15), T.format(12, 15)),
            # An older version loaded late must not win (greatest updated_at).
            deal("d1", "lost", "1", "EUR", T.format(10, 12), T.format(10, 13)),
        ],
        "touchpoints": [tp("t8", "d1", "p2", "meeting", T.format(9, 10))],
    },
    {  # 3: lost -> won, touchpoint moves deal, partner moves org, closed_at/currency change
        "partners": [partner("p2", "o2", updated="2026-03-13")],
        "fx_rates": [{"currency": "EUR", "rate_date": "2026-03-01", "usd_per_unit": "1.20"}],
        "deals": [
            deal("d2", "won", "500", "USD", T.format(13, 12), T.format(13, 12)),
            deal("d3", "won", "300", "USD", T.format(13, 18), T.format(13, 18)),
            deal("d4", "won", "800", "USD", T.format(8, 12), T.format(13, 19)),
        ],
        "touchpoints": [
            tp("t1", "d3", "p1", "referral", T.format(1, 10)),  # moved from d1 to d3
            tp("t9", "d2", "p1", "demo", T.format(12, 10)),
        ],
    },
    {  # 4: the same file twice (no-op), a deal going back to open, a deal moving org
        "deals": [
            deal("d3", "open", "300", "USD", "", T.format(14, 9)),
            # d2 had credit in o1; the marts find its old rows through the
            # organizations int_deals__mart_state remembers.
            deal("d2", "won", "500", "USD", T.format(13, 12), T.format(14, 10), org="o2"),
        ],
    },
]


@pytest.fixture
def databases(server_url: str):
    with paired_databases(server_url, "changes") as urls:
        yield urls


def test_each_change_is_honoured_incrementally(databases: tuple[str, str], tmp_path: Path) -> None:
    incremental, full = databases
    landing = tmp_path / "landing"
    landing.mkdir()
    seen: list[dict] = []
    for number, batch in enumerate(BATCHES, 1):
        write_batch(landing, f"batch{number}", batch)
        for url in (incremental, full):
            ingest(url, landing)
        if number == 2:
            # Before the build, the backlog shows the won deals whose new version
            # the marts do not reflect yet.
            pending = {
                d for (d,) in fetch(incremental, "select deal_id from marts.attribution_backlog")
            }
            assert pending == {"d1", "d3"}
        build_pair(incremental, full, tmp_path)
        assert_marts_equal(incremental, full)
        assert_matches_reference(incremental)
        assert fetch(incremental, "select count(*) from marts.attribution_backlog") == [(0,)]
        seen.append(mart(incremental, "fct_partner_attribution"))

    first, second, third, fourth = seen
    # Batch 1: d4 has no GBP rate: no rows; the cross-org and unknown partners get nothing.
    assert not any(k[0] == "d4" for k in first)
    assert {k[1] for k in first if k[0] == "d1"} == {"p1", "p2"}
    # Batch 2: d2 lost its rows, d3 and d4 gained them, d1 has the new amount and touchpoint.
    assert not any(k[0] == "d2" for k in second)
    assert any(k[0] == "d3" for k in second) and any(k[0] == "d4" for k in second)
    assert second[("d1", "p2", "linear")]["touchpoint_count"] == 2
    assert float(second[("d1", "p1", "linear")]["deal_amount_usd"]) == pytest.approx(1320.0)
    # Batch 3: t1 moved to d3, p2 moved to o2 (no longer credited on o1 deals), d2 won again.
    assert ("d1", "p1", "linear") not in third and ("d1", "p2", "linear") not in third
    assert third[("d3", "p1", "linear")]["touchpoint_count"] == 2
    assert ("d2", "p1", "linear") in third
    assert float(third[("d4", "p1", "linear")]["deal_amount_usd"]) == pytest.approx(800.0)
    # Batch 4: d3 reopened: its rows are gone. d2 moved to o2, where none of its
    # touchpoints counts (they are o1's): no credit, one row in fct_deals, under o2.
    assert not any(k[0] == "d3" for k in fourth)
    assert not any(k[0] == "d2" for k in fourth)
    assert fetch(incremental, "select org_id from marts.fct_deals where deal_id = 'd2'") == [
        ("o2",)
    ]
    assert fetch(
        incremental, "select org_ids from intermediate.int_deals__mart_state where deal_id = 'd2'"
    ) == [(["o1", "o2"],)]


def test_rows_that_come_out_the_same_are_not_rewritten(
    databases: tuple[str, str], tmp_path: Path
) -> None:
    """`skip_unchanged`: a row of the change log whose facts come out equal keeps its
    physical row (same xmin) and its computed_at, a row that really changed is
    rewritten with the new build's computed_at, and the marts still equal a full
    refresh."""
    incremental, full = databases
    landing = tmp_path / "landing"
    landing.mkdir()
    batches = [
        {
            "organizations": [{"org_id": "o1", "name": "One", "updated_at": "2026-01-01"}],
            "partners": [partner("p1", "o1"), partner("p2", "o1")],
            "fx_rates": [{"currency": "EUR", "rate_date": "2026-03-01", "usd_per_unit": "1.10"}],
            "deals": [
                deal("d1", "open", "100", "USD", "", T.format(1, 9)),
                deal("d2", "open", "200", "USD", "", T.format(1, 9)),
                deal("d3", "open", "1000", "EUR", "", T.format(1, 9)),
                deal("d4", "open", "100", "USD", "", T.format(1, 9)),
            ],
            "touchpoints": [
                tp("t1", "d1", "p1", "demo", T.format(1, 10)),
                tp("t2", "d1", "p1", "demo", T.format(5, 10)),
                tp("t3", "d2", "p2", "demo", T.format(2, 10)),
            ],
        },
        {
            # d1: one more touch by a partner already on it, between its first and
            # last touch: d1 and p1 enter the change log but come out the same.
            "touchpoints": [tp("t4", "d1", "p1", "meeting", T.format(3, 10))],
            "deals": [
                # d2 is won: its facts and p2's figures really change.
                deal("d2", "won", "200", "USD", T.format(6, 12), T.format(6, 12)),
                # d4 again with the same updated_at (loaded last, so current): its
                # amount is the same number, but a full refresh writes 100.0 where
                # 100 is stored.
                deal("d4", "open", "100.0", "USD", "", T.format(1, 9)),
            ],
            # The same rate re-sent as 1.1: d3's amount_usd is 1000 × 1.1 = 1100.0
            # rather than 1100.00, the same once rounded to cents.
            "fx_rates": [{"currency": "EUR", "rate_date": "2026-03-01", "usd_per_unit": "1.1"}],
        },
    ]

    def physical_rows() -> dict[str, dict[object, tuple[str, datetime]]]:
        """Per mart, key → (xmin, computed_at)."""
        return {
            "fct_deals": {
                deal_id: (xmin, at)
                for deal_id, xmin, at in fetch(
                    incremental, "select deal_id, xmin::text, computed_at from marts.fct_deals"
                )
            },
            "partner_performance": {
                partner_id: (xmin, at)
                for partner_id, xmin, at in fetch(
                    incremental,
                    "select partner_id, xmin::text, computed_at from marts.partner_performance",
                )
            },
            "org_daily_metrics": {
                (org, str(day)): (xmin, at)
                for org, day, xmin, at in fetch(
                    incremental,
                    "select org_id, metric_date, xmin::text, computed_at"
                    " from marts.org_daily_metrics",
                )
            },
        }

    write_batch(landing, "batch1", batches[0])
    for url in (incremental, full):
        ingest(url, landing)
    build_pair(incremental, full, tmp_path)
    before = physical_rows()

    write_batch(landing, "batch2", batches[1])
    for url in (incremental, full):
        ingest(url, landing)
    build_pair(incremental, full, tmp_path)
    after = physical_rows()

    # Every deal was in this run's change log (the full build before logs nothing;
    # entries are pruned only on the next run)...
    logged = fetch(incremental, "select deal_id from intermediate.int_attribution__changed_deals")
    assert {d for (d,) in logged} == {"d1", "d2", "d3", "d4"}
    # ...but only the rows that changed were written again. That p1 and d1's
    # creation day were recomputed too (so keeping them is the skip, not an
    # omission) follows from d1 being logged: the marts recompute every partner
    # and day of a logged deal. Turning `skip_unchanged` off on any of the three
    # models makes its assertion below fail.
    days = after["org_daily_metrics"]
    assert after["fct_deals"]["d1"] == before["fct_deals"]["d1"]
    assert after["fct_deals"]["d2"] != before["fct_deals"]["d2"]
    assert after["partner_performance"]["p1"] == before["partner_performance"]["p1"]
    assert after["partner_performance"]["p2"] != before["partner_performance"]["p2"]
    assert days[("o1", "2026-03-01")] == before["org_daily_metrics"][("o1", "2026-03-01")]
    # The day of the new touch and d2's closing day are new rows.
    assert ("o1", "2026-03-03") not in before["org_daily_metrics"]
    assert ("o1", "2026-03-03") in days and ("o1", "2026-03-06") in days
    # Rows are compared as text: a value that reads differently is rewritten, so the
    # stored text is what a full refresh writes.
    amount = "select amount::text from marts.fct_deals where deal_id = 'd4'"
    assert fetch(incremental, amount) == fetch(full, amount) == [("100.0",)]
    assert after["fct_deals"]["d4"] != before["fct_deals"]["d4"]
    # Money in cents reads the same however the rate was written: d3 is kept.
    amount_usd = "select amount_usd::text from marts.fct_deals where deal_id = 'd3'"
    assert fetch(incremental, amount_usd) == fetch(full, amount_usd) == [("1100.00",)]
    assert after["fct_deals"]["d3"] == before["fct_deals"]["d3"]
    # computed_at (docs/contract.md §5.7): a kept row keeps its time; a rewritten or
    # new row has the second build's time, later than any of the first build.
    first_build = max(at for rows in before.values() for _, at in rows.values())
    for table, rows in after.items():
        for key, (xmin, at) in rows.items():
            if before[table].get(key, (None,))[0] == xmin:
                assert at == before[table][key][1], (table, key)
            else:
                assert at > first_build, (table, key, at, first_build)
    rewritten = {
        (t, k) for t, rows in after.items() for k, r in rows.items() if r != before[t].get(k)
    }
    assert ("fct_deals", "d2") in rewritten and ("fct_deals", "d1") not in rewritten
    assert_marts_equal(incremental, full)
    assert_matches_reference(incremental)
