"""A changed commission plan recomputes only the won deals it can apply to.

`int_commissions__due` recomputes, after a plan change, the won deals closed within
the dates the plan's version before or after the change covers — only the days
between the old and new bounds when nothing but the dates changed
(`commission_plan_change_windows` in dbt_project/macros/commissions.sql). A row's
`xmin` (the transaction that wrote it) tells whether a build rewrote it: the model
replaces every row of a recomputed deal. The amounts are checked too; the property
test (test_commissions_property.py) compares incremental builds with full refreshes.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg

from tests.commission_helpers import build_lines, deal, land, org, partner, plan, touch

PLAN = {"model": "linear", "effective_from": "2025-12-01", "holding_days": "0"}


def due(url: str) -> dict[str, tuple[Decimal, str, str]]:
    """deal_id → (amount due, plan_id, xmin) of the one partner of each deal."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select deal_id, due_usd, plan_id, xmin::text"
            " from intermediate.int_commissions__due where partner_id is not null"
        ).fetchall()
    return {deal_id: (amount, plan_id, xmin) for deal_id, amount, plan_id, xmin in rows}


def test_a_plan_change_recomputes_only_the_deals_its_dates_reach(
    fresh_db_url: str, tmp_path: Path
) -> None:
    url, landing, dbt_tmp = fresh_db_url, tmp_path / "landing", tmp_path / "dbt"
    land(
        url,
        landing,
        "2026-03-20",
        organizations=[org("cost"), org("other")],
        partners=[partner("pa", "cost"), partner("po", "other")],
        deals=[
            deal("d_jan", "cost", "2026-01-10T12:00:00Z", "1000.00"),
            deal("d_mar", "cost", "2026-03-10T12:00:00Z", "2000.00"),
            deal("d_other", "other", "2026-03-10T12:00:00Z", "3000.00"),
        ],
        touchpoints=[
            touch("t1", "d_jan", "pa", "cost"),
            touch("t2", "d_mar", "pa", "cost"),
            touch("t3", "d_other", "po", "other"),
        ],
        commission_plans=[plan("p1", "cost", rate="0.10", **PLAN), plan("po", "other", **PLAN)],
    )
    build_lines(url, dbt_tmp)
    first = due(url)
    assert {deal: row[:2] for deal, row in first.items()} == {
        "d_jan": (Decimal("100.00"), "p1"),
        "d_mar": (Decimal("200.00"), "p1"),
        "d_other": (Decimal("300.00"), "po"),
    }

    # Only p1's end moves (open → March 1st): the deals closed from March 1st.
    ended = plan("p1", "cost", rate="0.10", effective_to="2026-03-01",
                 updated_at="2026-03-21T00:00:00Z", **PLAN)  # fmt: skip
    land(url, landing, "2026-03-21", commission_plans=[ended])
    build_lines(url, dbt_tmp)
    second = due(url)
    assert set(second) == {"d_jan", "d_other"}  # d_mar has no plan left: nothing due
    assert second["d_jan"] == first["d_jan"]  # same amount, and not rewritten (same xmin)
    assert second["d_other"] == first["d_other"]

    # A new plan from March 1st: d_mar again, nothing else.
    land(url, landing, "2026-03-22", commission_plans=[
        plan("p2", "cost", rate="0.05", updated_at="2026-03-22T00:00:00Z",
             **(PLAN | {"effective_from": "2026-03-01"}))])  # fmt: skip
    build_lines(url, dbt_tmp)
    third = due(url)
    assert third["d_mar"][:2] == (Decimal("100.00"), "p2")
    assert third["d_jan"] == first["d_jan"] and third["d_other"] == first["d_other"]

    # p1's rate changes: every deal its dates cover (d_jan), and only those.
    raised = plan("p1", "cost", rate="0.20", effective_to="2026-03-01",
                  updated_at="2026-03-23T00:00:00Z", **PLAN)  # fmt: skip
    land(url, landing, "2026-03-23", commission_plans=[raised])
    build_lines(url, dbt_tmp)
    fourth = due(url)
    assert fourth["d_jan"][:2] == (Decimal("200.00"), "p1")
    assert fourth["d_jan"][2] != first["d_jan"][2]
    assert fourth["d_mar"] == third["d_mar"] and fourth["d_other"] == first["d_other"]
