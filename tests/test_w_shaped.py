"""W-shaped credits (docs/contract.md §4.2) through the real pipeline, every degenerate case by hand.

Milestones: F = position 1, C = the creation touch (the last eligible touchpoint
at or before the deal's created_at, else position 1), L = n. M = the distinct
milestone positions, O = the others. O empty: each milestone 1/|M|; otherwise each
milestone 0.9/|M| and each other touchpoint 0.1/|O|. One dataset holds every case
and is built once; the expected credits below are worked out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from tests import reference_attribution as reference
from tests.dbt_harness import assert_matches_reference, build, ingest, mart
from tests.ingest_helpers import deal, fetch, partner, tp, write_batch

F = Fraction
CLOSED = "2026-03-20T12:00:00Z"


def at(day: int, hour: int = 10) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:00:00Z"


@dataclass(frozen=True)
class Case:
    """A won deal: its creation, its touchpoints (partner, occurred_at) in time
    order, and each partner's expected credit."""

    deal_id: str
    amount: str
    created: str
    touches: list[tuple[str, str]]
    credits: dict[str, Fraction]


CASES = [
    # n = 1: the single touchpoint is F, C and L.
    Case("n1", "100.00", at(1), [("p1", at(2))], {"p1": F(1)}),
    # n = 2: M = {1, 2}, O empty: 1/2 each (C = 2, at or before creation).
    Case("n2", "100.01", at(5), [("p1", at(2)), ("p2", at(3))], {"p1": F(1, 2), "p2": F(1, 2)}),
    # n = 3, C = F (only touchpoint 1 is at or before creation): M = {1, 3}, O = {2}.
    Case(
        "n3_c_first",
        "100.00",
        at(3),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(5))],
        {"p1": F(9, 20), "p2": F(1, 10), "p3": F(9, 20)},
    ),
    # n = 3, C = L (created after every touchpoint): M = {1, 3}, O = {2}.
    Case(
        "n3_c_last",
        "99.99",
        at(10),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(5))],
        {"p1": F(9, 20), "p2": F(1, 10), "p3": F(9, 20)},
    ),
    # n = 3, C in the middle: M = {1, 2, 3}, O empty: 1/3 each.
    Case(
        "n3_c_middle",
        "100.00",
        at(4, 12),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(5))],
        {"p1": F(1, 3), "p2": F(1, 3), "p3": F(1, 3)},
    ),
    # n = 5, distinct milestones F = 1, C = 3, L = 5: 0.9/3 each; O = {2, 4}: 0.1/2 each.
    Case(
        "n5_distinct",
        "1000.00",
        at(7),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(6)), ("p4", at(8)), ("p5", at(9))],
        {"p1": F(3, 10), "p2": F(1, 20), "p3": F(3, 10), "p4": F(1, 20), "p5": F(3, 10)},
    ),
    # n = 6, F = 1, C = 3, L = 6; O = {2, 4, 5}: 0.1/3 each (not a finite decimal).
    Case(
        "n6_thirds",
        "100.00",
        at(6, 12),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(6)), ("p4", at(8)), ("p5", at(9)), ("p6", at(11))],
        {
            p: F(3, 10) if p in ("p1", "p3", "p6") else F(1, 30)
            for p in ("p1", "p2", "p3", "p4", "p5", "p6")
        },
    ),
    # No touchpoint at or before creation: C is the first one after it, i.e. F.
    # M = {1, 4}: 0.45 each; O = {2, 3}: 0.05 each.
    Case(
        "none_before",
        "100.00",
        at(1),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(6)), ("p4", at(8))],
        {"p1": F(9, 20), "p2": F(1, 20), "p3": F(1, 20), "p4": F(9, 20)},
    ),
    # Created after every touchpoint, n = 4: C = L, M = {1, 4}, O = {2, 3}.
    Case(
        "all_before",
        "100.00",
        at(12),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(6)), ("p4", at(8))],
        {"p1": F(9, 20), "p2": F(1, 20), "p3": F(1, 20), "p4": F(9, 20)},
    ),
    # A touchpoint exactly at created_at counts as before it: C = 2, M = {1, 2, 4},
    # O = {3}. (Were it after, C would be 1: 0.45 / 0.05 / 0.05 / 0.45.)
    Case(
        "at_creation",
        "100.00",
        at(4),
        [("p1", at(2)), ("p2", at(4)), ("p3", at(6)), ("p4", at(8))],
        {"p1": F(3, 10), "p2": F(3, 10), "p3": F(1, 10), "p4": F(3, 10)},
    ),
    # Two partners sharing milestones: p1 holds F (1), an O (4) and L (5); p2 an O
    # (2) and C (3). Touchpoint credits 0.3, 0.05, 0.3, 0.05, 0.3 add up per partner.
    Case(
        "shared",
        "333.33",
        at(6, 12),
        [("p1", at(2)), ("p2", at(4)), ("p2", at(6)), ("p1", at(8)), ("p1", at(9))],
        {"p1": F(13, 20), "p2": F(7, 20)},
    ),
]


