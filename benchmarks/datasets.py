"""Generated datasets for the benchmark, cached on disk (generation is slow at `hyper`).

A dataset is `months` of a preset plus one more day, split into two landing
folders: `month/` (the history a full refresh builds) and `next_day/` (what a
daily incremental run adds). The generator's files for day D do not depend on
how many days are generated, so `next_day/` is exactly the day after `month/`.
`last_days` cuts a shorter history out of a long one (the `history` stage), so
both histories share one `next_day/`, the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from synthetic_crm import generate

START = date(2026, 1, 1)
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Dataset:
    preset: str
    months: int
    seed: int
    root: Path
    days: int  # of history in `month/` (30 per month unless overridden)

    @property
    def month(self) -> Path:
        return self.root / "month"

    @property
    def next_day(self) -> Path:
        return self.root / "next_day"

    @property
    def last_day(self) -> date:
        return START + timedelta(days=self.days)


def dataset(
    work: Path,
    preset: str,
    months: int,
    seed: int,
    orgs: int | None = None,
    days: int | None = None,
) -> Dataset:
    """The dataset, generated on first use (a `.complete` marker guards half-written ones).

    `orgs` and `days` shrink a preset (the harness's own smoke test uses them)."""
    history = DAYS_PER_MONTH * months if days is None else days
    name = f"{preset}-{months}m-seed{seed}" + (f"-{orgs}orgs-{history}d" if orgs or days else "")
    ds = Dataset(preset, months, seed, work / "data" / name, history)
    marker = ds.root / ".complete"
    if marker.exists():
        return ds
    shutil.rmtree(ds.root, ignore_errors=True)
    ds.month.mkdir(parents=True)
    ds.next_day.mkdir()
    print(f"  generating {preset}: {history} days + 1 (seed {seed}) …", flush=True)
    generate(ds.month, preset=preset, days=history + 1, seed=seed, start=START, orgs=orgs)
    suffix = f"_{ds.last_day.isoformat()}."
    for path in ds.month.iterdir():
        if suffix in path.name:
            path.rename(ds.next_day / path.name)
    marker.touch()
    return ds


# Entities whose files are activity of their day; the others (organizations, partners,
# commission plans, exchange rates) describe the state the activity refers to.
ACTIVITY = ("deals", "touchpoints")
_DATED = re.compile(r"^(?P<entity>[a-z_]+)_(?P<day>\d{4}-\d{2}-\d{2})\.(csv|jsonl)$")


def last_days(ds: Dataset, days: int) -> Path:
    """A landing folder holding only the last `days` days of activity of `ds.month`
    (deals and touchpoints) with every reference file (organizations, partners,
    commission plans, exchange rates): a platform whose export started `days` ago,
    whose organizations, partners, plans and rates are those of the full history.

    Files are hard links (copies across file systems): the loader refuses symbolic
    links, and a link costs no space.
    """
    first = ds.last_day - timedelta(days=days)
    folder = ds.root / f"last_{days}d"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in sorted(ds.month.iterdir()):
        if path.name.startswith("."):
            continue
        dated = _DATED.match(path.name)
        if dated and dated["entity"] in ACTIVITY and date.fromisoformat(dated["day"]) < first:
            continue
        try:
            os.link(path, folder / path.name)
        except OSError:
            shutil.copy2(path, folder / path.name)
    marker.touch()
    return folder


def digest(directory: Path) -> str:
    """SHA-256 over the names and bytes of a folder's files: equal means byte-identical."""
    total = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if not p.name.startswith(".")):
        total.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                total.update(block)
    return total.hexdigest()


def concatenated(ds: Dataset, entity: str, rows: int | None = None) -> Path:
    """One CSV holding every `entity` file of the month (one header), optionally only the
    first `rows` data rows: the single file the ingestion peers are compared on."""
    name = f"{entity}_all.csv" if rows is None else f"{entity}_first{rows}.csv"
    out = ds.root / "single" / (f"{entity}_{rows or 'all'}") / name
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    written = 0
    with tmp.open("w", newline="", encoding="utf-8") as sink:
        writer = None
        for path in sorted(ds.month.glob(f"{entity}*.csv")):
            with path.open(newline="", encoding="utf-8") as source:
                reader = csv.reader(source)
                header = next(reader)
                if writer is None:
                    writer = csv.writer(sink, lineterminator="\n")
                    writer.writerow(header)
                for row in reader:
                    if rows is not None and written >= rows:
                        break
                    writer.writerow(row)
                    written += 1
            if rows is not None and written >= rows:
                break
    tmp.rename(out)
    return out


def count_rows(path: Path) -> int:
    """Data rows of a CSV file (records, so quoted newlines count once)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1
