"""Commission periods: UTC calendar months, written YYYY-MM."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime


@dataclass(frozen=True, order=True)
class Period:
    """One UTC calendar month, by its first day."""

    first_day: date

    @classmethod
    def parse(cls, text: str) -> Period:
        """`2026-04` → April 2026; anything else is a ValueError that says what is expected."""
        match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        # 9999-12 would end in the year 10000, past what a date can hold.
        if not match or not 1 <= int(match.group(2)) <= 12 or not 1 <= int(match.group(1)) <= 9998:
            raise ValueError(f"period {text!r}: expected a month as YYYY-MM, e.g. 2026-04")
        return cls(date(int(match.group(1)), int(match.group(2)), 1))

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.replace(day=1))

    @property
    def next(self) -> Period:
        year, month = self.first_day.year, self.first_day.month
        return Period(date(year + month // 12, month % 12 + 1, 1))

    @property
    def previous(self) -> Period:
        year, month = self.first_day.year, self.first_day.month
        return Period(date(year - (month == 1), (month - 2) % 12 + 1, 1))

    @property
    def ends_at(self) -> datetime:
        """The first instant after the month (UTC)."""
        return datetime.combine(self.next.first_day, datetime.min.time(), UTC)

    def __str__(self) -> str:
        return f"{self.first_day:%Y-%m}"
