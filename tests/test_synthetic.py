"""Tests for the synthetic data generator (pure Python, no database)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from ingestion import contracts
from synthetic_crm import BAD_KINDS, ENTITIES, FIELDS, PRESETS, REQUIRED, generate
from synthetic_crm._rand import exp as portable_exp

TIMESTAMP_FIELDS = {
    "organizations": ("created_at", "updated_at"),
    "partners": ("created_at", "updated_at"),
    "deals": ("created_at", "closed_at", "updated_at"),
    "touchpoints": ("occurred_at",),
    "commission_plans": ("updated_at",),
}
FILE_RE = re.compile(
    r"^(organizations|partners|deals|touchpoints|fx_rates|commission_plans)"
    r"(?:_(\d{4}-\d{2}-\d{2}))?\.(csv|jsonl)$"
)
AMOUNT_RE = re.compile(r"^\d+\.\d{2}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


# --------------------------------------------------------------------------- helpers


def file_hashes(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def read_file(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of one output file (CSV or JSON Lines)."""
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            rows = [dict(zip(header, r, strict=True)) for r in reader]
        return header, rows
    rows = []
    header: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            assert isinstance(obj, dict)
            assert all(isinstance(v, str) for v in obj.values())
            header = header or list(obj)
            assert list(obj) == header
            rows.append(obj)
    return header, rows


def load(directory: Path) -> dict[str, list[tuple[date | None, dict[str, str]]]]:
    """entity -> [(file date or None, row)] in file-name order."""
    data: dict[str, list] = {e: [] for e in ENTITIES}
    for path in sorted(directory.iterdir()):
        m = FILE_RE.match(path.name)
        assert m, f"unexpected file {path.name}"
        entity, day = m.group(1), m.group(2)
        header, rows = read_file(path)
        if rows or path.suffix == ".csv":
            assert tuple(header) == FIELDS[entity], path.name
        file_day = date.fromisoformat(day) if day else None
        data[entity].extend((file_day, r) for r in rows)
    return data