@pytest.fixture(scope="module")
def attribution(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, dict]:
    """Every case landed as one batch, ingested and built once: the w_shaped rows."""
    landing = tmp_path_factory.mktemp("landing")
    deals, touchpoints = [], []
    for case in CASES:
        deals.append(deal(case.deal_id, "won", case.amount, "USD", CLOSED, CLOSED,
                          created=case.created))  # fmt: skip
        touchpoints += [
            tp(f"{case.deal_id}-{i}", case.deal_id, partner_id, "demo", occurred)
            for i, (partner_id, occurred) in enumerate(case.touches, 1)
        ]
    batch: dict[str, list[dict[str, str]]] = {
        "organizations": [{"org_id": "o1", "name": "One", "updated_at": "2026-01-01"}],
        "partners": [partner(f"p{i}", "o1") for i in range(1, 7)],
        "deals": deals,
        "touchpoints": touchpoints,
    }
    write_batch(landing, "w_shaped", batch)
    ingest(db_url, landing)
    build(db_url, tmp_path_factory.mktemp("dbt"))
    rows = mart(db_url, "fct_partner_attribution")
    return {key: row for key, row in rows.items() if key[2] == "w_shaped"}


@pytest.mark.parametrize("case", CASES, ids=[c.deal_id for c in CASES])
def test_w_shaped_credits_by_hand(case: Case, attribution: dict[tuple, dict[str, Any]]) -> None:
    assert sum(case.credits.values()) == 1  # the hand values themselves
    got = {key[1]: row for key, row in attribution.items() if key[0] == case.deal_id}
    assert got.keys() == case.credits.keys()
    amount = Decimal(case.amount)
    expected_cents = reference.largest_remainder(
        int(amount * 100), {p: credit * int(amount * 100) for p, credit in case.credits.items()}
    )
    for partner_id, credit in case.credits.items():
        row = got[partner_id]
        assert row["credit"] == reference.shown_ratio(credit), (partner_id, row["credit"], credit)
        assert row["attributed_amount_usd"] == Decimal(expected_cents[partner_id]) / 100, partner_id
        assert row["touchpoint_count"] == sum(p == partner_id for p, _ in case.touches)
    # Per deal: credits add up to 1 within the 10-decimal rounding of each partner's
    # credit (docs/contract.md §4.2), and the cents to the deal's amount exactly.
    credit_sum = sum(row["credit"] for row in got.values())
    assert abs(credit_sum - 1) <= Decimal("0.5e-10") * len(got), credit_sum
    assert sum(row["attributed_amount_usd"] for row in got.values()) == amount


def test_creation_position_is_stored(db_url: str, attribution: dict[tuple, dict]) -> None:
    """The creation touch each case was designed around (the hand values above rely on it)."""
    rows = fetch(
        db_url,
        "select deal_id, min(creation_position), min(n) from intermediate.int_attribution__eligible_touchpoints"
        " where touchpoint_id is not null group by deal_id",
    )
    expected = {
        "n1": 1, "n2": 2, "n3_c_first": 1, "n3_c_last": 3, "n3_c_middle": 2, "n5_distinct": 3,
        "n6_thirds": 3, "none_before": 1, "all_before": 4, "at_creation": 2, "shared": 3,
    }  # fmt: skip
    assert {d: c for d, c, _ in rows} == expected
    assert {d: n for d, _, n in rows} == {c.deal_id: len(c.touches) for c in CASES}


def test_matches_the_reference(db_url: str, attribution: dict[tuple, dict]) -> None:
    """The same cases through tests/reference_attribution.py: every model, every deal."""
    assert assert_matches_reference(db_url) > len(CASES)
