"""Commission rules (docs/contract.md §8) through the real pipeline, each with a hand-made case.

One dataset, one organization per rule (plans are per organization, so the cases
cannot touch each other), loaded by the real loader and built by dbt once; the
expected lines are worked out by hand below. Then the §8.5 story on two more
organizations: a deal paid in a closed month, lost, won again; a deal won late into a
closed month; another organization that never closed — with the real `close_period`
and two more builds, the closed months' ledger rows hashed after each step. Every
build also runs the two §8.8 checks. Then the ledger's append-only triggers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import psycopg
import pytest

from commissions import OrgClose
from tests.commission_helpers import (
    LineKey,
    build_lines,
    close,
    deal,
    land,
    ledger_digest,
    ledger_rows,
    lines,
    org,
    partner,
    plan,
    statements,
    touch,
)

D = Decimal


def one_touch(deal_id: str, org_id: str, partner_id: str, closed_at: str, amount: str,
              occurred_at: str = "2026-03-01T00:00:00Z") -> tuple[dict, dict]:  # fmt: skip
    """A won deal credited wholly to one partner (one touchpoint)."""
    return deal(deal_id, org_id, closed_at, amount), touch(f"t_{deal_id}", deal_id, partner_id,
                                                            org_id, occurred_at)  # fmt: skip


# --- the rule cases ------------------------------------------------------------------------

# Plan precedence (§8.1). prec_1 (900.00, linear over pa, pb, pc: 300.00 each), closed
# 2026-03-10. pa: two partner plans beat the later org defaults; the later one wins.
# pb: the defaults of 03-01 beat the one of 01-01, and of those two the greater plan_id.
# pc: two partner plans of the same day, the greater plan_id. prec_x's plan names pb,
# is the latest and has the greatest plan_id, but belongs to another organization.
PREC_PLANS = [
    plan("prec_p1", "prec", "pa", rate="0.20", effective_from="2026-01-01"),
    plan("prec_p2", "prec", "pa", rate="0.30", effective_from="2026-02-01"),
    plan("prec_d1", "prec", rate="0.10", effective_from="2026-01-01"),
    plan("prec_d2", "prec", rate="0.06", effective_from="2026-03-01"),
    plan("prec_d3", "prec", rate="0.07", effective_from="2026-03-01"),
    plan("prec_pc_a", "prec", "pc", rate="0.04", effective_from="2026-02-01"),
    plan("prec_pc_b", "prec", "pc", rate="0.05", effective_from="2026-02-01"),
    plan("zz_elsewhere", "prec_x", "pb", rate="0.90", effective_from="2026-03-05"),
]
PREC_EXPECTED = {
    ("prec", "2026-03", "prec_1", "pa"): ("prec_p2", "90.00"),
    ("prec", "2026-03", "prec_1", "pb"): ("prec_d3", "21.00"),
    ("prec", "2026-03", "prec_1", "pc"): ("prec_pc_b", "15.00"),
}

# Effective dates (§8.1): [effective_from, effective_to) on the UTC date of closed_at.
# eff_window (10 %) covers 2026-03-10 to 2026-03-19; eff_base (1 %) is the fallback.
EFF_DEALS = {
    "eff_on_from": ("2026-03-10T00:00:00Z", "eff_window", "10.00"),
    "eff_last_second": ("2026-03-19T23:59:59Z", "eff_window", "10.00"),
    "eff_on_to": ("2026-03-20T00:00:00Z", "eff_base", "1.00"),  # exclusive end
    # 23:30 at -02:00 is 01:30 UTC of the next day: the UTC date decides.
    "eff_utc_into": ("2026-03-09T23:30:00-02:00", "eff_window", "10.00"),
    "eff_utc_out": ("2026-03-19T23:30:00-02:00", "eff_base", "1.00"),
    # 01:00 at +02:00 on the 10th is still the 9th in UTC.
    "eff_utc_before": ("2026-03-10T01:00:00+02:00", "eff_base", "1.00"),
}
EFF_PLANS = [
    plan("eff_base", "eff", rate="0.01", effective_from="2026-01-01"),
    plan("eff_window", "eff", rate="0.10", effective_from="2026-03-10", effective_to="2026-03-20"),
]

# `sourced` (§8.2): rate × the deal's amount_usd, to the sourcing partner only.
# src_1 (900.00): ps refers it an hour after creation (sourcing partner), pi and pj
# touch it; linear gives each 300.00. ps's sourced plan pays 5 % of 900.00, not of
# 300.00; pi's sourced plan beats the default and pays nothing (pi did not source);
# pj, on the default, gets 10 % of 300.00. src2: the default plan is sourced; its
# deal_registration exactly 24 hours after creation still sources.
SRC_PLANS = [
    plan("src_default", "src", rate="0.10"),
    plan("src_ps", "src", "ps", model="sourced", rate="0.05"),
    plan("src_pi", "src", "pi", model="sourced", rate="0.20"),
    plan("src2_default", "src2", model="sourced", rate="0.10"),
]
SRC_EXPECTED = {
    ("src", "2026-03", "src_1", "ps"): ("src_ps", "45.00"),
    ("src", "2026-03", "src_1", "pj"): ("src_default", "30.00"),
    ("src2", "2026-03", "src2_1", "s2s"): ("src2_default", "20.00"),
}

# Rounding (§8.2): cents, half to even. 50 % of 100.05 is 50.025 → 50.02 (down to the
# even cent), of 100.07 is 50.035 → 50.04 (up to it); 12.346 is no half: 12.35.
RND_DEALS = {
    "rnd_half_down": ("r1", "100.05", "rnd_half", "50.02"),
    "rnd_half_up": ("r1", "100.07", "rnd_half", "50.04"),
    "rnd_plain": ("r2", "100.00", "rnd_fine", "12.35"),
}
RND_PLANS = [
    plan("rnd_half", "rnd", rate="0.5"),
    plan("rnd_fine", "rnd", "r2", rate="0.12346"),
]

# Holding periods (§8.3): the month of closed_at + holding_days. hold_1 (200.00, h1 and
# h2: 100.00 each) closed 2026-03-20: 14 days reach April, 0 days stay in March. The
# default of 30 days: 2026-03-01 23:59:59 + 30 d is still March, 2026-03-02 00:00 is April.
HOLD_PLANS = [
    plan("hold_14", "hold", rate="0.10", holding_days="14"),
    plan("hold_h2_0", "hold", "h2", rate="0.10", holding_days="0"),
    plan("hold30", "hold30", rate="0.10", holding_days=""),
]
HOLD_EXPECTED = {
    ("hold", "2026-04", "hold_1", "h1"): ("hold_14", "10.00"),
    ("hold", "2026-03", "hold_1", "h2"): ("hold_h2_0", "10.00"),
    ("hold30", "2026-03", "hold30_a", "h3"): ("hold30", "10.00"),
    ("hold30", "2026-04", "hold30_b", "h3"): ("hold30", "10.00"),
}

# Nothing due (§8.2): a lost and an open deal, a deal closed before any plan, an
# organization without plans, and partners without first_touch credit (n2, n3 only
# touch none_won after n1). Only n1 on none_won is paid.
NONE_PLANS = [plan("none_first", "none", model="first_touch", rate="0.10")]
NONE_EXPECTED = {("none", "2026-03", "none_won", "n1"): ("none_first", "10.00")}


def rule_dataset() -> dict[str, list[dict[str, str]]]:
    orgs = ["prec", "prec_x", "eff", "src", "src2", "rnd", "hold", "hold30", "none", "bare"]
    partners = {
        "prec": ["pa", "pb", "pc"], "eff": ["pe"], "src": ["pi", "pj", "ps"],
        "src2": ["s2i", "s2s"], "rnd": ["r1", "r2"], "hold": ["h1", "h2"], "hold30": ["h3"],
        "none": ["n1", "n2", "n3"], "bare": ["b1"],
    }  # fmt: skip
    deals, touches = [], []

    def add(pair: tuple[dict, dict]) -> None:
        deals.append(pair[0])
        touches.append(pair[1])

    deals.append(deal("prec_1", "prec", "2026-03-10T12:00:00Z", "900.00"))
    touches += [touch(f"t_prec_{p}", "prec_1", p, "prec", f"2026-01-0{6 + i}T09:00:00Z")
                for i, p in enumerate(["pa", "pb", "pc"])]  # fmt: skip
    for deal_id, (closed_at, _, _) in EFF_DEALS.items():
        add(one_touch(deal_id, "eff", "pe", closed_at, "100.00"))
    created = "2026-03-01T09:00:00Z"
    deals.append(deal("src_1", "src", "2026-03-15T12:00:00Z", "900.00", created_at=created))
    touches += [
        touch("t_src_ps", "src_1", "ps", "src", "2026-03-01T10:00:00Z", "referral"),
        touch("t_src_pi", "src_1", "pi", "src", "2026-03-05T10:00:00Z"),
        touch("t_src_pj", "src_1", "pj", "src", "2026-03-06T10:00:00Z"),
    ]
    deals.append(deal("src2_1", "src2", "2026-03-15T12:00:00Z", "200.00", created_at=created))
    touches += [
        touch("t_src2_s", "src2_1", "s2s", "src2", "2026-03-02T09:00:00Z", "deal_registration"),
        touch("t_src2_i", "src2_1", "s2i", "src2", "2026-03-01T08:00:00Z"),
    ]
    for deal_id, (partner_id, amount, _, _) in RND_DEALS.items():
        add(one_touch(deal_id, "rnd", partner_id, "2026-03-10T12:00:00Z", amount))
    deals.append(deal("hold_1", "hold", "2026-03-20T12:00:00Z", "200.00"))
    touches += [touch(f"t_hold_{p}", "hold_1", p, "hold") for p in ("h1", "h2")]
    add(
        one_touch(
            "hold30_a", "hold30", "h3", "2026-03-01T23:59:59Z", "100.00", "2026-02-01T00:00:00Z"
        )
    )
    add(
        one_touch(
            "hold30_b", "hold30", "h3", "2026-03-02T00:00:00Z", "100.00", "2026-02-01T00:00:00Z"
        )
    )
    deals.append(deal("none_won", "none", "2026-03-10T12:00:00Z", "100.00"))
    touches += [touch(f"t_none_{p}", "none_won", p, "none", f"2026-01-0{6 + i}T09:00:00Z")
                for i, p in enumerate(["n1", "n2", "n3"])]  # fmt: skip
    deals += [
        deal("none_lost", "none", "2026-03-10T12:00:00Z", status="lost"),
        deal("none_open", "none", "", status="open"),
        deal("none_early", "none", "2025-12-15T12:00:00Z", created_at="2025-12-01T09:00:00Z"),
    ]
    touches += [
        touch("t_none_lost", "none_lost", "n1", "none"),
        touch("t_none_open", "none_open", "n1", "none"),
        touch("t_none_early", "none_early", "n1", "none", "2025-12-02T09:00:00Z"),
    ]
    add(one_touch("bare_1", "bare", "b1", "2026-03-10T12:00:00Z", "100.00"))
    story_orgs, story_partners, story_deals, story_touches, story_plans = story_start()
    return {
        "organizations": [org(o) for o in orgs + story_orgs],
        "partners": [partner(p, o) for o, ps in partners.items() for p in ps] + story_partners,
        "deals": deals + story_deals,
        "touchpoints": touches + story_touches,
        "commission_plans": PREC_PLANS + EFF_PLANS + SRC_PLANS + RND_PLANS + HOLD_PLANS
        + NONE_PLANS + story_plans,
    }  # fmt: skip


# --- the §8.5 story ------------------------------------------------------------------------
# "story" pays 10 % linear, holding 0. st_mar (1000.00, a1 and a2: 50.00 each) is won in
# March, st_apr (200.00, a1: 20.00) in April, st_may (100.00, a2: 10.00) in May.
# "story_b" (same plan) has stb_mar (400.00, b_1: 40.00), won in March, and never closes.


def story_start() -> tuple[list[str], list[dict], list[dict], list[dict], list[dict]]:
    won = [
        one_touch("st_apr", "story", "a1", "2026-04-10T12:00:00Z", "200.00"),
        one_touch("st_may", "story", "a2", "2026-05-02T12:00:00Z", "100.00"),
        one_touch("stb_mar", "story_b", "b_1", "2026-03-12T12:00:00Z", "400.00"),
    ]
    return (
        ["story", "story_b"],
        [partner("a1", "story"), partner("a2", "story"), partner("b_1", "story_b")],
        [deal("st_mar", "story", "2026-03-10T12:00:00Z", "1000.00"), *(d for d, _ in won)],
        [
            touch("t_st_mar_a1", "st_mar", "a1", "story"),
            touch("t_st_mar_a2", "st_mar", "a2", "story"),
            *(t for _, t in won),
        ],  # fmt: skip
        [plan("story_plan", "story"), plan("story_b_plan", "story_b")],
    )


@dataclass
class Story:
    url: str
    built: dict[LineKey, dict]  # every line after the first build
    april: list[OrgClose] = field(default_factory=list)  # closing April for "story"
    may: list[OrgClose] = field(default_factory=list)  # closing May for "story"
    after_lost: dict[LineKey, dict] = field(default_factory=dict)
    after_won_again: dict[LineKey, dict] = field(default_factory=dict)
    # (stage, month) -> ledger_digest of "story"'s ledger rows of that month
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    april_rows: list[tuple] = field(default_factory=list)


@pytest.fixture(scope="module")
def dbt_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dbt target folder for the module: later runs parse only what changed."""
    return tmp_path_factory.mktemp("dbt")


