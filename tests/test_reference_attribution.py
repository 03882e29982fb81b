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

import pytest

from tests.reference_attribution import (
    MODELS,
    RawData,
    current_versions,
    expected_attribution,
    expected_deals,
    expected_organizations,
    expected_partner_performance,
    largest_remainder,
    model_credits,
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
    for model in ("linear", "time_decay", "position_based"):
        assert rows[("d1", "p2", model)]["touchpoint_count"] == 1
    assert len(rows) == 8  # 1 + 1 + 2 + 2 + 2

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
    assert len(rows) == 5
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