def parse_ts(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def valid_date(value: str) -> bool:
    try:
        return bool(DATE_RE.match(value)) and bool(date.fromisoformat(value))
    except ValueError:
        return False


def plan_defects(row: dict[str, str]) -> list[str]:
    """Contract violations of a commission plan beyond required fields and updated_at."""
    found = []
    dates = [row[f] for f in ("effective_from", "effective_to") if row[f]]
    if not all(valid_date(d) for d in dates):
        found.append("bad_timestamp")
    elif len(dates) == 2 and dates[1] <= dates[0]:
        found.append("not_after")
    if row["attribution_model"] and row["attribution_model"] not in contracts.COMMISSION_MODELS:
        found.append("bad_status")
    if row["rate"]:
        try:
            if not 0 <= Decimal(row["rate"]) <= 1:
                found.append("bad_fraction")
        except InvalidOperation:
            found.append("bad_fraction")
    if row["holding_days"] and not (
        row["holding_days"].isascii() and row["holding_days"].isdigit()
    ):
        found.append("bad_count")
    return found


def defects(entity: str, row: dict[str, str]) -> list[str]:
    """Contract violations of one row (empty list = valid)."""
    found = []
    if any(row[f] == "" for f in REQUIRED[entity]):
        found.append("required_empty")
    if entity == "commission_plans":
        found += plan_defects(row)
    for f in TIMESTAMP_FIELDS.get(entity, ()):
        if row[f]:
            try:
                parse_ts(row[f])
            except (ValueError, AssertionError):
                found.append("bad_timestamp")
    if entity == "fx_rates" and row["rate_date"]:
        try:
            date.fromisoformat(row["rate_date"])
        except ValueError:
            found.append("bad_timestamp")
    if entity == "partners" and row["status"] not in ("", "active", "inactive"):
        found.append("bad_status")
    if entity == "deals":
        if row["amount"] and not AMOUNT_RE.match(row["amount"]):
            found.append("bad_amount")
        if row["status"] and row["status"] not in ("open", "won", "lost"):
            found.append("bad_status")
        if row["currency"] and not CURRENCY_RE.match(row["currency"]):
            found.append("bad_currency")
        if row["status"] in ("won", "lost") and not row["closed_at"]:
            found.append("missing_closed_at")
    if entity == "fx_rates":
        if row["currency"] and not CURRENCY_RE.match(row["currency"]):
            found.append("bad_currency")
        if row["usd_per_unit"]:
            try:
                if Decimal(row["usd_per_unit"]) <= 0:
                    found.append("bad_rate")
            except InvalidOperation:
                found.append("bad_rate")
    return found


def current(rows: list[dict[str, str]], key: str) -> dict[str, dict[str, str]]:
    """Latest version (greatest updated_at) of each record."""
    latest: dict[str, dict[str, str]] = {}
    for r in rows:
        prev = latest.get(r[key])
        if prev is None or r["updated_at"] > prev["updated_at"]:
            latest[r[key]] = r
    return latest


def deal_versions(data) -> dict[str, list[dict[str, str]]]:
    versions: dict[str, list] = defaultdict(list)
    for _, r in data["deals"]:
        versions[r["deal_id"]].append(r)
    for vs in versions.values():
        vs.sort(key=lambda r: r["updated_at"])
    return versions


# --------------------------------------------------------------------------- fixtures

MODERATE = dict(orgs=60, days=30, seed=7)
BAD = dict(orgs=40, days=20, seed=3)


@pytest.fixture(scope="module")
def moderate(tmp_path_factory):
    out = tmp_path_factory.mktemp("moderate")
    summary = generate(out, **MODERATE)
    return summary, load(out)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad")
    summary = generate(out, bad_row_rate=0.05, **BAD)
    clean = tmp_path_factory.mktemp("clean")
    generate(clean, **BAD)
    return summary, out, clean


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    args = dict(orgs=12, days=6, bad_row_rate=0.05)
    a = file_hashes(generate(tmp_path / "a", seed=5, **args).out_dir)
    b = file_hashes(generate(tmp_path / "b", seed=5, **args).out_dir)
    c = file_hashes(generate(tmp_path / "c", seed=6, **args).out_dir)
    assert a == b
    assert len(a) > 10
    assert a.keys() <= c.keys() | a.keys()
    differing = [name for name in a if name.startswith("deals_") and a[name] != c.get(name)]
    assert len(differing) == 6
    assert a["organizations.csv"] != c["organizations.csv"]


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_prefix_stability(tmp_path, file_format):
    args = dict(orgs=20, seed=11, bad_row_rate=0.03, file_format=file_format)
    short = file_hashes(generate(tmp_path / "short", days=3, **args).out_dir)
    long = file_hashes(generate(tmp_path / "long", days=4, **args).out_dir)
    for name, digest in short.items():
        assert long[name] == digest, name
    new = sorted(set(long) - set(short))
    assert new, "the fourth day wrote no files"
    assert all("2026-01-04" in name for name in new)
    assert f"deals_2026-01-04.{file_format}" in new


def test_world_does_not_depend_on_horizon(tmp_path):
    a = generate(tmp_path / "a", orgs=15, days=1, seed=2)
    b = generate(tmp_path / "b", orgs=15, days=9, seed=2)
    for name in ("organizations.csv", "partners.csv"):
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes()


def test_portable_exp_matches_libm():
    for x in (-20.0, -3.3, -0.5, 0.0, 1e-9, 0.7, 2.302585, 8.29405, 14.9):
        assert math.isclose(portable_exp(x), math.exp(x), rel_tol=1e-13)


# --------------------------------------------------------------------------- contract


def test_entities_and_fields_are_the_ingestion_contracts():
    assert sorted(ENTITIES) == sorted(e.name for e in contracts.ENTITIES)
    for entity in contracts.ENTITIES:
        assert FIELDS[entity.name] == entity.field_names
        assert REQUIRED[entity.name] == entity.required_names
    assert BAD_KINDS == {
        "organizations": ("required_empty", "bad_timestamp"),
        "partners": ("required_empty", "bad_timestamp", "bad_status"),
        "deals": ("required_empty", "bad_timestamp", "bad_amount", "bad_status", "bad_currency",
                  "missing_closed_at"),
        "touchpoints": ("required_empty", "bad_timestamp"),
        "fx_rates": ("required_empty", "bad_timestamp", "bad_currency", "bad_rate"),
        "commission_plans": ("required_empty", "bad_timestamp", "bad_status", "bad_fraction",
                             "bad_count", "not_after"),
    }  # fmt: skip


def test_files_and_fields_follow_the_contract(moderate):
    summary, data = moderate
    names = [p.name for p in summary.files]
    assert names[:2] == ["organizations.csv", "partners.csv"]
    for day in range(MODERATE["days"]):
        d = (date(2026, 1, 1) + timedelta(days=day)).isoformat()
        assert f"deals_{d}.csv" in names
        assert f"touchpoints_{d}.csv" in names
    assert sorted(p.name for p in summary.out_dir.iterdir()) == sorted(names)  # no leftovers
    for entity in ENTITIES:
        assert len(data[entity]) == summary.rows[entity]
        assert summary.bad_rows[entity] == 0
        for _, row in data[entity]:
            assert defects(entity, row) == [], (entity, row)


def test_deal_rows_are_consistent_versions(moderate):
    _, data = moderate
    versions = deal_versions(data)
    file_day = {}
    for fday, r in data["deals"]:
        file_day[(r["deal_id"], r["updated_at"])] = fday
        assert Decimal(r["amount"]) >= 0
        if r["status"] in ("won", "lost"):
            assert parse_ts(r["closed_at"]) >= parse_ts(r["created_at"])
        else:
            assert r["closed_at"] == ""
    for deal_id, vs in versions.items():
        stamps = [v["updated_at"] for v in vs]
        assert len(set(stamps)) == len(stamps), deal_id  # strictly increasing
        assert vs[0]["status"] == "open" and vs[0]["updated_at"] == vs[0]["created_at"]
        assert len({(v["created_at"], v["org_id"], v["currency"]) for v in vs}) == 1
        for v in vs:  # each version is in the file of the day it happened
            assert file_day[(deal_id, v["updated_at"])] == parse_ts(v["updated_at"]).date()


def test_touchpoints_reference_their_deal_and_window(moderate):
    summary, data = moderate
    versions = deal_versions(data)
    partner_org = {r["partner_id"]: r["org_id"] for _, r in data["partners"]}
    foreign = unknown = 0
    seen: dict[str, dict[str, str]] = {}
    duplicates = 0
    for fday, tp in data["touchpoints"]:
        if tp["touchpoint_id"] in seen:
            duplicates += 1
            assert seen[tp["touchpoint_id"]] == tp
            continue
        seen[tp["touchpoint_id"]] = tp
        vs = versions[tp["deal_id"]]
        assert tp["org_id"] == vs[0]["org_id"]
        occurred = parse_ts(tp["occurred_at"])
        created = parse_ts(vs[0]["created_at"])
        assert occurred >= created - timedelta(days=30)
        assert occurred.date() <= fday and created.date() <= fday
        closes = [parse_ts(v["closed_at"]) for v in vs if v["closed_at"]]
        if closes:
            assert occurred <= min(closes)
        owner = partner_org.get(tp["partner_id"])
        if owner is None:
            unknown += 1
        elif owner != tp["org_id"]:
            foreign += 1
    n = len(seen)
    assert 0 < foreign + unknown < 0.02 * n
    assert unknown > 0 or foreign > 0
    assert 0 < duplicates < 0.02 * n


def test_fx_rates(moderate):
    _, data = moderate
    by_currency = defaultdict(list)
    dates = set()
    for fday, r in data["fx_rates"]:
        assert r["rate_date"] == fday.isoformat()
        by_currency[r["currency"]].append(float(r["usd_per_unit"]))
        dates.add(fday)
    assert "USD" not in by_currency
    assert {"EUR", "GBP", "CAD", "AUD", "JPY"} <= set(by_currency)
    assert all(0.0055 < v < 0.008 for v in by_currency["JPY"])
    assert all(0.9 < v < 1.3 for v in by_currency["EUR"])
    assert len(set(by_currency["EUR"])) > 5  # it moves
    assert all(d.weekday() < 5 for d in dates if d != date(2026, 1, 1))
    assert all(len(v) == len(dates) for v in by_currency.values())


def test_jsonl_holds_the_same_data_as_csv(tmp_path):
    args = dict(orgs=10, days=4, seed=9, bad_row_rate=0.05)
    a = load(generate(tmp_path / "csv", **args).out_dir)
    b = load(generate(tmp_path / "jsonl", file_format="jsonl", **args).out_dir)
    assert a == b
    assert any(name.endswith(".jsonl") for name in (p.name for p in (tmp_path / "jsonl").iterdir()))


def test_awkward_names_round_trip(moderate):
    _, data = moderate
    names = [r["name"] for e in ("organizations", "partners") for _, r in data[e]]
    names += [r["name"] for _, r in data["deals"]]
    assert any(not n.isascii() for n in names)
    assert any('"' in n for n in names)
    assert any("," in n for n in names)
    assert any("'" in n for n in names)
    assert sum(1 for n in names if not n.isascii() or '"' in n) < 0.1 * len(names)


# --------------------------------------------------------------------------- distributions


def test_all_tiers_present_by_active_partners(moderate):
    _, data = moderate
    partners = current([r for _, r in data["partners"]], "partner_id")
    active = Counter(r["org_id"] for r in partners.values() if r["status"] == "active")
    sizes = [active.get(f"org_{i + 1:05d}", 0) for i in range(MODERATE["orgs"])]
    tiers = Counter(
        "small" if s < 50 else "medium" if s < 200 else "large" if s < 500 else "enterprise"
        for s in sizes
    )
    assert set(tiers) == {"small", "medium", "large", "enterprise"}
    assert tiers["small"] > 0.8 * len(sizes)  # most orgs are small
    inactive = sum(1 for r in partners.values() if r["status"] == "inactive")
    assert 0.05 < inactive / len(partners) < 0.15
    types = Counter(r["partner_type"] for r in partners.values())
    assert {"reseller", "referral", "technology", "agency"} <= set(types)


def test_tiers_guaranteed_from_eight_orgs(tmp_path):
    generate(tmp_path, orgs=8, days=5, seed=13)
    data = load(tmp_path)
    partners = current([r for _, r in data["partners"]], "partner_id")
    active = Counter(r["org_id"] for r in partners.values() if r["status"] == "active")
    sizes = sorted(active.get(f"org_{i + 1:05d}", 0) for i in range(8))
    assert sizes[0] < 50 and sizes[-1] >= 500
    assert any(50 <= s < 200 for s in sizes) and any(200 <= s < 500 for s in sizes)


def test_org_sizes_have_a_long_tail(tmp_path):
    summary = generate(tmp_path, orgs=2_000, days=0, seed=4)
    _, partners = read_file(tmp_path / "partners.csv")
    sizes = sorted(Counter(r["org_id"] for r in partners).values())
    assert summary.partners == len(partners)
    assert 7 < statistics.mean(sizes) < 14  # ~10 partners per org on average
    assert statistics.median(sizes) <= 5  # most orgs are small
    assert sizes[-1] >= 500  # ... and a few are huge


def test_deal_volume_follows_org_size(moderate):
    summary, data = moderate
    expected = MODERATE["orgs"] * PRESETS["mvp"].deals_per_org_per_month * MODERATE["days"] / 30
    assert abs(summary.deals_created - expected) < 0.1 * expected
    versions = deal_versions(data)
    assert len(versions) == summary.deals_created
    per_org = Counter(vs[0]["org_id"] for vs in versions.values())
    # org_00001 is the enterprise anchor, org_00004 the small one
    assert per_org["org_00001"] > 5 * per_org["org_00004"]


def test_lifecycle_distributions(moderate):
    _, data = moderate
    versions = deal_versions(data)
    final = [vs[-1] for vs in versions.values()]
    closed = [r for r in final if r["status"] != "open"]
    won = sum(1 for r in closed if r["status"] == "won")
    assert 0.15 <= won / len(closed) <= 0.35
    assert any(r["status"] == "open" for r in final)
    statuses = [[v["status"] for v in vs] for vs in versions.values()]
    flips = sum(1 for s in statuses if any(a == "won" and b == "lost" for a, b in pairs(s)))
    assert flips > 0
    assert any(("lost", "won") in set(pairs(s)) for s in statuses)  # back to won / revived
    assert sum(1 for vs in versions.values() if len({v["amount"] for v in vs}) > 1) > 0
    currencies = Counter(r["currency"] for r in final)
    assert len(currencies) >= 4
    assert currencies.most_common(1)[0][0] == "USD"
    usd = sorted(float(r["amount"]) for r in final if r["currency"] == "USD")
    assert 1_500 < statistics.median(usd) < 15_000
    assert usd[-1] > 80_000  # long tail


def pairs(seq):
    return list(zip(seq, seq[1:], strict=False))


def test_touchpoint_distributions(moderate):
    _, data = moderate
    versions = deal_versions(data)
    unique = {tp["touchpoint_id"]: (fday, tp) for fday, tp in data["touchpoints"]}
    per_deal = Counter(tp["deal_id"] for _, tp in unique.values())
    # deals from the first half have (almost) all their touchpoints inside the horizon
    early = [d for d, vs in versions.items() if vs[0]["created_at"] < "2026-01-16"]
    counts = [per_deal.get(d, 0) for d in early]
    n = len(counts)
    assert 0.08 < sum(1 for c in counts if c == 0) / n < 0.25
    assert sum(1 for c in counts if 1 <= c <= 3) / n > 0.4
    assert sum(1 for c in counts if c >= 10) / n > 0.03
    types = Counter(tp["touchpoint_type"] for _, tp in unique.values())
    expected = {"referral", "deal_registration", "intro", "meeting", "demo", "co_sell"}
    assert set(types) == expected
    # referral / deal registration cluster around deal creation
    created = {d: parse_ts(vs[0]["created_at"]) for d, vs in versions.items()}

    def gap_days(tp):
        return abs((parse_ts(tp["occurred_at"]) - created[tp["deal_id"]]).days)

    early_types = ("referral", "deal_registration")
    early_gaps = [gap_days(tp) for _, tp in unique.values() if tp["touchpoint_type"] in early_types]
    other_gaps = [gap_days(tp) for _, tp in unique.values() if tp["touchpoint_type"] == "demo"]
    assert statistics.mean(early_gaps) < statistics.mean(other_gaps)
    # late arrivals: in a later file than the day they occurred, after the deal existed
    late = [
        tp
        for fday, tp in unique.values()
        if parse_ts(tp["occurred_at"]).date() < fday and created[tp["deal_id"]].date() < fday
    ]
    assert 0 < len(late) < 0.2 * len(unique)


def test_world_updates_are_later_versions(moderate):
    _, data = moderate
    dated = [(fday, r) for fday, r in data["partners"] if fday is not None]
    assert dated
    first = {r["partner_id"]: r for fday, r in data["partners"] if fday is None}
    went_inactive = 0
    for fday, r in dated:
        assert parse_ts(r["updated_at"]).date() == fday
        assert r["updated_at"] > first[r["partner_id"]]["updated_at"]
        went_inactive += first[r["partner_id"]]["status"] == "active" and r["status"] == "inactive"
    assert went_inactive > 0
    assert any(fday is not None for fday, _ in data["organizations"])


def test_commission_plans(moderate):
    """A default plan per org from its first day, overrides for some partners, rate
    changes that close a plan and start the next one the same day (docs/synthetic-data.md)."""
    _, data = moderate
    start = date(2026, 1, 1)
    orgs = {r["org_id"]: r for _, r in data["organizations"]}
    partner_org = {r["partner_id"]: r["org_id"] for _, r in data["partners"]}
    versions: dict[str, list[tuple[date, dict[str, str]]]] = defaultdict(list)
    for fday, r in data["commission_plans"]:
        assert fday is not None  # plans only come in dated files
        if fday > start:  # a change: written the day it was made
            assert parse_ts(r["updated_at"]).date() == fday
        versions[r["plan_id"]].append((fday, r))
    latest = current([r for _, r in data["commission_plans"]], "plan_id")
    by_org = defaultdict(list)
    for plan in latest.values():
        by_org[plan["org_id"]].append(plan)
    assert set(by_org) == set(orgs)
    for org_id, plans in by_org.items():
        defaults = [p for p in plans if not p["partner_id"]]
        # The first default plan starts the day the org was created; one is open-ended.
        first = min(defaults, key=lambda p: p["effective_from"])
        assert first["effective_from"] == orgs[org_id]["created_at"][:10]
        assert sum(1 for p in defaults if not p["effective_to"]) == 1
        for p in defaults:
            assert p["attribution_model"] in contracts.COMMISSION_MODELS
            assert p["attribution_model"] != contracts.SOURCED_MODEL
            assert Decimal("0.05") <= Decimal(p["rate"]) <= Decimal("0.20")
    overrides = [p for p in latest.values() if p["partner_id"]]
    assert 0.03 * len(partner_org) < len(overrides) < 0.15 * len(partner_org)
    assert all(partner_org[p["partner_id"]] == p["org_id"] for p in overrides)
    assert len({p["partner_id"] for p in overrides}) == len(overrides)  # one each
    sourced = [p for p in overrides if p["attribution_model"] == contracts.SOURCED_MODEL]
    assert sourced and all(
        Decimal("0.10") <= Decimal(p["rate"]) <= Decimal("0.25") for p in sourced
    )
    holding = Counter(r["holding_days"] for _, r in data["commission_plans"])
    assert set(holding) == {"0", "14", "30", "45", ""}  # empty: the default, 30
    # Rate changes: a default plan closed by a later version the day its successor starts.
    closed = [vs for vs in versions.values() if len(vs) == 2]
    assert closed and all(len(vs) <= 2 for vs in versions.values())
    for (_, before), (fday, after) in closed:
        assert not before["effective_to"] and after["effective_to"] == fday.isoformat()
        assert after["updated_at"] > before["updated_at"]
        starts = fday.isoformat()
        (successor,) = [
            p
            for p in by_org[after["org_id"]]
            if not p["partner_id"] and p["effective_from"] == starts
        ]
        assert successor["rate"] != after["rate"]


# --------------------------------------------------------------------------- bad rows


def test_bad_rows_are_counted_and_cover_every_kind(bad_run):
    summary, out, clean = bad_run
    data = load(out)
    kinds_seen = Counter()
    for entity in ENTITIES:
        rows = [r for _, r in data[entity]]
        bad = [(r, defects(entity, r)) for r in rows]
        bad = [(r, d) for r, d in bad if d]
        assert all(len(d) == 1 for _, d in bad), [d for _, d in bad if len(d) != 1]
        kinds_seen.update(f"{entity}/{d[0]}" for _, d in bad)
        assert len(rows) == summary.rows[entity]
        assert len(bad) == summary.bad_rows[entity], entity
        # the rounding remainder is carried from file to file: within one row of 5 %
        assert abs(len(bad) - 0.05 * len(rows)) <= 1.5, (entity, len(bad), len(rows))
    expected = {f"{e}/{k}" for e, kinds in BAD_KINDS.items() for k in kinds}
    assert set(kinds_seen) == expected
    assert dict(kinds_seen) == summary.bad_kinds
    negative = [r for _, r in data["deals"] if r["amount"].startswith("-")]
    non_numeric = [r for _, r in data["deals"] if r["amount"] and "," in r["amount"]]
    assert negative or non_numeric


def test_bad_rows_are_extra_rows(bad_run):
    """Dropping the broken rows gives exactly the clean run."""
    _, out, clean = bad_run
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean.iterdir())
    for path in sorted(clean.iterdir()):
        entity = FILE_RE.match(path.name).group(1)
        _, clean_rows = read_file(path)
        _, rows = read_file(out / path.name)
        assert [r for r in rows if not defects(entity, r)] == clean_rows, path.name


