"""Integer-second time axis: second 0 is midnight UTC of the start date."""

from __future__ import annotations

from datetime import date, timedelta

DAY = 86_400

_TIME_OF_DAY: list[str] = []


def _time_of_day() -> list[str]:
    if not _TIME_OF_DAY:
        _TIME_OF_DAY.extend(
            f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
        )
    return _TIME_OF_DAY


class Clock:
    __slots__ = ("start", "_dates", "_tod")

    def __init__(self, start: date) -> None:
        self.start = start
        self._dates: dict[int, str] = {}
        self._tod = _time_of_day()

    def date(self, day: int) -> str:
        """``YYYY-MM-DD`` of day index ``day`` (may be negative)."""
        s = self._dates.get(day)
        if s is None:
            s = self._dates[day] = (self.start + timedelta(days=day)).isoformat()
        return s

    def ts(self, secs: int) -> str:
        """ISO 8601 UTC timestamp with a ``Z`` suffix."""
        day, rem = divmod(secs, DAY)
        s = self._dates.get(day)
        if s is None:
            s = self.date(day)
        return f"{s}T{self._tod[rem]}Z"

    def weekday(self, day: int) -> int:
        return (self.start + timedelta(days=day)).weekday()
