"""Presets, the summary, and the day-by-day driver."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from ._activity import FxWalk, deals_for_day
from ._clock import Clock
from ._contract import ENTITIES, FIELDS, BadRowInjector
from ._io import Spool, write_rows
from ._plans import initial_plans, plan_updates
from ._rand import rng_for
from ._world import build_world, world_updates

DAYS_PER_MONTH = 30
MAX_BAD_ROW_RATE = 0.5


@dataclass(frozen=True)
class Preset:
    name: str
    orgs: int
    deals_per_org_per_month: int


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("mvp", 100, 50),
        Preset("early", 500, 50),
        Preset("growth", 2_000, 50),
        Preset("scale", 5_000, 50),
        Preset("hyper", 10_000, 100),
    )
}


@dataclass
class GenerationSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    preset: str
    seed: int
    start: date
    days: int
    orgs: int
    partners: int
    file_format: str
    files: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENTITIES, 0))
    bad_rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENTITIES, 0))
    # "<entity>/<kind>" -> number of rows broken that way
    bad_kinds: dict[str, int] = field(default_factory=dict)
    deals_created: int = 0

    def lines(self) -> list[str]:
        last = self.days - 1
        span = f"{self.days} days from {self.start.isoformat()}"
        if self.days:
            span += f" to {date.fromordinal(self.start.toordinal() + last).isoformat()}"
        out = [
            f"{len(self.files)} {self.file_format} files in {self.out_dir}",
            f"preset {self.preset}, seed {self.seed}, {span}",
            f"{self.orgs:,} orgs, {self.partners:,} partners, {self.deals_created:,} deals created",
        ]
        width = max(map(len, ENTITIES)) + 2
        for entity in ENTITIES:
            bad = self.bad_rows.get(entity, 0)
            out.append(
                f"  {entity:<{width}}{self.rows.get(entity, 0):>12,} rows"
                + (f"  ({bad:,} deliberately bad)" if bad else "")
            )
        return out


def _resolve_days(months: int, days: int | None) -> int:
    n = DAYS_PER_MONTH * months if days is None else days
    if n < 0:
        raise ValueError("days/months must not be negative")
    return n


def generate(
    out_dir: Path,
    *,
    preset: str = "mvp",
    months: int = 1,
    seed: int = 0,
    bad_row_rate: float = 0.0,
    start: date = date(2026, 1, 1),
    days: int | None = None,
    orgs: int | None = None,
    file_format: Literal["csv", "jsonl"] = "csv",
) -> GenerationSummary:
    """Write a synthetic dataset into ``out_dir`` and return what was written.

    ``days`` overrides ``months`` (30 days each); ``orgs`` overrides the preset's
    org count.  The same arguments always produce the same bytes, and the files
    of day ``D`` do not depend on the number of days generated.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if file_format not in ("csv", "jsonl"):
        raise ValueError("file_format must be 'csv' or 'jsonl'")
    if not 0.0 <= bad_row_rate <= MAX_BAD_ROW_RATE:
        raise ValueError(f"bad_row_rate must be between 0 and {MAX_BAD_ROW_RATE}")
    p = PRESETS[preset]
    n_orgs = p.orgs if orgs is None else orgs
    if n_orgs < 1:
        raise ValueError("orgs must be at least 1")
    horizon = _resolve_days(months, days)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    clock = Clock(start)
    world = build_world(seed, n_orgs, clock)
    summary = GenerationSummary(
        out_dir=out_dir,
        preset=preset,
        seed=seed,
        start=start,
        days=horizon,
        orgs=n_orgs,
        partners=world.n_partners,
        file_format=file_format,
    )

    injector = BadRowInjector(bad_row_rate, rng_for(seed, "bad"))
    summary.bad_kinds = injector.kind_counts

    def emit(entity: str, stem: str, rows: list, bad_index: int) -> None:
        rows, n_bad = injector.inject(entity, rows, rng_for(seed, f"bad/{entity}", bad_index))
        path = out_dir / f"{stem}.{file_format}"
        write_rows(path, FIELDS[entity], rows, file_format)
        summary.files.append(path)
        summary.rows[entity] += len(rows)
        summary.bad_rows[entity] += n_bad

    # Day index -1 is the initial snapshot.
    emit("organizations", "organizations", list(world.org_rows), -1)
    emit("partners", "partners", list(world.partner_rows), -1)

    deals_per_day = n_orgs * p.deals_per_org_per_month / DAYS_PER_MONTH
    fx = FxWalk(seed)
    plans, plan_rows = initial_plans(world, seed)
    spool_dir = Path(tempfile.mkdtemp(prefix=".synthetic-spool-", dir=out_dir))
    try:
        spool = Spool(spool_dir)
        for day in range(horizon):
            d = clock.date(day)
            activity = deals_for_day(world, clock, seed, day, horizon, deals_per_day, spool)
            summary.deals_created += activity.created
            spool.flush()

            items = activity.deals + spool.take("deals", day)
            items.sort()
            emit("deals", f"deals_{d}", [it[2] for it in items], day)
            items = activity.touchpoints + spool.take("touchpoints", day)
            del activity
            items.sort()
            emit("touchpoints", f"touchpoints_{d}", [it[2] for it in items], day)
            del items

            fx.step()
            if day == 0 or clock.weekday(day) < 5:  # no rates published at weekends
                emit("fx_rates", f"fx_rates_{d}", fx.rows(clock), day)

            if day >= 1:
                org_rows, partner_rows = world_updates(world, seed, day, clock)
                if org_rows:
                    emit("organizations", f"organizations_{d}", org_rows, day)
                if partner_rows:
                    emit("partners", f"partners_{d}", partner_rows, day)
                plan_rows = plan_updates(plans, world, seed, day, clock)
            # Day 0 writes the plans in place when the export starts.
            if plan_rows:
                emit("commission_plans", f"commission_plans_{d}", plan_rows, day)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return summary
