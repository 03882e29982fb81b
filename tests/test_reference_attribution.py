"""Hand-worked examples for the reference attribution (`tests/reference_attribution.py`).

Every expected number is worked out by hand in a comment next to it; none is
computed by the code under test. No database is needed.

Shared scene unless a test says otherwise: organization o1 (partners p1..p5)
and organization o2 (partner px); deal d1 of o1, won, 1000 USD, created
2024-01-01 00:00 UTC, closed 2024-06-30 12:00 UTC.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.reference_attribution import (
    MODELS,
    RawData,
    collapse,
    creation_position,
    current_versions,
    expected_attribution,
    expected_channel_weights,
    expected_deals,
    expected_organizations,
    expected_partner_performance,
    largest_remainder,
    markov_chain,
    model_credits,
    train,
)

DAY = timedelta(days=1)


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


CREATED = ts(2024, 1, 1)
CLOSE = ts(2024, 6, 30, 12)
UPDATED = ts(2024, 7, 1)


class Raw:
    """Builds raw rows in load order.

    Each row gets the next line_no of the current batch unless `at=(batch_id,
    line_no)` is given; `new_batch()` starts the next batch.
    """

    def __init__(self) -> None:
        self.batch_id = 1
        self.line_no = 0
        self.tables: dict[str, list[dict]] = {
            "organizations": [],
            "partners": [],
            "deals": [],
            "touchpoints": [],
            "fx_rates": [],
        }

    def new_batch(self) -> Raw:
        self.batch_id += 1
        self.line_no = 0
        return self

    def _add(self, table: str, row: dict, at: tuple[int, int] | None) -> Raw:
        if at is None:
            self.line_no += 1
            at = (self.batch_id, self.line_no)
        self.tables[table].append({"batch_id": at[0], "line_no": at[1], **row})
        return self

    def org(self, org_id, name="Org", updated_at=UPDATED, at=None) -> Raw:
        row = {
            "org_id": org_id,
            "name": name,
            "plan": "pro",
            "created_at": CREATED,
            "updated_at": updated_at,
        }
        return self._add("organizations", row, at)

    def partner(self, partner_id, org_id="o1", updated_at=UPDATED, status="active", at=None):
        row = {
            "partner_id": partner_id,
            "org_id": org_id,
            "name": f"Partner {partner_id}",
            "partner_type": "reseller",
            "status": status,
            "created_at": CREATED,
            "updated_at": updated_at,
        }
        return self._add("partners", row, at)

    def deal(
        self,
        deal_id="d1",
        org_id="o1",
        amount="1000",
        currency="USD",
        status="won",
        created_at=CREATED,
        closed_at=CLOSE,
        updated_at=UPDATED,
        at=None,
    ) -> Raw:
        row = {
            "deal_id": deal_id,
            "org_id": org_id,
            "name": f"Deal {deal_id}",
            "amount": Decimal(amount),
            "currency": currency,
            "status": status,
            "created_at": created_at,
            "closed_at": closed_at,
            "updated_at": updated_at,
        }
        return self._add("deals", row, at)

    def tp(
        self,
        touchpoint_id,
        partner_id,
        occurred_at,
        deal_id="d1",
        org_id="o1",
        touchpoint_type="meeting",
        at=None,
    ) -> Raw:
        row = {
            "touchpoint_id": touchpoint_id,
            "org_id": org_id,
            "deal_id": deal_id,
            "partner_id": partner_id,
            "touchpoint_type": touchpoint_type,
            "occurred_at": occurred_at,
        }
        return self._add("touchpoints", row, at)

    def fx(self, currency, rate_date, usd_per_unit, at=None) -> Raw:
        row = {"currency": currency, "rate_date": rate_date, "usd_per_unit": Decimal(usd_per_unit)}
        return self._add("fx_rates", row, at)

    def data(self) -> RawData:
        return RawData(**{name: list(rows) for name, rows in self.tables.items()})


def scene() -> Raw:
    raw = Raw().org("o1").org("o2")
    for pid in ("p1", "p2", "p3", "p4", "p5"):
        raw.partner(pid, "o1")
    return raw.partner("px", "o2")


def credits_of(rows: dict, deal_id: str, model: str) -> dict[str, Decimal]:
    """{partner_id: credit} of one deal and model."""
    return {p: r["credit"] for (d, p, m), r in rows.items() if d == deal_id and m == model}


def to_10_decimals(value: float) -> Decimal:
    """A hand-worked credit as the marts show it: rounded to 10 decimals, halves up."""
    return Decimal(value).quantize(Decimal("1e-10"), rounding=ROUND_HALF_UP)


def assert_credits(rows: dict, deal_id: str, model: str, expected: dict[str, float]) -> None:
    """Credits equal the hand-worked ones rounded to 10 decimals (docs/contract.md §5.7)."""
    got = credits_of(rows, deal_id, model)
    assert set(got) == set(expected), (model, got)
    for partner_id, credit in expected.items():
        assert got[partner_id] == to_10_decimals(credit), (model, partner_id, got[partner_id])


def amounts_of(rows: dict, deal_id: str, model: str) -> dict[str, Decimal]:
    """{partner_id: attributed_amount_usd} of one deal and model."""
    return {
        p: r["attributed_amount_usd"]
        for (d, p, m), r in rows.items()
        if d == deal_id and m == model
    }


# ---------------------------------------------------------------------------
# Rule 3: the models on their own
# ---------------------------------------------------------------------------

# Ages (days before close) of n touchpoints one week apart, oldest first.
AGES = {1: [0.0], 2: [7.0, 0.0], 3: [14.0, 7.0, 0.0], 5: [28.0, 21.0, 14.0, 7.0, 0.0]}

# Credits per model and n, worked out by hand (half-life 7 days).
HAND_CREDITS = {
    "first_touch": {1: [1], 2: [1, 0], 3: [1, 0, 0], 5: [1, 0, 0, 0, 0]},
    "last_touch": {1: [1], 2: [0, 1], 3: [0, 0, 1], 5: [0, 0, 0, 0, 1]},
    "linear": {1: [1], 2: [0.5, 0.5], 3: [1 / 3, 1 / 3, 1 / 3], 5: [0.2] * 5},
    # weights 0.5 ** (age / 7): ages 0 -> 1; 7, 0 -> 0.5, 1 (sum 1.5 -> 1/3, 2/3);
    # 14, 7, 0 -> 0.25, 0.5, 1 (sum 1.75 = 7/4 -> 1/7, 2/7, 4/7);
    # 28..0 -> 1/16, 1/8, 1/4, 1/2, 1 (sum 31/16 -> 1/31, 2/31, 4/31, 8/31, 16/31).
    "time_decay": {
        1: [1],
        2: [1 / 3, 2 / 3],
        3: [1 / 7, 2 / 7, 4 / 7],
        5: [1 / 31, 2 / 31, 4 / 31, 8 / 31, 16 / 31],
    },
    # n = 3: 0.4, 0.2 / 1, 0.4; n = 5: 0.4, three middles of 0.2 / 3, 0.4.
    "position_based": {
        1: [1],
        2: [0.5, 0.5],
        3: [0.4, 0.2, 0.4],
        5: [0.4, 0.2 / 3, 0.2 / 3, 0.2 / 3, 0.4],
    },
    # Every touchpoint after the deal's creation: the creation touch is the first,
    # milestones {1, n}. n = 1, 2: no others, 1/n each; n = 3: 0.9 / 2 = 0.45 at
    # the ends, 0.1 in the middle; n = 5: 0.45, three of 0.1 / 3, 0.45.
    "w_shaped": {
        1: [1],
        2: [0.5, 0.5],
        3: [0.45, 0.1, 0.45],
        5: [0.45, 0.1 / 3, 0.1 / 3, 0.1 / 3, 0.45],
    },
    # A deal on its own has no training paths: it falls back to linear.
    "data_driven": {1: [1], 2: [0.5, 0.5], 3: [1 / 3, 1 / 3, 1 / 3], 5: [0.2] * 5},
}


def test_hand_table_covers_every_model():
    assert set(HAND_CREDITS) == set(MODELS)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("model", MODELS)
def test_model_credits(model, n):
    got = model_credits(model, AGES[n])
    assert got == pytest.approx(HAND_CREDITS[model][n], abs=1e-12)


def test_model_credits_of_no_touchpoint_is_empty():
    for model in MODELS:
        assert model_credits(model, []) == []


def test_time_decay_half_life_parameter():
    # H = 14: ages 14, 0 -> weights 0.5, 1 -> 1/3, 2/3.
    assert model_credits("time_decay", [14.0, 0.0], half_life_days=14) == pytest.approx(
        [1 / 3, 2 / 3], abs=1e-12
    )


def test_time_decay_fractional_age():
    # ages 3.5, 0 with H = 7: weights 2 ** -0.5 = 1/sqrt2, 1;
    # c1 = (1/sqrt2) / (1 + 1/sqrt2) = 1 / (sqrt2 + 1) = sqrt2 - 1 = 0.41421356...
    # c2 = 1 - c1 = 2 - sqrt2 = 0.58578643...
    got = model_credits("time_decay", [3.5, 0.0])
    assert got == pytest.approx([math.sqrt(2) - 1, 2 - math.sqrt(2)], abs=1e-12)


def test_time_decay_does_not_underflow():
    # H = 0.01 day: 0.5 ** (400 / 0.01) underflows to 0.0 as a float, yet the
    # credits are well defined: relative to the younger touchpoint the older one
    # weighs 0.5 ** (1 / 0.01) = 2 ** -100, so c = 2**-100 / (1 + 2**-100), 1 / (1 + 2**-100).
    got = model_credits("time_decay", [401.0, 400.0], half_life_days=0.01)
    assert got[0] == pytest.approx(2.0**-100, rel=1e-9)
    assert got[1] == pytest.approx(1.0, abs=1e-15)


def test_model_credits_rejects_bad_input():
    with pytest.raises(ValueError):
        model_credits("u_shaped", [0.0])
    with pytest.raises(ValueError):
        model_credits("time_decay", [0.0], half_life_days=0)


# ---------------------------------------------------------------------------
# Rules 2, 3 and 5 end to end: n = 1, 2, 3, 5 touchpoints, one partner each
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("model", MODELS)
def test_each_model_end_to_end(model, n):
    # Touchpoints of p1..p5 at 28, 21, 14, 7, 0 days before close; keep the last n.
    raw = scene().deal("d1", amount="1000")
    partners = ["p1", "p2", "p3", "p4", "p5"][5 - n :]
    for i, (pid, age) in enumerate(zip(partners, AGES[n], strict=True)):
        raw.tp(f"t{i}", pid, CLOSE - timedelta(days=age))
    rows = expected_attribution(raw.data())

    expected = {p: c for p, c in zip(partners, HAND_CREDITS[model][n], strict=True) if c > 0}
    assert_credits(rows, "d1", model, expected)
    # Cents (largest remainder): within a cent of credit × 1000, adding up to 1000.00.
    amounts = amounts_of(rows, "d1", model)
    assert sum(amounts.values()) == Decimal("1000.00")
    for partner_id, credit in expected.items():
        row = rows[("d1", partner_id, model)]
        assert row["attributed_amount_usd"] == round(row["attributed_amount_usd"], 2)
        assert abs(float(row["attributed_amount_usd"]) - 1000 * credit) < 0.01
        assert row["deal_amount_usd"] == Decimal("1000")
        assert row["org_id"] == "o1"
        assert row["closed_at"] == CLOSE
        assert row["touchpoint_count"] == 1


def test_amounts_are_cents_by_largest_remainder():
    # The scene of test_each_model_end_to_end, 1000 USD = 100000 cents.
    raw = scene().deal("d1", amount="1000")
    for i, (pid, age) in enumerate(zip(["p1", "p2", "p3", "p4", "p5"], AGES[5], strict=True)):
        raw.tp(f"t{i}", pid, CLOSE - timedelta(days=age))
    rows = expected_attribution(raw.data())
    # time decay 1/31, 2/31, 4/31, 8/31, 16/31: 3225.81, 6451.61, 12903.23, 25806.45,
    # 51612.90 cents; rounded down they total 99997, 3 cents left: to the remainders
    # 0.90 (p5), 0.81 (p1), 0.61 (p2), not 0.45 (p4) or 0.23 (p3).
    assert amounts_of(rows, "d1", "time_decay") == {
        "p1": Decimal("32.26"),
        "p2": Decimal("64.52"),
        "p3": Decimal("129.03"),
        "p4": Decimal("258.06"),
        "p5": Decimal("516.13"),
    }
    # position based 0.4, 1/15 three times, 0.4: 40000, 6666.67 (three equal remainders),
    # 40000 cents; 2 cents left: to the equal remainders of the smaller ids p2, p3.
    assert amounts_of(rows, "d1", "position_based") == {
        "p1": Decimal("400.00"),
        "p2": Decimal("66.67"),
        "p3": Decimal("66.67"),
        "p4": Decimal("66.66"),
        "p5": Decimal("400.00"),
    }
    # linear on the last three (p3, p4, p5), 1/3 each: 33333.33 cents each, 1 cent left: p3.
    rows = expected_attribution(
        scene().deal("d1", amount="1000")
        .tp("t1", "p5", CLOSE - 2 * DAY).tp("t2", "p3", CLOSE - DAY).tp("t3", "p4", CLOSE)
        .data()
    )  # fmt: skip
    assert amounts_of(rows, "d1", "linear") == {
        "p3": Decimal("333.34"),
        "p4": Decimal("333.33"),
        "p5": Decimal("333.33"),
    }


def test_largest_remainder_by_hand():
    # 100 cents in thirds: 33 each rounded down, 1 left, equal remainders: the smallest key.
    thirds = {"b": Fraction(100, 3), "a": Fraction(100, 3), "c": Fraction(100, 3)}
    assert largest_remainder(100, thirds) == {"a": 34, "b": 33, "c": 33}
    # 10 cents as 1/3 and 2/3: 3.33 and 6.67; the larger remainder wins over the smaller key.
    assert largest_remainder(10, {"a": Fraction(10, 3), "b": Fraction(20, 3)}) == {"a": 3, "b": 7}
    # Whole shares: nothing left over.
    assert largest_remainder(7, {"a": Fraction(7)}) == {"a": 7}


def test_partner_with_two_touchpoints_gets_the_sum():
    # t1 p1 at -14 d, t2 p2 at -7 d, t3 p1 at close; deal 900 USD.
    raw = scene().deal("d1", amount="900")
    raw.tp("t1", "p1", CLOSE - 14 * DAY).tp("t2", "p2", CLOSE - 7 * DAY).tp("t3", "p1", CLOSE)
    rows = expected_attribution(raw.data())

    # first/last touch: both touchpoints are p1's; p2 gets 0, so no row.
    assert_credits(rows, "d1", "first_touch", {"p1": 1})
    assert_credits(rows, "d1", "last_touch", {"p1": 1})
    # linear: 1/3 each -> p1 2/3 (600), p2 1/3 (300).
    assert_credits(rows, "d1", "linear", {"p1": 2 / 3, "p2": 1 / 3})
    # time decay: weights 0.25, 0.5, 1 (sum 1.75) -> p1 1.25/1.75 = 5/7, p2 2/7.
    assert_credits(rows, "d1", "time_decay", {"p1": 5 / 7, "p2": 2 / 7})
    # position based: 0.4, 0.2, 0.4 -> p1 0.8 (720), p2 0.2 (180).
    assert_credits(rows, "d1", "position_based", {"p1": 0.8, "p2": 0.2})
    # W-shaped: every touchpoint after creation, milestones {1, 3}: 0.45, 0.1, 0.45.
    assert_credits(rows, "d1", "w_shaped", {"p1": 0.9, "p2": 0.1})
    # data-driven: no training paths, linear.
    assert_credits(rows, "d1", "data_driven", {"p1": 2 / 3, "p2": 1 / 3})

    assert rows[("d1", "p1", "linear")]["attributed_amount_usd"] == Decimal("600.00")
    assert rows[("d1", "p2", "linear")]["attributed_amount_usd"] == Decimal("300.00")
    # 900 * 5/7 = 642.857142..., 900 * 2/7 = 257.142857...: 64285 and 25714 cents
    # rounded down, 1 cent left, to the larger remainder (0.71 > 0.29): p1.
    assert rows[("d1", "p1", "time_decay")]["attributed_amount_usd"] == Decimal("642.86")
    assert rows[("d1", "p2", "time_decay")]["attributed_amount_usd"] == Decimal("257.14")
    assert rows[("d1", "p1", "position_based")]["attributed_amount_usd"] == Decimal("720.00")
    # touchpoint_count is the partner's eligible touchpoints, whatever the model.
    for model in MODELS:
        assert rows[("d1", "p1", model)]["touchpoint_count"] == 2
    for model in ("linear", "time_decay", "position_based", "w_shaped", "data_driven"):
        assert rows[("d1", "p2", model)]["touchpoint_count"] == 1
    # first and last touch credit p1 alone; every other model both partners.
    assert len(rows) == 1 + 1 + 2 * (len(MODELS) - 2)

    facts = expected_deals(raw.data())["d1"]
    assert facts["eligible_touchpoint_count"] == 3
    assert facts["touching_partner_count"] == 2


def test_ties_on_occurred_at_are_broken_by_touchpoint_id():
    # tp-b (p1) and tp-a (p2) at the same instant, tp-b loaded first; tp-c (p3) at close.
    # Order: tp-a, tp-b, tp-c.
    same = CLOSE - DAY
    raw = scene().deal("d1")
    raw.tp("tp-b", "p1", same).tp("tp-a", "p2", same).tp("tp-c", "p3", CLOSE)
    rows = expected_attribution(raw.data())
    assert_credits(rows, "d1", "first_touch", {"p2": 1})
    assert_credits(rows, "d1", "last_touch", {"p3": 1})
    # position based: first tp-a (p2) 0.4, middle tp-b (p1) 0.2, last tp-c (p3) 0.4.
    assert_credits(rows, "d1", "position_based", {"p2": 0.4, "p1": 0.2, "p3": 0.4})
    # time decay: ages 1, 1, 0 -> weights 2**(-1/7) twice and 1.
    w = 2 ** (-1 / 7)  # 0.905723664...
    assert_credits(
        rows,
        "d1",
        "time_decay",
        {"p1": w / (2 * w + 1), "p2": w / (2 * w + 1), "p3": 1 / (2 * w + 1)},
    )


def test_touchpoint_id_ties_use_string_order():
    # "tp-10" < "tp-9" as strings ('1' < '9'), though 10 > 9 as numbers.
    raw = scene().deal("d1")
    raw.tp("tp-9", "p1", CLOSE - DAY).tp("tp-10", "p2", CLOSE - DAY)
    rows = expected_attribution(raw.data())
    assert_credits(rows, "d1", "first_touch", {"p2": 1})
    assert_credits(rows, "d1", "last_touch", {"p1": 1})
    # same age -> equal weights -> 1/2 each.
    assert_credits(rows, "d1", "time_decay", {"p1": 0.5, "p2": 0.5})


def test_time_decay_ages_in_fractional_days_end_to_end():
    # t1 at close - 3 days 12 hours (3.5 days), t2 at close -> sqrt2 - 1, 2 - sqrt2.
    raw = scene().deal("d1", amount="1000")
    raw.tp("t1", "p1", CLOSE - timedelta(days=3, hours=12)).tp("t2", "p2", CLOSE)
    rows = expected_attribution(raw.data())
    assert_credits(rows, "d1", "time_decay", {"p1": math.sqrt(2) - 1, "p2": 2 - math.sqrt(2)})
    # 1000 * (sqrt2 - 1) = 414.2135..., 1000 * (2 - sqrt2) = 585.7864...: 41421 and 58578
    # cents rounded down, 1 cent left, to the larger remainder (0.79 > 0.21): p2.
    assert amounts_of(rows, "d1", "time_decay") == {
        "p1": Decimal("414.21"),
        "p2": Decimal("585.79"),
    }
    # With H = 3.5 days: weights 0.5, 1 -> 1/3, 2/3.
    rows = expected_attribution(raw.data(), half_life_days=3.5)
    assert_credits(rows, "d1", "time_decay", {"p1": 1 / 3, "p2": 2 / 3})


# ---------------------------------------------------------------------------
# Rule 2: the eligibility window and who may be credited
# ---------------------------------------------------------------------------


def test_lookback_window_boundaries():
    # Close 2024-06-30 12:00. 365 days earlier (2024 has Feb 29): 2023-07-01 12:00.
    assert CLOSE - timedelta(days=365) == ts(2023, 7, 1, 12)
    raw = scene().deal("d1")
    raw.tp("t-edge", "p1", ts(2023, 7, 1, 12, 0, 0))  # exactly 365 days: in
    raw.tp("t-old", "p2", ts(2023, 7, 1, 11, 59, 59))  # 365 days + 1 s: out
    raw.tp("t-day", "p3", ts(2024, 6, 30, 0, 0, 0))  # same day, before close: in
    raw.tp("t-close", "p4", CLOSE)  # at the close instant: in
    raw.tp("t-after", "p5", ts(2024, 6, 30, 12, 0, 1))  # 1 s after close (same day): out
    raw.tp("t-next", "p5", ts(2024, 7, 1, 9))  # the next day: out
    rows = expected_attribution(raw.data())

    # Eligible, in order: t-edge (p1), t-day (p3), t-close (p4).
    assert_credits(rows, "d1", "linear", {"p1": 1 / 3, "p3": 1 / 3, "p4": 1 / 3})
    assert_credits(rows, "d1", "first_touch", {"p1": 1})
    assert_credits(rows, "d1", "last_touch", {"p4": 1})
    assert_credits(rows, "d1", "position_based", {"p1": 0.4, "p3": 0.2, "p4": 0.4})
    assert not any(p in ("p2", "p5") for (_, p, _) in rows)
    facts = expected_deals(raw.data())["d1"]
    assert facts["eligible_touchpoint_count"] == 3
    assert facts["touching_partner_count"] == 3

    # lookback_days = 30: t-edge drops out; t-day, t-close remain -> 1/2 each.
    rows = expected_attribution(raw.data(), lookback_days=30)
    assert_credits(rows, "d1", "linear", {"p3": 0.5, "p4": 0.5})
    assert expected_deals(raw.data(), lookback_days=30)["d1"]["eligible_touchpoint_count"] == 2


def test_partners_of_other_orgs_unknown_partners_and_foreign_touchpoints_are_not_credited():
    raw = scene().deal("d1", amount="1000")
    raw.tp("t1", "p1", CLOSE - 2 * DAY)  # p1 of o1: in
    raw.tp("t2", "px", CLOSE - DAY)  # px is a partner of o2: out
    raw.tp("t3", "p-ghost", CLOSE - DAY)  # no such partner: out
    raw.tp("t4", "p2", CLOSE - DAY, org_id="o2")  # touchpoint of another org: out
    rows = expected_attribution(raw.data())
    # Only t1 is eligible: n = 1, p1 gets everything in every model.
    for model in MODELS:
        assert_credits(rows, "d1", model, {"p1": 1})
        assert rows[("d1", "p1", model)]["attributed_amount_usd"] == Decimal("1000.00")
        assert rows[("d1", "p1", model)]["touchpoint_count"] == 1
    assert len(rows) == len(MODELS)  # one row per model: p1's
    facts = expected_deals(raw.data())["d1"]
    assert facts["eligible_touchpoint_count"] == 1
    assert facts["touching_partner_count"] == 1


def test_inactive_partner_of_the_org_is_still_credited():
    # The rules only require a current partner of the deal's org; status is not a criterion.
    raw = scene().partner("p9", "o1", status="inactive").deal("d1")
    raw.tp("t1", "p9", CLOSE - DAY)
    assert_credits(expected_attribution(raw.data()), "d1", "linear", {"p9": 1})


def test_open_and_lost_deals_get_no_rows():
    raw = scene()
    raw.deal("d-open", status="open", closed_at=None)
    raw.deal("d-lost", status="lost")
    raw.tp("t1", "p1", CLOSE - DAY, deal_id="d-open").tp("t2", "p1", CLOSE - DAY, deal_id="d-lost")
    assert expected_attribution(raw.data()) == {}
    facts = expected_deals(raw.data())
    # Open deals have no eligible touchpoints; lost ones do (rule 2: won or lost).
    assert facts["d-open"]["eligible_touchpoint_count"] == 0
    assert facts["d-open"]["is_partner_influenced"] is False
    assert facts["d-lost"]["eligible_touchpoint_count"] == 1
    assert facts["d-lost"]["is_won"] is False
    assert facts["d-lost"]["is_partner_influenced"] is True


def test_open_deal_that_kept_a_closed_at_is_treated_as_open():
    # Reopened: status open but closed_at still set (ingestion only requires closed_at
    # for won/lost). Open deals have no eligible touchpoints, and their FX reference
    # date is the creation date: created 2024-01-15 -> EUR rate of 2024-01-01 (1.05),
    # not the 2024-06-30 one (1.10): 1000 * 1.05 = 1050.
    raw = fx_scene()
    raw.deal("d1", currency="EUR", status="open", created_at=ts(2024, 1, 15), closed_at=CLOSE)
    raw.tp("t1", "p1", CLOSE - DAY)
    assert expected_attribution(raw.data()) == {}
    facts = expected_deals(raw.data())["d1"]
    assert facts["eligible_touchpoint_count"] == 0
    assert facts["touching_partner_count"] == 0
    assert facts["is_partner_influenced"] is False
    assert facts["amount_usd"] == Decimal("1050")


# ---------------------------------------------------------------------------
# Rule 4: currency
# ---------------------------------------------------------------------------


def fx_scene() -> Raw:
    raw = scene()
    raw.fx("EUR", date(2024, 1, 1), "1.05")
    raw.fx("EUR", date(2024, 6, 30), "1.00")  # replaced below by a later load
    raw.fx("EUR", date(2024, 7, 1), "1.25")  # after every reference date used: ignored
    raw.fx("JPY", date(2024, 7, 1), "0.0064")  # only after the reference date
    raw.new_batch()
    raw.fx("EUR", date(2024, 6, 30), "1.10")  # loaded last: this is the 2024-06-30 rate
    return raw


def test_latest_rate_on_or_before_the_close_date():
    raw = fx_scene().deal("d-eur", amount="1000", currency="EUR")
    raw.tp("t1", "p1", CLOSE - DAY, deal_id="d-eur")
    # Reference date 2024-06-30; rates on or before: 01-01 (1.05) and 06-30 (1.10,
    # the reloaded value); latest is 1.10 -> 1000 * 1.10 = 1100. 07-01 is ignored.
    facts = expected_deals(raw.data())["d-eur"]
    assert facts["amount_usd"] == Decimal("1100.00")
    row = expected_attribution(raw.data())[("d-eur", "p1", "linear")]
    assert row["deal_amount_usd"] == Decimal("1100.00")
    assert row["attributed_amount_usd"] == Decimal("1100.00")


def test_reference_date_is_the_utc_date_of_close():
    # Closed 2024-07-01 01:00 at +02:00 = 2024-06-30 23:00 UTC -> rate of 06-30 (1.10),
    # not the 07-01 rate (1.25): 2000 * 1.10 = 2200.
    closed = datetime(2024, 7, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    raw = fx_scene().deal("d-eur", amount="2000", currency="EUR", closed_at=closed)
    raw.tp("t1", "p1", CLOSE, deal_id="d-eur")
    assert expected_deals(raw.data())["d-eur"]["amount_usd"] == Decimal("2200")


def test_open_deal_uses_the_creation_date():
    # Open, created 2024-01-15: latest EUR rate on or before is 2024-01-01 (1.05):
    # 2000 * 1.05 = 2100.
    raw = fx_scene()
    raw.deal(
        "d-jan",
        amount="2000",
        currency="EUR",
        status="open",
        closed_at=None,
        created_at=ts(2024, 1, 15),
    )
    # Open, created 2023-12-31 23:59:59: no EUR rate on or before -> None.
    raw.deal(
        "d-dec",
        amount="2000",
        currency="EUR",
        status="open",
        closed_at=None,
        created_at=ts(2023, 12, 31, 23, 59, 59),
    )
    facts = expected_deals(raw.data())
    assert facts["d-jan"]["amount_usd"] == Decimal("2100")
    assert facts["d-dec"]["amount_usd"] is None


def test_deal_without_fx_rate_gets_no_rows():
    raw = fx_scene()
    raw.deal("d-gbp", amount="500", currency="GBP")  # no GBP rate at all
    raw.deal("d-jpy", amount="100000", currency="JPY")  # JPY rate only from 2024-07-01
    raw.tp("t1", "p1", CLOSE - DAY, deal_id="d-gbp").tp("t2", "p1", CLOSE - DAY, deal_id="d-jpy")
    assert expected_attribution(raw.data()) == {}
    facts = expected_deals(raw.data())
    for deal_id in ("d-gbp", "d-jpy"):
        assert facts[deal_id]["amount_usd"] is None
        # The deal itself is still described, touchpoints included.
        assert facts[deal_id]["eligible_touchpoint_count"] == 1
        assert facts[deal_id]["is_won"] is True


def test_usd_needs_no_rate():
    raw = scene().deal("d1", amount="1234.56", currency="USD")  # no fx_rates at all
    raw.tp("t1", "p1", CLOSE - DAY)
    assert expected_deals(raw.data())["d1"]["amount_usd"] == Decimal("1234.56")
    row = expected_attribution(raw.data())[("d1", "p1", "first_touch")]
    assert row["deal_amount_usd"] == Decimal("1234.56")
    assert row["attributed_amount_usd"] == Decimal("1234.56")


# ---------------------------------------------------------------------------
# Rule 1: versions
# ---------------------------------------------------------------------------


def test_current_versions_of_organizations_and_partners():
    raw = Raw()
    # o1: the newest updated_at wins though it was loaded first.
    raw.org("o1", name="new", updated_at=ts(2024, 2, 1), at=(1, 1))
    raw.org("o1", name="old", updated_at=ts(2024, 1, 1), at=(2, 1))
    # o2: same updated_at -> loaded last wins; batch comes before line: (2, 1) > (1, 9).
    raw.org("o2", name="first", updated_at=ts(2024, 1, 1), at=(1, 9))
    raw.org("o2", name="last", updated_at=ts(2024, 1, 1), at=(2, 1))
    raw.org("o2", name="middle", updated_at=ts(2024, 1, 1), at=(1, 2))
    raw.partner("p1", "o1", updated_at=ts(2024, 1, 1), at=(1, 3))
    raw.partner("p1", "o2", updated_at=ts(2024, 1, 1), at=(1, 4))
    current = current_versions(raw.data())
    assert {o["org_id"]: o["name"] for o in current.organizations} == {"o1": "new", "o2": "last"}
    assert [(p["partner_id"], p["org_id"]) for p in current.partners] == [("p1", "o2")]


def test_current_versions_of_touchpoints_and_fx_rates_ignore_updated_at():
    raw = Raw()
    raw.tp("t1", "p1", ts(2024, 5, 1), at=(1, 1))
    raw.tp("t1", "p1", ts(2024, 4, 1), at=(1, 2))  # loaded last, earlier occurred_at: wins
    raw.tp("t2", "p1", ts(2024, 4, 1), at=(2, 1))  # wins over (1, 7)
    raw.tp("t2", "p2", ts(2024, 5, 1), at=(1, 7))
    raw.fx("EUR", date(2024, 1, 1), "1.2", at=(3, 1))
    raw.fx("EUR", date(2024, 1, 1), "1.1", at=(2, 5))
    current = current_versions(raw.data())
    assert len(current.touchpoints) == 2
    by_id = {t["touchpoint_id"]: t for t in current.touchpoints}
    assert by_id["t1"]["occurred_at"] == ts(2024, 4, 1)
    assert by_id["t2"]["partner_id"] == "p1"
    assert [r["usd_per_unit"] for r in current.fx_rates] == [Decimal("1.2")]


def test_deal_won_then_lost_then_won():
    raw = scene()
    raw.deal("d1", status="won", amount="100", updated_at=ts(2024, 7, 1))
    raw.new_batch().deal("d1", status="lost", amount="200", updated_at=ts(2024, 7, 2))
    raw.new_batch().deal("d1", status="won", amount="300", updated_at=ts(2024, 7, 3))
    raw.tp("t1", "p1", CLOSE - DAY)
    rows = expected_attribution(raw.data())
    assert_credits(rows, "d1", "linear", {"p1": 1})
    assert rows[("d1", "p1", "linear")]["deal_amount_usd"] == Decimal("300")
    facts = expected_deals(raw.data())["d1"]
    assert (facts["status"], facts["amount"], facts["is_won"]) == ("won", Decimal("300"), True)


def test_deal_won_then_lost_is_not_attributed():
    raw = scene()
    raw.deal("d1", status="won", updated_at=ts(2024, 7, 1))
    raw.deal("d1", status="lost", updated_at=ts(2024, 7, 2))
    raw.tp("t1", "p1", CLOSE - DAY)
    assert expected_attribution(raw.data()) == {}
    assert expected_deals(raw.data())["d1"]["status"] == "lost"


def test_deal_version_by_updated_at_not_by_load_order():
    # A late-loaded older version (open) does not override the newer won one.
    raw = scene()
    raw.deal("d1", status="won", amount="500", updated_at=ts(2024, 7, 2))
    raw.new_batch().deal("d1", status="open", closed_at=None, updated_at=ts(2024, 7, 1))
    raw.tp("t1", "p1", CLOSE - DAY)
    rows = expected_attribution(raw.data())
    assert rows[("d1", "p1", "first_touch")]["deal_amount_usd"] == Decimal("500")
    # Equal updated_at: the version loaded last wins (lost).
    raw.new_batch().deal("d1", status="lost", updated_at=ts(2024, 7, 2))
    assert expected_attribution(raw.data()) == {}


def test_repeated_touchpoint_last_loaded_wins():
    raw = scene().deal("d1")
    raw.tp("t1", "p1", CLOSE - DAY)  # first load: in the window
    raw.tp("t2", "p2", CLOSE + DAY)  # first load: after close
    raw.new_batch()
    raw.tp("t1", "p1", CLOSE + DAY)  # reloaded after close: t1 is out
    raw.tp("t2", "p2", CLOSE - DAY)  # reloaded inside: t2 is in
    rows = expected_attribution(raw.data())
    assert_credits(rows, "d1", "linear", {"p2": 1})
    assert expected_deals(raw.data())["d1"]["eligible_touchpoint_count"] == 1


def test_partner_moved_to_another_org_is_not_credited():
    raw = scene()
    raw.partner("p1", "o2", updated_at=UPDATED + DAY)  # current p1 belongs to o2
    raw.deal("d1")
    raw.tp("t1", "p1", CLOSE - DAY).tp("t2", "p2", CLOSE - DAY)
    assert_credits(expected_attribution(raw.data()), "d1", "linear", {"p2": 1})


# ---------------------------------------------------------------------------
# Rule 6: sourcing
# ---------------------------------------------------------------------------


def test_earliest_referral_of_a_partner_of_the_org_sources_the_deal():
    raw = scene().deal("d1")
    raw.tp("s0", "px", ts(2023, 12, 1), touchpoint_type="referral")  # partner of o2: ignored
    raw.tp("s1", "p3", ts(2023, 12, 15), touchpoint_type="meeting")  # not a sourcing type
    raw.tp("s2", "p5", ts(2023, 12, 18), touchpoint_type="referral", org_id="o2")  # other org
    raw.tp("s3", "p-ghost", ts(2023, 12, 19), touchpoint_type="referral")  # unknown partner
    raw.tp("s4", "p2", ts(2023, 12, 20), touchpoint_type="referral")  # earliest valid
    raw.tp("s5", "p1", ts(2023, 12, 25), touchpoint_type="deal_registration")
    facts = expected_deals(raw.data())["d1"]
    assert facts["sourced_partner_id"] == "p2"
    assert facts["is_partner_sourced"] is True
    # s4 and s5 are 193 and 188 days before close, inside the lookback, so the
    # deal has eligible touchpoints; being sourced, it is not "influenced".
    assert facts["eligible_touchpoint_count"] == 3  # s1, s4, s5
    assert facts["is_partner_influenced"] is False


def test_sourcing_window_is_24_hours_after_creation():
    raw = scene()
    raw.deal("d-in").deal("d-out")
    # CREATED + 24 h = 2024-01-02 00:00:00.
    raw.tp("s1", "p1", ts(2024, 1, 2, 0, 0, 0), deal_id="d-in", touchpoint_type="referral")
    raw.tp("s2", "p1", ts(2024, 1, 2, 0, 0, 1), deal_id="d-out", touchpoint_type="referral")
    facts = expected_deals(raw.data())
    assert facts["d-in"]["sourced_partner_id"] == "p1"
    assert facts["d-in"]["is_partner_sourced"] is True
    assert facts["d-in"]["is_partner_influenced"] is False
    assert facts["d-out"]["sourced_partner_id"] is None
    assert facts["d-out"]["is_partner_sourced"] is False
    # s2 is still an eligible touchpoint (within 365 days of close): influenced.
    assert facts["d-out"]["eligible_touchpoint_count"] == 1
    assert facts["d-out"]["is_partner_influenced"] is True


def test_sourcing_has_no_lookback_and_ignores_status():
    raw = scene()
    # Referral two years before creation: sources the deal, but it is outside
    # the 365-day lookback, so no eligible touchpoint.
    raw.deal("d-old").tp("s1", "p1", ts(2022, 1, 1), deal_id="d-old", touchpoint_type="referral")
    # Open deal: sourced, never influenced (no eligible touchpoints).
    raw.deal("d-open", status="open", closed_at=None)
    raw.tp("s2", "p2", CREATED, deal_id="d-open", touchpoint_type="deal_registration")
    # Ties on occurred_at -> smaller touchpoint_id: r-a (p4) before r-b (p3).
    raw.deal("d-tie")
    raw.tp("r-b", "p3", CREATED, deal_id="d-tie", touchpoint_type="referral")
    raw.tp("r-a", "p4", CREATED, deal_id="d-tie", touchpoint_type="referral")
    facts = expected_deals(raw.data())
    assert facts["d-old"]["sourced_partner_id"] == "p1"
    assert facts["d-old"]["eligible_touchpoint_count"] == 0
    assert facts["d-old"]["is_partner_influenced"] is False
    assert facts["d-open"]["sourced_partner_id"] == "p2"
    assert facts["d-open"]["is_partner_sourced"] is True
    assert facts["d-open"]["is_partner_influenced"] is False
    assert facts["d-tie"]["sourced_partner_id"] == "p4"


def test_deal_without_partner_touchpoints():
    raw = scene().deal("d1")
    facts = expected_deals(raw.data())["d1"]
    assert facts == {
        "deal_id": "d1",
        "org_id": "o1",
        "deal_name": "Deal d1",
        "status": "won",
        "amount": Decimal("1000"),
        "currency": "USD",
        "amount_usd": Decimal("1000"),
        "created_at": CREATED,
        "closed_at": CLOSE,
        "is_won": True,
        "eligible_touchpoint_count": 0,
        "touching_partner_count": 0,
        "sourced_partner_id": None,
        "is_partner_sourced": False,
        "is_partner_influenced": False,
        # Won without eligible touchpoints: nothing to credit, no data-driven verdict.
        "data_driven_fallback": None,
        "data_driven_fallback_reason": None,
    }
    assert expected_attribution(raw.data()) == {}


# ---------------------------------------------------------------------------
# Invariants on a small hand-built dataset
# ---------------------------------------------------------------------------


def small_dataset() -> RawData:
    raw = scene()
    raw.fx("EUR", date(2024, 6, 1), "1.0843")
    # d1: 3 touchpoints, 2 partners, USD.
    raw.deal("d1", amount="900")
    raw.tp("a1", "p1", CLOSE - 30 * DAY, deal_id="d1")
    raw.tp("a2", "p2", CLOSE - 10 * DAY, deal_id="d1")
    raw.tp("a3", "p1", CLOSE - timedelta(hours=5), deal_id="d1")
    # d2: 5 touchpoints, 4 partners, EUR 1234.56 at 1.0843 = 1338.633408 USD.
    raw.deal("d2", amount="1234.56", currency="EUR")
    for i, (pid, days) in enumerate([("p1", 200), ("p2", 90), ("p3", 45.5), ("p4", 3), ("p3", 0)]):
        raw.tp(f"b{i}", pid, CLOSE - timedelta(days=days), deal_id="d2")
    # d3: one touchpoint.
    raw.deal("d3", amount="77.77").tp("c1", "p5", CLOSE - 100 * DAY, deal_id="d3")
    # d4 lost, d5 open, d6 without FX rate: no rows.
    raw.deal("d4", status="lost").tp("e1", "p1", CLOSE - DAY, deal_id="d4")
    raw.deal("d5", status="open", closed_at=None).tp("f1", "p1", CREATED, deal_id="d5")
    raw.deal("d6", currency="CHF").tp("g1", "p1", CLOSE - DAY, deal_id="d6")
    return raw.data()


def test_small_dataset_invariants():
    data = small_dataset()
    rows = expected_attribution(data)
    facts = expected_deals(data)
    # 1234.56 EUR at 1.0843 = 1338.633408 USD, in cents.
    assert facts["d2"]["amount_usd"] == Decimal("1338.63")
    assert {d for (d, _, _) in rows} == {"d1", "d2", "d3"}

    by_deal_model: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (deal_id, _, model), row in rows.items():
        by_deal_model[(deal_id, model)].append(row)
    for deal_id in ("d1", "d2", "d3"):
        amount_usd = facts[deal_id]["amount_usd"]
        for model in MODELS:
            group = by_deal_model[(deal_id, model)]
            # Credits rounded to 10 decimals: off 1 by at most 0.5e-10 per partner.
            total_credit = sum(r["credit"] for r in group)
            assert abs(total_credit - 1) <= Decimal("0.5e-10") * len(group)
            # Amounts in cents: exactly the deal's amount.
            assert sum(r["attributed_amount_usd"] for r in group) == amount_usd
            assert all(r["deal_amount_usd"] == amount_usd for r in group)

    # touchpoint_count per partner on d2: p3 has 2, the others 1 (same in every model).
    assert {p: r["touchpoint_count"] for (d, p, m), r in rows.items() if d == "d2"} == {
        "p1": 1,
        "p2": 1,
        "p3": 2,
        "p4": 1,
    }
    # d2 first touch: b0 (p1); last touch: b4 (p3); position: p1 0.4, p3 0.2/3 + 0.4, p2 and
    # p4 0.2/3 each.
    assert_credits(rows, "d2", "first_touch", {"p1": 1})
    assert_credits(rows, "d2", "last_touch", {"p3": 1})
    assert_credits(
        rows, "d2", "position_based", {"p1": 0.4, "p2": 0.2 / 3, "p3": 0.2 / 3 + 0.4, "p4": 0.2 / 3}
    )
    assert (facts["d2"]["eligible_touchpoint_count"], facts["d2"]["touching_partner_count"]) == (
        5,
        4,
    )


# ---------------------------------------------------------------------------
# Rules 8 and 9: partner performance and organizations
# ---------------------------------------------------------------------------


def test_partner_performance_and_organizations_by_hand():
    raw = scene().partner("p5", "o1", status="inactive", updated_at=UPDATED + DAY)
    # d1 (won, 1000 USD): p1 referral at creation (sources it), p2 a meeting.
    raw.tp("t1", "p1", CREATED, touchpoint_type="referral").tp("t2", "p2", CLOSE - DAY)
    # d2 (lost, 500 USD): p2 again; px (of o2) touches it too but is never counted for o1.
    raw.deal("d2", amount="500", status="lost").tp("t3", "p2", CLOSE - DAY, deal_id="d2")
    raw.tp("t4", "px", CLOSE - DAY, deal_id="d2", org_id="o1")
    raw.deal()
    perf = expected_partner_performance(raw.data())
    organizations = expected_organizations(raw.data())

    p1, p2, px = perf["p1"], perf["p2"], perf["px"]
    # p1 touched d1 only: 1 won, sourced it, influenced nothing; every model credits it.
    assert (p1["deals_touched"], p1["deals_won"], p1["deals_lost"]) == (1, 1, 0)
    assert (p1["sourced_deals_won"], p1["sourced_revenue_usd"]) == (1, Decimal("1000"))
    assert p1["influenced_revenue_usd"] == 0 and p1["win_rate"] == 1
    # linear: 2 touchpoints on d1 -> 500 each; first_touch all 1000 to p1, last_touch none.
    assert p1["attributed_revenue_usd_linear"] == Decimal("500.00")
    assert p1["attributed_revenue_usd_first_touch"] == Decimal("1000.00")
    assert p1["attributed_revenue_usd_last_touch"] == 0
    # p2 touched d1 (won, not sourced by p2) and d2 (lost): win rate 1/2, influenced 1000.
    assert (p2["deals_touched"], p2["deals_won"], p2["deals_lost"]) == (2, 1, 1)
    assert p2["win_rate"] == 0.5 and p2["influenced_revenue_usd"] == Decimal("1000")
    assert p2["avg_won_deal_size_usd"] == Decimal("1000")
    assert p2["first_touch_at"] == p2["last_touch_at"] == CLOSE - DAY
    # px belongs to o2: its touchpoint recorded under o1 touches nothing.
    assert px["deals_touched"] == 0 and px["win_rate"] is None and px["first_touch_at"] is None
    # o1: p1..p4 active, p5 inactive in its latest version -> 4; o2: px -> 1; both small.
    assert organizations["o1"]["active_partner_count"] == 4
    assert organizations["o2"]["active_partner_count"] == 1
    assert organizations["o1"]["tier"] == "small" and not organizations["o1"]["requires_pagination"]


def test_rates_and_averages_are_rounded():
    # p2 touches d1 (won, 1000.00), d3 (won, 500.01) and d2 (lost).
    raw = scene().deal("d1").deal("d2", status="lost").deal("d3", amount="500.01")
    for i, deal_id in enumerate(("d1", "d2", "d3")):
        raw.tp(f"t{i}", "p2", CLOSE - DAY, deal_id=deal_id)
    p2 = expected_partner_performance(raw.data())["p2"]
    # win rate 2/3 = 0.66666666666...: 10 decimals, the last rounded up.
    assert p2["win_rate"] == Decimal("0.6666666667")
    # (1000.00 + 500.01) / 2 = 750.005: a half cent, rounded away from zero.
    assert p2["avg_won_deal_size_usd"] == Decimal("750.01")
    assert p2["influenced_revenue_usd"] == Decimal("1500.01")


# ---------------------------------------------------------------------------
# Rule 3: W-shaped
# ---------------------------------------------------------------------------

ZERO_AGES = {n: [0.0] * n for n in range(1, 6)}


@pytest.mark.parametrize(
    ("n", "creation", "expected"),
    [
        (1, 1, [1]),  # F = C = L
        (2, 1, [0.5, 0.5]),  # C = F: milestones {1, 2}, no others
        (2, 2, [0.5, 0.5]),  # C = L
        (3, 2, [1 / 3, 1 / 3, 1 / 3]),  # three milestones, no others: 1/3 each
        (3, 3, [0.45, 0.1, 0.45]),  # C = L: milestones {1, 3}: 0.9 / 2; the middle 0.1
        (4, 2, [0.3, 0.3, 0.1, 0.3]),  # milestones {1, 2, 4}: 0.9 / 3 = 0.3; O = {3}: 0.1
        (5, 3, [0.3, 0.05, 0.3, 0.05, 0.3]),  # milestones {1, 3, 5}; O = {2, 4}: 0.1 / 2
        (5, 1, [0.45, 0.1 / 3, 0.1 / 3, 0.1 / 3, 0.45]),  # C = F: {1, 5}; O = {2, 3, 4}
    ],
)
def test_w_shaped_by_hand(n, creation, expected):
    got = model_credits("w_shaped", ZERO_AGES[n], creation_position=creation)
    assert got == pytest.approx(expected, abs=1e-12)
    assert sum(got) == 1


def test_w_shaped_rejects_a_creation_touch_outside_the_deal():
    with pytest.raises(ValueError):
        model_credits("w_shaped", ZERO_AGES[3], creation_position=4)
    with pytest.raises(ValueError):
        model_credits("w_shaped", ZERO_AGES[3], creation_position=0)


def test_creation_position():
    t = [CREATED - DAY, CREATED, CREATED + DAY]
    # The last touchpoint at or before creation (at counts) ...
    assert creation_position(t, CREATED) == 2
    assert creation_position(t, CREATED - timedelta(seconds=1)) == 1
    assert creation_position(t, CREATED + 2 * DAY) == 3
    # ... else the first one.
    assert creation_position(t, CREATED - 2 * DAY) == 1
    assert creation_position(t[2:], CREATED) == 1


def test_w_shaped_end_to_end():
    # d1 created 2024-01-01 00:00 UTC (written at 02:00+02:00). t1 p1 a day before,
    # t2 p2 and t3 p3 at the same instant as the creation (t2 < t3 by id), t4 p4
    # and t5 p5 later. Order t1..t5; creation touch: the last at or before creation,
    # t3. Milestones {1, 3, 5}: 0.3 each; t2, t4: 0.1 / 2 = 0.05 each.
    created = datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    raw = scene().deal("d1", created_at=created)
    raw.tp("t1", "p1", CREATED - DAY).tp("t3", "p3", CREATED).tp("t2", "p2", CREATED)
    raw.tp("t4", "p4", CREATED + DAY).tp("t5", "p5", CLOSE - DAY)
    rows = expected_attribution(raw.data())
    assert_credits(
        rows, "d1", "w_shaped", {"p1": 0.3, "p2": 0.05, "p3": 0.3, "p4": 0.05, "p5": 0.3}
    )
    # 1000 USD: 300.00, 50.00, 300.00, 50.00, 300.00.
    assert amounts_of(rows, "d1", "w_shaped")["p2"] == Decimal("50.00")
    # Every touchpoint after the creation: the first is the creation touch too.
    late = scene().deal("d1", created_at=CREATED - 10 * DAY)
    late.tp("t1", "p1", CREATED).tp("t2", "p2", CREATED + DAY).tp("t3", "p3", CLOSE)
    assert_credits(
        expected_attribution(late.data()), "d1", "w_shaped", {"p1": 0.45, "p2": 0.1, "p3": 0.45}
    )


# ---------------------------------------------------------------------------
# Rule 11: the Markov chain, the training sets, the data-driven credits
# ---------------------------------------------------------------------------


def test_data_driven_credits_from_channel_weights():
    # Weights 1/3, 2/3, 0 over the deal: sum 1 -> credits 1/3, 2/3, 0.
    weights = [Fraction(1, 3), Fraction(2, 3), Fraction(0)]
    assert model_credits("data_driven", ZERO_AGES[3], channel_weights=weights) == weights
    # Stored weights 0.25, 0.25, 0.5 and a repeat: sum 1.25 -> 0.2, 0.2, 0.4, 0.2.
    stored = [Decimal("0.25"), Decimal("0.25"), Decimal("0.5"), Decimal("0.25")]
    got = model_credits("data_driven", ZERO_AGES[4], channel_weights=stored)
    assert got == [Fraction(1, 5), Fraction(1, 5), Fraction(2, 5), Fraction(1, 5)]
    # No weights (the deal falls back) or weights summing to 0: linear.
    assert model_credits("data_driven", ZERO_AGES[4]) == [Fraction(1, 4)] * 4
    assert (
        model_credits("data_driven", ZERO_AGES[2], channel_weights=[0, 0]) == [Fraction(1, 2)] * 2
    )
    with pytest.raises(ValueError):
        model_credits("data_driven", ZERO_AGES[2], channel_weights=[Fraction(1)])
    with pytest.raises(ValueError):
        model_credits("data_driven", ZERO_AGES[2], channel_weights=[1, -1])


def test_collapse():
    assert collapse(["a", "a", "b", "a", "a"]) == ("a", "b", "a")
    assert collapse([]) == ()


def test_markov_chain_solved_by_hand():
    # Paths A A B A (won; collapsed to A B A), B (lost), A (lost).
    # Steps: start -> A 2, start -> B 1; A -> B 1, B -> A 1; A -> conversion 1,
    # A -> null 1, B -> null 1. Out of A: 3 steps, out of B: 2.
    #   x_A = 1/3 + 1/3 x_B,  x_B = 1/2 x_A  ->  x_A = 2/5, x_B = 1/5
    #   P = 2/3 * 2/5 + 1/3 * 1/5 = 1/3
    # Without A (start -> A and B -> A go to null): x_B = 0, P_-A = 0, RE(A) = 1.
    # Without B (A -> B goes to null): x_A = 1/3, P_-B = 2/3 * 1/3 = 2/9,
    #   RE(B) = 1 - (2/9) / (1/3) = 1/3.
    # Weights: 1 / (4/3) = 3/4 and (1/3) / (4/3) = 1/4.
    result = markov_chain([(["A", "A", "B", "A"], True), (["B"], False), (["A"], False)])
    assert result.conversion_probability == Fraction(1, 3)
    assert result.removal_effects == {"A": 1, "B": Fraction(1, 3)}
    assert result.weights == {"A": Fraction(3, 4), "B": Fraction(1, 4)}


def test_markov_chain_two_steps_by_hand():
    # referral demo (won), demo (lost): start -> referral 1/2, start -> demo 1/2,
    # referral -> demo 1, demo -> conversion 1/2, demo -> null 1/2.
    # P = 1/2 * 1/2 + 1/2 * 1/2 = 1/2. Without referral: 1/4, RE = 1/2.
    # Without demo: 0, RE = 1. Weights 1/3, 2/3.
    result = markov_chain([(("referral", "demo"), True), (("demo",), False)])
    assert result.conversion_probability == Fraction(1, 2)
    assert result.removal_effects == {"referral": Fraction(1, 2), "demo": 1}
    assert result.weights == {"referral": Fraction(1, 3), "demo": Fraction(2, 3)}


def test_markov_chain_edge_cases():
    # One won path: every channel on it is necessary, RE 1 each, equal weights.
    one = markov_chain([(("a", "b", "c"), True)])
    assert one.conversion_probability == 1
    assert one.removal_effects == {"a": 1, "b": 1, "c": 1}
    assert one.weights == {"a": Fraction(1, 3), "b": Fraction(1, 3), "c": Fraction(1, 3)}
    # Nothing converts: P = 0, every removal effect and weight 0.
    lost = markov_chain([(("a", "b"), False), (("b",), False)])
    assert lost.conversion_probability == 0
    assert lost.removal_effects == lost.weights == {"a": 0, "b": 0}
    # A channel only on lost paths removes nothing: RE 0, weight 0.
    mixed = markov_chain([(("a",), True), (("b",), False)])
    assert mixed.removal_effects == {"a": 1, "b": 0} and mixed.weights == {"a": 1, "b": 0}
    assert markov_chain([]).conversion_probability == 0
    with pytest.raises(ValueError):
        markov_chain([((), True)])


def _shortcut_removal_effects(paths: list[tuple[tuple[str, ...], bool]]) -> dict[str, Fraction]:
    """The SQL solver's formula (macro create_markov_solver), in fractions:
    RE(c) = h(c) x(c) / P with N = (I - Q)^-1, x = N r, h(c) = (s N)[c] / N[c][c]."""
    paths = [(collapse(p), won) for p, won in paths]
    channels = sorted({c for p, _ in paths for c in p})
    k, at = len(channels), {c: i for i, c in enumerate(channels)}
    out, conv, start = [0] * k, [0] * k, [0] * k
    steps = [[0] * k for _ in range(k)]
    for path, won in paths:
        start[at[path[0]]] += 1
        for a, b in pairwise(path):
            steps[at[a]][at[b]] += 1
        out[at[path[-1]]] += 1
        conv[at[path[-1]]] += won
    for i in range(k):
        out[i] += sum(steps[i])
    # Gauss-Jordan on [I - Q | I].
    rows = [
        [Fraction(int(i == j)) - Fraction(steps[i][j], out[i]) for j in range(k)]
        + [Fraction(int(i == j)) for j in range(k)]
        for i in range(k)
    ]
    for col in range(k):
        pivot = next(r for r in range(col, k) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(k):
            factor = rows[r][col]
            if r != col and factor != 0:
                rows[r] = [v - factor * w for v, w in zip(rows[r], rows[col], strict=True)]
    inverse = [row[k:] for row in rows]
    x = [sum(inverse[i][j] * Fraction(conv[j], out[j]) for j in range(k)) for i in range(k)]
    s = [Fraction(v, len(paths)) for v in start]
    p = sum(s[i] * x[i] for i in range(k))
    return {
        c: sum(s[i] * inverse[i][j] for i in range(k)) / inverse[j][j] * x[j] / p
        for c, j in at.items()
    }


@given(
    st.lists(
        st.tuples(st.lists(st.sampled_from("abcd"), min_size=1, max_size=5), st.booleans()),
        min_size=1,
        max_size=8,
    ).filter(lambda paths: any(won for _, won in paths))
)
@hypothesis_settings(max_examples=60, deadline=None)
def test_markov_chain_agrees_with_the_sql_solvers_shortcut(paths):
    """The definition (one system per removed channel) and the one-inversion
    shortcut the SQL takes give the same removal effects, exactly."""
    paths = [(tuple(p), won) for p, won in paths]
    assert markov_chain(paths).removal_effects == _shortcut_removal_effects(paths)


def test_training_fallback_reasons_in_order():
    won, lost = (("a", "b"), True), (("b",), False)
    # Too few paths comes first, even with no win among them.
    assert train([lost], min_paths=2).fallback_reason == "fewer than 2 training paths"
    assert train([], min_paths=1).fallback_reason == "fewer than 1 training paths"
    assert train([lost, lost], min_paths=2).fallback_reason == (
        "no won deal in the training window"
    )
    # Three channels against a cap of 2; with no win, the win reason comes first.
    many = [(("a", "b", "c"), True), lost]
    assert train(many, min_paths=2, max_channels=2).fallback_reason == (
        "more than 2 channels in the training window"
    )
    assert train([(("a", "b", "c"), False)], min_paths=1, max_channels=2).fallback_reason == (
        "no won deal in the training window"
    )
    training = train([won, lost], min_paths=2, max_channels=2)
    assert training.fallback_reason is None and training.chain is not None
    # The default needs 20 paths.
    assert train([won] * 19).fallback_reason == "fewer than 20 training paths"
    assert train([won] * 20).fallback_reason is None


def test_training_counts_and_stored_values():
    # a b a (won), b (lost), a (lost): a and b on 2 paths each (a once per path),
    # a on 1 won path, b on 1. The chain is test_markov_chain_solved_by_hand's with
    # the two channels renamed: RE 1 and 1/3, weights 3/4 and 1/4.
    training = train([(("a", "b", "a"), True), (("b",), False), (("a",), False)], min_paths=3)
    assert (training.training_paths, training.training_conversions) == (3, 1)
    assert training.paths == {"a": 2, "b": 2} and training.conversions == {"a": 1, "b": 1}
    # Stored: 10 decimals, halves away from zero, from the exact values.
    assert training.stored() == {
        "a": (Decimal("1"), Decimal("0.75")),
        "b": (Decimal("0.3333333333"), Decimal("0.25")),
    }
    # 1/3 and 2/3 stored as 0.3333333333 and 0.6666666667.
    two = train([(("referral", "demo"), True), (("demo",), False)], min_paths=2)
    assert two.stored() == {
        "referral": (Decimal("0.5"), Decimal("0.3333333333")),
        "demo": (Decimal("1"), Decimal("0.6666666667")),
    }
    assert train([(("b",), False)], min_paths=1).stored() == {}


def data_driven_scene() -> Raw:
    """o1: d-may1 won (referral p1, demo p2) and d-may2 lost (demo p3), closed in
    May 2024; d1 won in June (CLOSE): intro p1, referral p2, demo p4. o2: d-o2 won
    in May (demo px)."""
    may = ts(2024, 5, 15)
    raw = scene()
    raw.deal("d-may1", closed_at=may).deal("d-may2", status="lost", closed_at=may + DAY)
    raw.tp("m1", "p1", may - 3 * DAY, deal_id="d-may1", touchpoint_type="referral")
    raw.tp("m2", "p2", may - DAY, deal_id="d-may1", touchpoint_type="demo")
    raw.tp("m3", "p3", may, deal_id="d-may2", touchpoint_type="demo")
    raw.deal("d-o2", org_id="o2", closed_at=may)
    raw.tp("x1", "px", may - DAY, deal_id="d-o2", org_id="o2", touchpoint_type="demo")
    raw.deal("d1", amount="1000")
    raw.tp("t1", "p1", CLOSE - 3 * DAY, touchpoint_type="intro")
    raw.tp("t2", "p2", CLOSE - 2 * DAY, touchpoint_type="referral")
    raw.tp("t3", "p4", CLOSE - DAY, touchpoint_type="demo")
    return raw


def test_data_driven_end_to_end():
    data = data_driven_scene().data()
    rows = expected_attribution(data, min_paths=2)
    # June's training set (o1's deals closed in May): referral demo (won), demo (lost):
    # weights 1/3 and 2/3, stored 0.3333333333 and 0.6666666667 (test_markov_chain_two_steps_by_hand).
    # d1: intro weighs 0 (not in the training paths), referral 0.3333333333, demo
    # 0.6666666667; sum 1.0000000000 -> p1 0 (no row), p2 0.3333333333, p4 0.6666666667.
    assert credits_of(rows, "d1", "data_driven") == {
        "p2": Decimal("0.3333333333"),
        "p4": Decimal("0.6666666667"),
    }
    # 100000 cents: 33333.33333 and 66666.66667 -> 33333 and 66666, the cent left to p4.
    assert amounts_of(rows, "d1", "data_driven") == {
        "p2": Decimal("333.33"),
        "p4": Decimal("666.67"),
    }
    # May's deals have no training paths (nothing closed before May): linear.
    assert credits_of(rows, "d-may1", "data_driven") == credits_of(rows, "d-may1", "linear")
    facts = expected_deals(data, min_paths=2)
    assert (facts["d1"]["data_driven_fallback"], facts["d1"]["data_driven_fallback_reason"]) == (
        False,
        None,
    )
    assert facts["d-may1"]["data_driven_fallback"] is True
    assert facts["d-may1"]["data_driven_fallback_reason"] == "fewer than 2 training paths"
    assert facts["d-may2"]["data_driven_fallback"] is None  # lost
    # The weights in use: June of o1 only (May and o2's May fall back).
    june = date(2024, 6, 1)
    assert expected_channel_weights(data, min_paths=2) == {
        ("o1", june, "referral"): {
            "paths": 1,
            "conversions": 1,
            "removal_effect": Decimal("0.5"),
            "weight": Decimal("0.3333333333"),
        },
        ("o1", june, "demo"): {
            "paths": 2,
            "conversions": 1,
            "removal_effect": Decimal("1"),
            "weight": Decimal("0.6666666667"),
        },
    }
    # The default, 20 paths: every deal falls back, no weights in use.
    assert expected_channel_weights(data) == {}
    assert expected_deals(data)["d1"]["data_driven_fallback_reason"] == (
        "fewer than 20 training paths"
    )
    assert credits_of(expected_attribution(data), "d1", "data_driven") == credits_of(
        rows, "d1", "linear"
    )
    # partner_performance carries every model's column, data-driven included.
    perf = expected_partner_performance(data, min_paths=2)
    assert perf["p4"]["attributed_revenue_usd_data_driven"] == Decimal("666.67")
    assert perf["p1"]["attributed_revenue_usd_data_driven"] == Decimal("500.00")  # d-may1
    assert {f"attributed_revenue_usd_{m}" for m in MODELS} <= perf["p1"].keys()


def test_data_driven_deal_whose_channels_weigh_0():
    # d2, won in June like d1, only intro touchpoints: no intro in June's training paths.
    raw = data_driven_scene().deal("d2", amount="90")
    raw.tp("u1", "p1", CLOSE - DAY, deal_id="d2", touchpoint_type="intro")
    raw.tp("u2", "p2", CLOSE, deal_id="d2", touchpoint_type="intro")
    data = raw.data()
    facts = expected_deals(data, min_paths=2)["d2"]
    assert facts["data_driven_fallback"] is True
    assert facts["data_driven_fallback_reason"] == "its channels weigh 0 in its month"
    rows = expected_attribution(data, min_paths=2)
    assert credits_of(rows, "d2", "data_driven") == {"p1": Decimal("0.5"), "p2": Decimal("0.5")}
    # June's weights are still in use (d1 is credited by them).
    assert expected_deals(data, min_paths=2)["d1"]["data_driven_fallback"] is False


def test_data_driven_month_fallbacks_end_to_end():
    data = data_driven_scene().data()
    # Two channels in June's training set against a cap of 1.
    assert (
        expected_deals(data, min_paths=2, max_channels=1)["d1"]["data_driven_fallback_reason"]
        == "more than 1 channels in the training window"
    )
    assert expected_channel_weights(data, min_paths=2, max_channels=1) == {}
    # d-may1 turns lost: no won deal among June's training paths.
    raw = data_driven_scene().deal("d-may1", status="lost", closed_at=ts(2024, 5, 15))
    facts = expected_deals(raw.data(), min_paths=2)
    assert facts["d1"]["data_driven_fallback_reason"] == "no won deal in the training window"


def test_training_window_is_the_twelve_utc_months_before():
    # June 2024 trains on deals closed in [2023-06-01 00:00 UTC, 2024-06-01 00:00 UTC).
    # Four lost deals of o1, each with a demo touchpoint a day before its close, and
    # d1 (won, June). Only "in" and "last" are in the window.
    minus_two = timezone(timedelta(hours=-2))
    closes = {
        "in": ts(2023, 6, 1),  # the first instant of the window
        "out": ts(2023, 5, 31, 23, 59, 59),  # just before it
        "last": datetime(2024, 5, 31, 21, 59, 59, tzinfo=minus_two),  # 23:59:59 UTC
        "june": datetime(2024, 5, 31, 22, tzinfo=minus_two),  # 2024-06-01 00:00 UTC: June
    }
    raw = scene()
    for deal_id, closed_at in closes.items():
        raw.deal(deal_id, status="lost", created_at=ts(2023, 1, 1), closed_at=closed_at)
        raw.tp(f"t-{deal_id}", "p1", closed_at - DAY, deal_id=deal_id, touchpoint_type="demo")
    # A lost deal whose only touchpoint is outside its own lookback: no path.
    raw.deal("stale", status="lost", closed_at=ts(2024, 3, 1))
    raw.tp("t-stale", "p1", ts(2024, 3, 1) - 400 * DAY, deal_id="stale", touchpoint_type="demo")
    raw.deal("d1").tp("t1", "p2", CLOSE - DAY, touchpoint_type="demo")
    facts = expected_deals(raw.data(), min_paths=3)
    # "in" and "last": 2 paths, fewer than 3.
    assert facts["d1"]["data_driven_fallback_reason"] == "fewer than 3 training paths"
    # With 2 needed: enough paths, but none won.
    facts = expected_deals(raw.data(), min_paths=2)
    assert facts["d1"]["data_driven_fallback_reason"] == "no won deal in the training window"