@pytest.fixture(scope="module")
def built(db_url: str, dbt_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> Story:
    """Every case landed and built once; the lines as they are then."""
    landing = tmp_path_factory.mktemp("landing")
    land(db_url, landing, "rules", **rule_dataset())
    build_lines(db_url, dbt_tmp)
    return Story(db_url, lines(db_url))


@pytest.fixture(scope="module")
def story(built: Story, dbt_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> Story:
    """The §8.5 story, on from the first build: close April → st_mar lost, st_late won
    late into March, stb_late for story_b → build → close May → st_mar won again → build.
    Every build also runs the two §8.8 checks (commission_helpers.build_lines)."""
    url, landing, tmp = built.url, tmp_path_factory.mktemp("story"), dbt_tmp
    months = ("2026-03", "2026-04", "2026-05")

    def digests(stage: str) -> None:
        for month in months:
            built.digests[stage, month] = ledger_digest(url, "story", month)

    built.april = close(url, "2026-04", ["story"])
    built.april_rows = ledger_rows(url, "story")
    digests("closed April")
    lost = deal("st_mar", "story", "2026-05-03T10:00:00Z", "1000.00", status="lost",
                updated_at="2026-05-03T10:00:00Z")  # fmt: skip
    late = one_touch("st_late", "story", "a2", "2026-03-25T12:00:00Z", "300.00")
    late_b = one_touch("stb_late", "story_b", "b_1", "2026-03-28T12:00:00Z", "100.00")
    land(url, landing, "lost", deals=[lost, late[0], late_b[0]], touchpoints=[late[1], late_b[1]])
    build_lines(url, tmp)
    built.after_lost = lines(url)
    digests("lost")
    built.may = close(url, "2026-05", ["story"])
    won_again = deal("st_mar", "story", "2026-06-04T10:00:00Z", "1000.00",
                     updated_at="2026-06-04T10:00:00Z")  # fmt: skip
    land(url, landing, "won_again", deals=[won_again])
    build_lines(url, tmp)
    built.after_won_again = lines(url)
    digests("won again")
    return built


def earned(found: dict[LineKey, dict], org_id: str) -> dict[tuple, tuple[str, str]]:
    """The open earned lines of one organization as {(org, month, deal, partner): (plan, amount)}."""
    out = {}
    for (line_org, month, deal_id, partner_id, line_type), line in found.items():
        if line_org != org_id:
            continue
        assert (line_type, line["period_status"]) == ("earned", "open"), (deal_id, partner_id, line)
        out[line_org, month, deal_id, partner_id] = (line["plan_id"], str(line["amount_usd"]))
    return out


def test_partner_plan_beats_default_then_latest_start_then_greatest_plan_id(built: Story) -> None:
    assert earned(built.built, "prec") == PREC_EXPECTED
    assert earned(built.built, "prec_x") == {}  # its plan has no deal of its own to pay
    models = {line["attribution_model"] for key, line in built.built.items() if key[0] == "prec"}
    assert models == {"linear"}


def test_effective_dates_are_utc_days_end_excluded(built: Story) -> None:
    expected = {("eff", "2026-03", deal_id, "pe"): (plan_id, amount)
                for deal_id, (_, plan_id, amount) in EFF_DEALS.items()}  # fmt: skip
    assert earned(built.built, "eff") == expected


def test_sourced_pays_the_deal_amount_to_the_sourcing_partner_only(built: Story) -> None:
    found = {**earned(built.built, "src"), **earned(built.built, "src2")}
    assert found == SRC_EXPECTED  # pi (sourced plan, did not source) and s2i: nothing
    models = {key[3]: line["attribution_model"] for key, line in built.built.items()
              if key[0] in ("src", "src2")}  # fmt: skip
    assert models == {"ps": "sourced", "pj": "linear", "s2s": "sourced"}


def test_amounts_round_half_to_even_cents(built: Story) -> None:
    expected = {("rnd", "2026-03", deal_id, partner_id): (plan_id, amount)
                for deal_id, (partner_id, _, plan_id, amount) in RND_DEALS.items()}  # fmt: skip
    assert earned(built.built, "rnd") == expected
    rates = {p["plan_id"]: D(p["rate"]) for p in RND_PLANS}
    for deal_id, (_, amount, plan_id, shown) in RND_DEALS.items():
        # The hand-worked figures are Python's half-even of the exact product.
        exact = rates[plan_id] * D(amount)
        assert exact.quantize(D("0.01"), ROUND_HALF_EVEN) == D(shown), deal_id


def test_holding_days_move_the_period_across_a_month_end(built: Story) -> None:
    assert {**earned(built.built, "hold"), **earned(built.built, "hold30")} == HOLD_EXPECTED


def test_nothing_due_without_a_won_deal_a_plan_or_credit(built: Story) -> None:
    assert earned(built.built, "none") == NONE_EXPECTED
    assert earned(built.built, "bare") == {}


def test_story_closing_april_records_march_with_it(story: Story) -> None:
    """§8.4: one close of April for "story" records March's lines and April's; May
    (not closed) and story_b (another tenant) are left open."""
    (result,) = story.april
    assert (result.org_id, result.closed, f"{result.first_period:%Y-%m}", f"{result.period:%Y-%m}",
            result.line_count, result.total_usd) == ("story", True, "2026-03", "2026-04", 3, D("120.00"))  # fmt: skip
    recorded = {(f"{r[2]:%Y-%m}", r[3], r[4], r[5], r[8]) for r in story.april_rows}
    assert recorded == {
        ("2026-03", "st_mar", "a1", "earned", "50.00"),
        ("2026-03", "st_mar", "a2", "earned", "50.00"),
        ("2026-04", "st_apr", "a1", "earned", "20.00"),
    }
    assert {r[0] for r in story.april_rows} == {result.closing_id}


def test_story_lost_deal_is_adjusted_in_the_first_open_month(story: Story) -> None:
    """§8.5: st_mar lost in May → minus what April's close booked, as `adjustment`
    lines in May; st_late, won in already-closed March, is `earned` in May."""
    found = {k[1:]: (v["amount_usd"], v["period_status"]) for k, v in story.after_lost.items()
             if k[0] == "story"}  # fmt: skip
    assert found == {
        ("2026-03", "st_mar", "a1", "earned"): (D("50.00"), "closed"),
        ("2026-03", "st_mar", "a2", "earned"): (D("50.00"), "closed"),
        ("2026-04", "st_apr", "a1", "earned"): (D("20.00"), "closed"),
        ("2026-05", "st_mar", "a1", "adjustment"): (D("-50.00"), "open"),
        ("2026-05", "st_mar", "a2", "adjustment"): (D("-50.00"), "open"),
        ("2026-05", "st_late", "a2", "earned"): (D("30.00"), "open"),
        ("2026-05", "st_may", "a2", "earned"): (D("10.00"), "open"),
    }
    # The adjustment keeps the plan the booked line was paid under.
    adjustment = story.after_lost["story", "2026-05", "st_mar", "a1", "adjustment"]
    assert (adjustment["plan_id"], adjustment["attribution_model"]) == ("story_plan", "linear")


def test_story_won_again_is_a_positive_adjustment(story: Story) -> None:
    (result,) = story.may
    assert (f"{result.first_period:%Y-%m}", f"{result.period:%Y-%m}", result.line_count,
            result.total_usd) == ("2026-05", "2026-05", 4, D("-60.00"))  # fmt: skip
    found = {k[1:]: (v["amount_usd"], v["period_status"]) for k, v in story.after_won_again.items()
             if k[0] == "story" and v["period_status"] == "open"}  # fmt: skip
    assert found == {
        ("2026-06", "st_mar", "a1", "adjustment"): (D("50.00"), "open"),
        ("2026-06", "st_mar", "a2", "adjustment"): (D("50.00"), "open"),
    }
    closed = {k[1] for k, v in story.after_won_again.items()
              if k[0] == "story" and v["period_status"] == "closed"}  # fmt: skip
    assert closed == {"2026-03", "2026-04", "2026-05"}
    # Each (deal, partner)'s lines total what is due today: st_mar 50 − 50 + 50 per partner.
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (org_id, _, deal_id, partner_id, _), line in story.after_won_again.items():
        if org_id == "story":
            totals[deal_id, partner_id] += line["amount_usd"]
    assert dict(totals) == {
        ("st_mar", "a1"): D("50.00"), ("st_mar", "a2"): D("50.00"), ("st_apr", "a1"): D("20.00"),
        ("st_late", "a2"): D("30.00"), ("st_may", "a2"): D("10.00"),
    }  # fmt: skip


def test_story_closed_months_never_change(story: Story) -> None:
    """March and April's ledger rows are byte-identical after every later step, and the
    mart's closed lines are exactly the ledger's."""
    for month in ("2026-03", "2026-04"):
        seen = {story.digests[stage, month] for stage in ("closed April", "lost", "won again")}
        assert len(seen) == 1, month
    assert story.digests["lost", "2026-05"] != story.digests["won again", "2026-05"]  # May closed
    ledger = {(f"{r[2]:%Y-%m}", r[3], r[4], r[5]): D(r[8]) for r in ledger_rows(story.url, "story")}
    mart_closed = {k[1:]: v["amount_usd"] for k, v in story.after_won_again.items()
                   if k[0] == "story" and v["period_status"] == "closed"}  # fmt: skip
    assert mart_closed == ledger


def test_story_another_organization_stays_open(story: Story) -> None:
    """Closing "story" closes nothing of story_b: its lines stay open, and its late deal
    earns in March, its own earliest open month (not May)."""
    found = {k[1:]: (v["amount_usd"], v["period_status"])
             for k, v in story.after_won_again.items() if k[0] == "story_b"}  # fmt: skip
    assert found == {
        ("2026-03", "stb_mar", "b_1", "earned"): (D("40.00"), "open"),
        ("2026-03", "stb_late", "b_1", "earned"): (D("10.00"), "open"),
    }
    assert ledger_rows(story.url, "story_b") == []


def test_partner_statements_add_up_the_lines(story: Story) -> None:
    """partner_statements: per partner and month, earned + adjustments = total over the
    lines, line_count, and the month's status."""
    expected: dict[tuple[str, str, str], dict] = {}
    for (org_id, month, _, partner_id, line_type), line in story.after_won_again.items():
        row = expected.setdefault((org_id, partner_id, month), {
            "partner_name": f"Partner {partner_id}", "period_status": line["period_status"],
            "earned_usd": D(0), "adjustments_usd": D(0), "total_usd": D(0), "line_count": 0,
        })  # fmt: skip
        assert row["period_status"] == line["period_status"]
        row["earned_usd" if line_type == "earned" else "adjustments_usd"] += line["amount_usd"]
        row["total_usd"] += line["amount_usd"]
        row["line_count"] += 1
    found = statements(story.url)
    assert found == expected
    assert found["story", "a1", "2026-05"] == {
        "partner_name": "Partner a1", "period_status": "closed", "earned_usd": D(0),
        "adjustments_usd": D("-50.00"), "total_usd": D("-50.00"), "line_count": 1,
    }  # fmt: skip
    assert found["story", "a2", "2026-05"]["line_count"] == 3
    assert found["story_b", "b_1", "2026-03"]["period_status"] == "open"


@pytest.mark.parametrize(
    "statement",
    [
        "update commissions.ledger_lines set amount_usd = 0",
        "delete from commissions.ledger_lines",
        "truncate commissions.ledger_lines",
        "update commissions.closings set total_usd = 0",
        "delete from commissions.closings",
        "truncate commissions.closings cascade",
        "truncate commissions.ledger_lines, commissions.closings",
    ],
)
def test_the_ledger_is_append_only(story: Story, statement: str) -> None:
    """UPDATE, DELETE and TRUNCATE fail on the ledger as the platform's own role (the
    owner of the tables), and the rows stay as recorded."""
    before = {month: ledger_digest(story.url, "story", month) for month in ("2026-03", "2026-05")}
    with psycopg.connect(story.url) as conn:
        (owner,) = conn.execute(
            "select tableowner = current_user from pg_tables where schemaname = 'commissions'"
            " and tablename = 'ledger_lines'"
        ).fetchone()
        assert owner
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
    after = {month: ledger_digest(story.url, "story", month) for month in before}
    assert after == before and before["2026-03"] == story.digests["closed April", "2026-03"]
