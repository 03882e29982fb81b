"""The System Health panel: thresholds, a status word per area, the Markdown page, the metrics.

Pure: it takes numbers collected elsewhere (orchestration/defs/platform/health.py), so
the rules read in one place and are tested without a database. Thresholds appear in
the page's text, never as metrics: the UI plots every numeric metadata entry, and a
constant line would crowd the plots it is meant to judge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum


class Status(IntEnum):
    """Ordered so that the worst of several is their max()."""

    OK = 0
    WARN = 1
    FAIL = 2


# Thresholds, documented in docs/orchestration.md ("System health").
# BI: each dashboard query's p95 within 10 ms (docs/contract.md §7); 10× that fails.
BI_P95_WARN_MS = 10.0
BI_P95_FAIL_MS = 100.0
CONNECTIONS_WARN_PCT = 80.0
CONNECTIONS_FAIL_PCT = 95.0
DISK_FREE_WARN_PCT = 20.0
DISK_FREE_FAIL_PCT = 10.0
# The backlog's bounds, declared here once: the backlog_within_limits check uses them too
# (docs/contract.md §4.6).
BACKLOG_WARN = 500
BACKLOG_FAIL = 1000
# A won deal should reach fct_partner_attribution within 30 s at p95 (docs/contract.md §7);
# the panel warns only when one has waited far longer than that.
OLDEST_PENDING_WARN_SECONDS = 5 * 60
OLDEST_PENDING_FAIL_SECONDS = 60 * 60
ERROR_RATE_FAIL = 0.2

THRESHOLDS = {
    "BI_P95_WARN_MS": BI_P95_WARN_MS,
    "BI_P95_FAIL_MS": BI_P95_FAIL_MS,
    "CONNECTIONS_WARN_PCT": CONNECTIONS_WARN_PCT,
    "CONNECTIONS_FAIL_PCT": CONNECTIONS_FAIL_PCT,
    "DISK_FREE_WARN_PCT": DISK_FREE_WARN_PCT,
    "DISK_FREE_FAIL_PCT": DISK_FREE_FAIL_PCT,
    "BACKLOG_WARN": BACKLOG_WARN,
    "BACKLOG_FAIL": BACKLOG_FAIL,
    "OLDEST_PENDING_WARN_SECONDS": OLDEST_PENDING_WARN_SECONDS,
    "OLDEST_PENDING_FAIL_SECONDS": OLDEST_PENDING_FAIL_SECONDS,
    "ERROR_RATE_FAIL": ERROR_RATE_FAIL,
}

AREAS = (
    "Performance",
    "Capacity",
    "Business",
    "Attribution backlog",
    "Error rate",
    "Recent alerts",
)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (no interpolation: always a value that was measured)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Performance:
    """Latencies (ms) of the BI dashboard queries, by query name, from one probe."""

    latencies_ms: dict[str, list[float]]
    organizations: int
    role: str  # the role the probe ran as: bi_reader, or the platform's when it cannot
    probe_seconds: float = 0.0
    statement_calls: int | None = None  # pg_stat_statements, BI roles' statements
    statement_mean_ms: float | None = None
    statements_note: str = ""

    @property
    def samples(self) -> list[float]:
        return [ms for values in self.latencies_ms.values() for ms in values]

    def status(self) -> Status:
        p95 = percentile(self.samples, 0.95)
        if p95 is None:
            return Status.WARN
        if p95 > BI_P95_FAIL_MS:
            return Status.FAIL
        return Status.WARN if p95 > BI_P95_WARN_MS else Status.OK


@dataclass
class Capacity:
    database_bytes: int
    connections: int
    max_connections: int
    disk_free_bytes: int | None = None  # None: not measurable from here (remote server)
    disk_total_bytes: int | None = None
    disk_note: str = ""

    @property
    def connections_pct(self) -> float:
        return 100.0 * self.connections / self.max_connections if self.max_connections else 0.0

    @property
    def disk_free_pct(self) -> float | None:
        if self.disk_free_bytes is None or not self.disk_total_bytes:
            return None
        return 100.0 * self.disk_free_bytes / self.disk_total_bytes

    def status(self) -> Status:
        status = Status.OK
        if self.connections_pct >= CONNECTIONS_FAIL_PCT:
            status = Status.FAIL
        elif self.connections_pct >= CONNECTIONS_WARN_PCT:
            status = Status.WARN
        free = self.disk_free_pct
        if free is not None and free < DISK_FREE_FAIL_PCT:
            status = Status.FAIL
        elif free is not None and free < DISK_FREE_WARN_PCT:
            status = max(status, Status.WARN)
        return status


@dataclass
class Business:
    organizations: int
    active_organizations: int  # with at least one active partner
    avg_partners: float
    max_partners: int
    deals_closed_today: int
    today: date

    def status(self) -> Status:
        return Status.OK if self.active_organizations else Status.WARN


@dataclass
class Backlog:
    pending: int
    oldest_seconds: float | None  # None: nothing pending

    def status(self) -> Status:
        age = self.oldest_seconds or 0.0
        if self.pending > BACKLOG_FAIL or age > OLDEST_PENDING_FAIL_SECONDS:
            return Status.FAIL
        if self.pending > BACKLOG_WARN or age > OLDEST_PENDING_WARN_SECONDS:
            return Status.WARN
        return Status.OK


@dataclass
class Errors:
    """Finished runs of the last 24 h (the health refreshes themselves aside)."""

    runs: int
    failed: int
    quarantined_rows: int

    @property
    def rate(self) -> float:
        return self.failed / self.runs if self.runs else 0.0

    def status(self) -> Status:
        if not self.failed:
            return Status.OK
        return Status.FAIL if self.rate >= ERROR_RATE_FAIL else Status.WARN


@dataclass
class Alert:
    at: datetime
    text: str


@dataclass
class Alerts:
    """What the alert sensors posted in the last 24 h: failed runs, failed error checks."""

    failed_runs: list[Alert] = field(default_factory=list)
    failed_checks: list[Alert] = field(default_factory=list)
    failed_run_count: int = 0
    failed_check_count: int = 0
    still_failing_checks: list[str] = field(default_factory=list)  # latest evaluation failed

    def status(self) -> Status:
        if self.still_failing_checks:
            return Status.FAIL
        return Status.WARN if self.failed_run_count or self.failed_check_count else Status.OK


@dataclass
class Area:
    name: str
    status: Status
    summary: str
    lines: list[str]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _size(count: float | None) -> str:
    if count is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "none pending"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def markdown_text(text: str, limit: int = 200) -> str:
    """One line of text from elsewhere (an error message, a name) that cannot break the page."""
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    for char in "\\`*_[]<>|#":
        line = line.replace(char, "\\" + char)
    return line


@dataclass
class Panel:
    performance: Performance
    capacity: Capacity
    business: Business
    backlog: Backlog
    errors: Errors
    alerts: Alerts
    refreshed_at: datetime

    def areas(self) -> list[Area]:
        return [
            self._performance(),
            self._capacity(),
            self._business(),
            self._backlog(),
            self._errors(),
            self._alerts(),
        ]

    def status(self) -> Status:
        return max(area.status for area in self.areas())

    def _performance(self) -> Area:
        perf = self.performance
        samples = perf.samples
        p95, p99 = percentile(samples, 0.95), percentile(samples, 0.99)
        lines = [
            f"BI dashboard queries (docs/bi.md) run as `{perf.role}`: p95 **{_ms(p95)}**,"
            f" p99 {_ms(p99)} over {len(samples)} runs on {perf.organizations} organizations"
            f" (probe: {perf.probe_seconds:.2f} s)",
        ]
        for name, values in perf.latencies_ms.items():
            lines.append(
                f"{name}: median {_ms(percentile(values, 0.5))}, slowest {_ms(max(values))}"
            )
        if perf.statement_calls is not None:
            lines.append(
                f"pg_stat_statements, BI roles' statements since its last reset:"
                f" {perf.statement_calls} calls, mean {_ms(perf.statement_mean_ms)}"
            )
        else:
            lines.append(f"pg_stat_statements: {perf.statements_note or 'not available'}")
        lines.append(
            f"threshold: OK while p95 ≤ {BI_P95_WARN_MS:g} ms (docs/contract.md §7),"
            f" WARN up to {BI_P95_FAIL_MS:g} ms, FAIL above; WARN when nothing could be probed"
        )
        summary = f"BI p95 {_ms(p95)}, p99 {_ms(p99)}" if samples else "nothing to probe"
        return Area("Performance", perf.status(), summary, lines)

    def _capacity(self) -> Area:
        cap = self.capacity
        free_pct = cap.disk_free_pct
        disk = (
            f"{_size(cap.disk_free_bytes)} free of {_size(cap.disk_total_bytes)} ({free_pct:.0f} %)"
            if free_pct is not None
            else f"unknown ({cap.disk_note})"
        )
        lines = [
            f"database size: **{_size(cap.database_bytes)}**",
            f"connections in use: **{cap.connections}** of max_connections {cap.max_connections}"
            f" ({cap.connections_pct:.0f} %)",
            f"disk of the data directory: {disk}",
            f"threshold: connections WARN from {CONNECTIONS_WARN_PCT:g} %, FAIL from"
            f" {CONNECTIONS_FAIL_PCT:g} % of max_connections; free disk WARN below"
            f" {DISK_FREE_WARN_PCT:g} %, FAIL below {DISK_FREE_FAIL_PCT:g} %",
        ]
        summary = (
            f"{_size(cap.database_bytes)}, {cap.connections}/{cap.max_connections} connections,"
            + (f" disk {free_pct:.0f} % free" if free_pct is not None else " disk unknown")
        )
        return Area("Capacity", cap.status(), summary, lines)

    def _business(self) -> Area:
        biz = self.business
        lines = [
            f"active organizations (at least one active partner): **{biz.active_organizations}**"
            f" of {biz.organizations}",
            f"active partners per organization: average {biz.avg_partners:.1f}, largest {biz.max_partners}",
            f"deals closed today ({biz.today.isoformat()} UTC, won or lost): **{biz.deals_closed_today}**",
            "threshold: WARN when no organization has an active partner",
        ]
        summary = (
            f"{biz.active_organizations} active organizations,"
            f" {biz.deals_closed_today} deals closed today"
        )
        return Area("Business", biz.status(), summary, lines)

    def _backlog(self) -> Area:
        log = self.backlog
        lines = [
            f"won deals waiting for attribution (marts.attribution_backlog): **{log.pending}**",
            f"oldest waiting for: {_duration(log.oldest_seconds)}",
            f"threshold: WARN above {BACKLOG_WARN} pending or oldest over"
            f" {OLDEST_PENDING_WARN_SECONDS // 60} min; FAIL above {BACKLOG_FAIL} or over"
            f" {OLDEST_PENDING_FAIL_SECONDS // 60} min",
        ]
        summary = f"{log.pending} pending, oldest {_duration(log.oldest_seconds)}"
        return Area("Attribution backlog", log.status(), summary, lines)

    def _errors(self) -> Area:
        err = self.errors
        lines = [
            f"failed runs in the last 24 h: **{err.failed}** of {err.runs} finished"
            f" ({err.rate:.0%}; the health refreshes themselves not counted)",
            f"rows quarantined by ingestion in the last 24 h: {err.quarantined_rows}",
            f"threshold: OK with no failed run, WARN below {ERROR_RATE_FAIL:.0%}, FAIL from"
            f" {ERROR_RATE_FAIL:.0%}",
        ]
        summary = f"{err.failed}/{err.runs} runs failed ({err.rate:.0%})"
        return Area("Error rate", err.status(), summary, lines)

    def _alerts(self) -> Area:
        al = self.alerts
        lines = [
            f"failed runs (24 h): {al.failed_run_count}" + (", latest:" if al.failed_runs else "")
        ]
        lines += [f"  {a.at:%Y-%m-%d %H:%M} UTC · {a.text}" for a in al.failed_runs]
        lines.append(
            f"failed error-severity check results (24 h): {al.failed_check_count}"
            + (", latest:" if al.failed_checks else "")
        )
        lines += [f"  {a.at:%Y-%m-%d %H:%M} UTC · {a.text}" for a in al.failed_checks]
        if al.still_failing_checks:
            lines.append("still failing: " + ", ".join(al.still_failing_checks))
        lines.append(
            "threshold: FAIL while an error-severity check's latest result is a failure,"
            " WARN when a run or such a check failed in the last 24 h"
        )
        summary = f"{al.failed_run_count} failed runs, {al.failed_check_count} failed error checks"
        return Area("Recent alerts", al.status(), summary, lines)

    def markdown(self) -> str:
        areas = self.areas()
        overall = max(area.status for area in areas)
        out = [
            "# System health",
            "",
            f"**{overall.name}** overall · refreshed {self.refreshed_at:%Y-%m-%d %H:%M:%S} UTC ·"
            ' thresholds: docs/orchestration.md, "System health"',
            "",
            "| area | status | now |",
            "|---|---|---|",
        ]
        out += [f"| {a.name} | **{a.status.name}** | {a.summary} |" for a in areas]
        for area in areas:
            out += ["", f"## {area.name}: {area.status.name}", ""]
            for line in area.lines:
                indent = "  " if line.startswith("  ") else ""
                out.append(f"{indent}- {line.strip()}")
        return "\n".join(out) + "\n"

    def metrics(self) -> dict[str, int | float]:
        """The numbers to plot over time (no thresholds, no settings: see the module's doc)."""
        perf, cap = self.performance, self.capacity
        samples = perf.samples
        values: dict[str, int | float | None] = {
            "bi_query_p95_ms": _round(percentile(samples, 0.95)),
            "bi_query_p99_ms": _round(percentile(samples, 0.99)),
            "bi_statement_calls": perf.statement_calls,
            "bi_statement_mean_ms": _round(perf.statement_mean_ms),
            "database_size_mb": round(cap.database_bytes / 2**20, 1),
            "connections_in_use": cap.connections,
            "connections_used_pct": round(cap.connections_pct, 1),
            "disk_free_gb": (
                None if cap.disk_free_bytes is None else round(cap.disk_free_bytes / 2**30, 2)
            ),
            "disk_free_pct": _round(cap.disk_free_pct),
            "active_organizations": self.business.active_organizations,
            "avg_active_partners_per_organization": round(self.business.avg_partners, 2),
            "max_active_partners_per_organization": self.business.max_partners,
            "deals_closed_today": self.business.deals_closed_today,
            "attribution_backlog": self.backlog.pending,
            "oldest_pending_seconds": round(self.backlog.oldest_seconds or 0.0, 1),
            "runs_24h": self.errors.runs,
            "failed_runs_24h": self.errors.failed,
            "run_error_rate_24h": round(self.errors.rate, 4),
            "quarantined_rows_24h": self.errors.quarantined_rows,
            "failed_error_checks_24h": self.alerts.failed_check_count,
        }
        # A number that could not be measured is left out, never plotted as 0.
        return {key: value for key, value in values.items() if value is not None}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
