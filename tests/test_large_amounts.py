"""Attribution stays exact at the largest amounts the contract allows (10^15), in any currency.

A credit with PostgreSQL's default ~20 significant digits, multiplied by a USD
amount of ~10^18 or more (10^15 units at a rate far above 1), errs by cents: the
linear model once missed the XAU and XTR deals below by 0.02 USD and 10^10 USD.
The marts compute shares with 40 decimals and split each deal's cents by largest
remainder (docs/contract.md §5.7), so a deal's attributed amounts add up to its
USD amount in cents exactly under every model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg
import pytest

from orchestration.dbt_invocation import run_dbt
from platform_core.attribution_models import attribution_model_names
from tests.dbt_harness import ingest

BIG = "1000000000000000"  # 10^15: the largest amount ingestion accepts
ALMOST = "999999999999999.99"

# Three partners of one organization; one deal per case, each touched by all three
# at different ages so that time decay and position-based credits are uneven.
DEALS = [
    # deal_id, amount, currency
    ("big-usd", BIG, "USD"),
    ("almost-eur", ALMOST, "EUR"),
    ("big-xau", BIG, "XAU"),  # a high rate: 10^15 units are worth ~2.3e18 USD
    ("big-top", BIG, "XTR"),  # the largest rate the contract allows: 10^30 USD
]
RATES = [("EUR", "1.0837"), ("XAU", "2345.678912"), ("XTR", BIG)]
CLOSE = datetime(2026, 1, 20, 12, tzinfo=UTC)
AGES_HOURS = [(1, 0), (2, 31), (3, 137)]  # (partner number, hours before close)


def _write_landing(landing: Path) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "organizations.csv").write_text(
        "org_id,name,plan,created_at,updated_at\norg_big,Big Org,enterprise,2025-01-01,2025-01-01\n"
    )
    (landing / "partners.csv").write_text(
        "partner_id,org_id,name,partner_type,status,created_at,updated_at\n"
        + "".join(
            f"big_p{n},org_big,Partner {n},reseller,active,2025-01-01,2025-01-01\n"
            for n in (1, 2, 3)
        )
    )
    (landing / "fx_rates.csv").write_text(
        "currency,rate_date,usd_per_unit\n"
        + "".join(f"{currency},2026-01-01,{rate}\n" for currency, rate in RATES)
    )
    (landing / "deals.csv").write_text(
        "deal_id,org_id,name,amount,currency,status,created_at,closed_at,updated_at\n"
        + "".join(
            f"{deal},org_big,{deal},{amount},{currency},won,2026-01-05T00:00:00Z,"
            "2026-01-20T12:00:00Z,2026-01-20T12:00:00Z\n"
            for deal, amount, currency in DEALS
        )
    )
    rows = []
    for deal, _, _ in DEALS:
        for partner, hours in AGES_HOURS:
            rows.append((f"{deal}-t{partner}", deal, f"big_p{partner}", hours))
    (landing / "touchpoints.csv").write_text(
        "touchpoint_id,org_id,deal_id,partner_id,touchpoint_type,occurred_at\n"
        + "".join(
            f"{tid},org_big,{deal},{partner},referral,{_hours_before_close(hours)}\n"
            for tid, deal, partner, hours in rows
        )
    )


def _hours_before_close(hours: int) -> str:
    return (CLOSE - timedelta(hours=hours)).isoformat()


@pytest.fixture(scope="module")
def built(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    landing = tmp_path_factory.mktemp("landing")
    _write_landing(landing)
    ingest(db_url, landing)
    # Models, unit tests and every data test (the singular invariants among them).
    result = run_dbt(db_url, ["build"], capture=True, target_path=tmp_path_factory.mktemp("dbt"))
    assert result.returncode == 0, result.stdout[-6000:]
    return db_url


def test_deals_are_loaded_at_full_precision(built: str) -> None:
    """amount as loaded; amount_usd the exact product, rounded to cents once."""
    with psycopg.connect(built) as conn:
        rows = {
            deal: (amount, amount_usd)
            for deal, amount, amount_usd in conn.execute(
                "select deal_id, amount, amount_usd from marts.fct_deals"
            )
        }
    cent = Decimal("0.01")
    assert rows["big-usd"] == (Decimal(BIG), Decimal(BIG))
    # 999999999999999.99 × 1.0837 = 1083699999999999.989163 → …999.99
    assert rows["almost-eur"][0] == Decimal(ALMOST)
    assert rows["almost-eur"][1] == (Decimal(ALMOST) * Decimal("1.0837")).quantize(
        cent, rounding=ROUND_HALF_UP
    )
    assert rows["big-top"][1] == Decimal(BIG) * Decimal(BIG)
    assert all(usd.as_tuple().exponent == -2 for _, usd in rows.values())  # cents


def test_attributed_amounts_sum_exactly_and_credits_to_one(built: str) -> None:
    with psycopg.connect(built) as conn:
        groups = conn.execute(
            """
            select a.deal_id, a.attribution_model, count(*), sum(a.credit),
                   sum(a.attributed_amount_usd), max(d.amount_usd),
                   bool_and(a.attributed_amount_usd > 0)
            from marts.fct_partner_attribution as a
            join marts.fct_deals as d using (deal_id)
            group by 1, 2
            """
        ).fetchall()
    # Every deal under every declared model.
    assert len(groups) == len(DEALS) * len(attribution_model_names())
    for deal, model, partners, credit, attributed, amount_usd, positive in groups:
        assert abs(credit - 1) <= Decimal("1e-9"), (deal, model, credit)
        # Exactly, not within a cent: numeric sums of the stored amounts.
        assert attributed == amount_usd, (deal, model, attributed - amount_usd)
        assert positive, (deal, model)
        if model in ("linear", "time_decay", "position_based"):
            assert partners == 3, (deal, model)


def test_each_amount_is_its_credit_share_of_the_deal(built: str) -> None:
    """Each amount differs from credit × amount only by rounding: the credit shown
    is rounded to 10 decimals (off by at most 0.5e-10 × the deal's amount) and
    the amount to cents by largest remainder (off by less than 0.01)."""
    with psycopg.connect(built) as conn:
        excess = conn.execute(
            """
            select max(abs(attributed_amount_usd - credit * deal_amount_usd)
                       - (0.00000000005 * deal_amount_usd + 0.01))
            from marts.fct_partner_attribution
            """
        ).fetchone()[0]
    assert excess <= 0