# --------------------------------------------------------------------------- API


def test_presets():
    assert {k: (p.orgs, p.deals_per_org_per_month) for k, p in PRESETS.items()} == {
        "mvp": (100, 50),
        "early": (500, 50),
        "growth": (2_000, 50),
        "scale": (5_000, 50),
        "hyper": (10_000, 100),
    }
    assert all(name == p.name for name, p in PRESETS.items())


def test_days_override_months_and_summary_lines(tmp_path):
    summary = generate(tmp_path, orgs=9, months=3, days=2)
    deal_files = sorted(p.name for p in summary.files if p.name.startswith("deals_"))
    assert deal_files == ["deals_2026-01-01.csv", "deals_2026-01-02.csv"]
    lines = summary.lines()
    assert any("deals" in line and f"{summary.rows['deals']:,}" in line for line in lines)
    assert summary.days == 2 and summary.orgs == 9
    only_world = generate(tmp_path / "zero", orgs=3, days=0)
    assert [p.name for p in only_world.files] == ["organizations.csv", "partners.csv"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"preset": "nope"},
        {"bad_row_rate": -0.1},
        {"bad_row_rate": 0.9},
        {"orgs": 0},
        {"days": -1},
        {"file_format": "parquet"},
    ],
)
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate(tmp_path, **kwargs)
