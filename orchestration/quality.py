"""Input-data expectations run with great-expectations 1.x, in the database.

The rules about what the CRM sent that ingestion does not refuse and the
models cannot make true (a status outside its list, a negative amount, a
touchpoint of an unknown partner, a deal without an FX rate) live here, on the
tables the marts read; the models' own invariants are dbt tests, and
docs/data-quality.md says which checker owns which rule.

GX validates through its SQL execution engine: aggregate queries run in
PostgreSQL, no table is pulled into pandas. Each expectation becomes one Dagster
asset check (see defs/attribution/quality_checks.py); the list below is the whole
input-data policy.

Every expectation also names its failing rows in SQL (`violations`: the row's id
first, then its `org_id`). That query runs only when the expectation fails, to
say which organizations fail and with which ids (`summarize_failures`): one
organization's bad rows are then visible as that organization's problem.

Amounts are compared as numeric, never as double precision: any value the
contract allows (0, 1e-400, 10^15, and more) stays in range. (GX's own
`ExpectColumnValuesToBeBetween` binds its bound as a float, so PostgreSQL casts
every amount to double precision and fails on 1e-400.)
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from platform_core.database import connect

# How much of a failure the check reports: organizations listed, ids per organization.
MAX_ORGS = 20
SAMPLE_IDS = 5
MAX_VALUE_CHARS = 200  # a sample value is cut here (text fields may hold up to 1M characters)
MAX_TEXT_CHARS = 2000  # the one-line description of a failure
# A failure summary is diagnostics: it never holds a check up for long.
SUMMARY_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Expectation:
    name: str
    # The great-expectations class (great_expectations.expectations) and its arguments:
    # GX is imported only when a check runs, not when Dagster loads the definitions
    # (its import costs seconds, paid by every code server and run worker start).
    gx_class: str
    gx_arguments: tuple[tuple[str, Any], ...]
    error: bool  # ERROR severity (a broken pipeline) rather than WARN (data to look at)
    description: str
    # SQL over {batch} (the table): the failing rows, their id first, then org_id.
    violations: str

    def expectation(self) -> Any:
        import great_expectations.expectations as gxe

        return getattr(gxe, self.gx_class)(**dict(self.gx_arguments))


def _in_set(
    name: str, column: str, values: list[str], description: str, violations: str
) -> Expectation:
    arguments = (("column", column), ("value_set", values))
    return Expectation(
        name, "ExpectColumnValuesToBeInSet", arguments, True, description, violations
    )


def _rows(name: str, query: str, description: str, error: bool = False) -> Expectation:
    """An expectation given as the query of its failing rows (id, org_id, details)."""
    arguments = (("unexpected_rows_query", query),)
    return Expectation(name, "UnexpectedRowsExpectation", arguments, error, description, query)


# (schema, table) → expectations. The tables are the ones the marts read: the
# current deals, partners and touchpoints (int_*), and fct_deals for FX coverage.
EXPECTATIONS: dict[tuple[str, str], list[Expectation]] = {
    ("intermediate", "int_deals__current"): [
        _in_set("gx_deal_status_valid", "status", ["open", "won", "lost"], "Status is open, won or lost.",
                "select deal_id, org_id, status from {batch} where status not in ('open', 'won', 'lost')"),
        _rows("gx_deal_amount_non_negative",
              "select deal_id, org_id, amount from {batch} where amount < 0",
              "Amounts are >= 0.", error=True),
        _rows("gx_closed_deals_have_closed_at",
              "select deal_id, org_id, status from {batch} where status in ('won', 'lost') and closed_at is null",
              "Every won or lost deal has closed_at.", error=True),
    ],
    ("intermediate", "int_partners__current"): [
        _in_set("gx_partner_status_valid", "partner_status", ["active", "inactive"], "Status is active or inactive.",
                "select partner_id, org_id, partner_status from {batch} where partner_status not in ('active', 'inactive')"),
    ],
    ("intermediate", "int_touchpoints__current"): [
        _rows("gx_touchpoint_partner_known_same_org",
              "select t.touchpoint_id, t.org_id, t.partner_id from {batch} as t left join intermediate.int_partners__current as p"
              " on p.partner_id = t.partner_id where p.partner_id is null or p.org_id <> t.org_id",
              "Touchpoints of unknown partners or of another organization's partner (never credited)."),
        _rows("gx_touchpoint_deal_known",
              "select t.touchpoint_id, t.org_id, t.deal_id from {batch} as t left join intermediate.int_deals__current as d"
              " on d.deal_id = t.deal_id where d.deal_id is null",
              "Touchpoints of deals that are not (yet) loaded."),
    ],
    ("marts", "fct_deals"): [
        _rows("gx_fx_coverage",
              "select deal_id, org_id, currency from {batch} where amount_usd is null",
              "Deals without an FX rate on or before their reference date (no USD amount, not attributed)."),
    ],
}  # fmt: skip


@dataclass(frozen=True)
class OrgFailures:
    org_id: str | None
    rows: int
    sample_ids: list[str]


@dataclass(frozen=True)
class FailureSummary:
    """Which organizations a check fails for, with sample ids of the failing rows."""

    rows: int = 0
    organization_count: int = 0
    organizations: list[OrgFailures] = field(default_factory=list)
    id_column: str | None = None
    sample_rows: list[dict[str, str | None]] = field(default_factory=list)
    error: str | None = None  # the summary itself could not be computed

    def org_ids(self) -> list[str | None]:
        return [org.org_id for org in self.organizations]

    def text(self) -> str:
        """One line: 'fails for 2 organizations: org_a (3 rows: d1, d2, d3), org_b (1 row: d9)'."""
        text = self._text()
        return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1] + "…"

    def _text(self) -> str:
        if self.error:
            return f"failing rows could not be listed: {self.error}"
        if not self.organizations:
            if self.sample_rows:
                return "failing rows (no organization column): " + "; ".join(
                    ", ".join(f"{k}={v}" for k, v in row.items()) for row in self.sample_rows
                )
            return "no failing rows found"
        parts = []
        for org in self.organizations:
            noun = "row" if org.rows == 1 else "rows"
            ids = ", ".join(str(i) for i in org.sample_ids)
            more = ", …" if len(org.sample_ids) >= SAMPLE_IDS and org.rows > SAMPLE_IDS else ""
            parts.append(f"{org.org_id or '(no organization)'} ({org.rows} {noun}: {ids}{more})")
        shown = (
            f" (the {len(self.organizations)} with most rows)"
            if self.organization_count > len(self.organizations)
            else ""
        )
        plural = "organization" if self.organization_count == 1 else "organizations"
        return f"fails for {self.organization_count} {plural}{shown}: " + ", ".join(parts)

    def metadata(self) -> dict[str, Any]:
        """Dagster check metadata: plain values, the per-organization detail as JSON."""
        import dagster as dg

        data: dict[str, Any] = {"failing_organizations": self.text()}
        if self.error:
            return data
        data["failing_organization_count"] = self.organization_count
        data["failing_org_ids"] = ", ".join(str(o) for o in self.org_ids())
        data["failures_by_organization"] = dg.MetadataValue.json(
            [
                {
                    "org_id": org.org_id,
                    "rows": org.rows,
                    f"sample_{self.id_column or 'ids'}": org.sample_ids,
                }
                for org in self.organizations
            ]
        )
        if self.sample_rows:
            data["sample_failing_rows"] = dg.MetadataValue.json(self.sample_rows)
        data["failing_rows"] = dg.MetadataValue.md(self.markdown())
        return data

    def markdown(self) -> str:
        """The failing rows as a table: organization, rows, sample ids (a list of
        sample rows when there is no organization column)."""
        if self.organizations:
            id_name = _md(f"sample {self.id_column or 'ids'}")
            lines = [f"| organization | failing rows | {id_name} |", "|---|---:|---|"]
            for org in self.organizations:
                ids = ", ".join(_md(str(i)) for i in org.sample_ids)
                more = ", …" if len(org.sample_ids) >= SAMPLE_IDS and org.rows > SAMPLE_IDS else ""
                lines.append(
                    f"| {_md(org.org_id or '(no organization)')} | {org.rows} | {ids}{more} |"
                )
            if self.organization_count > len(self.organizations):
                lines.append(
                    f"\n{self.organization_count - len(self.organizations)} more organizations"
                    " not shown."
                )
            return "\n".join(lines)
        if self.sample_rows:
            return "\n".join(
                "- " + ", ".join(f"{_md(k)} = {_md(str(v))}" for k, v in row.items())
                for row in self.sample_rows
            )
        return _md(self.text())


def _md(text: str) -> str:
    """Text from the data as literal Markdown: every ASCII punctuation character escaped
    (a CRM id may hold `|`, `*`, `<`…), one line."""
    return "".join("\\" + c if c in string.punctuation else " " if c in "\r\n" else c for c in text)


def _short(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _first_line(text: str) -> str:
    return _short(text.strip().splitlines()[0] if text.strip() else text) or ""


def summarize_failures(conn: psycopg.Connection, failing_rows: sql.Composable) -> FailureSummary:
    """Group the rows of `failing_rows` (a query) by org_id, with sample ids per organization.

    The id is the query's first column other than org_id. Without an org_id
    column, only sample rows are returned. Runs read-only, under a time limit;
    an error is reported in the summary rather than raised.
    """
    try:
        with conn.transaction():
            conn.execute("set transaction read only")
            conn.execute(
                sql.SQL("set local statement_timeout = {}").format(sql.Literal(SUMMARY_TIMEOUT_MS))
            )
            cursor = conn.execute(
                sql.SQL("select * from ({}) as failures limit {}").format(
                    failing_rows, sql.Literal(SAMPLE_IDS)
                )
            )
            columns = [c.name for c in cursor.description or []]
            samples = [
                {name: _short(value) for name, value in zip(columns, row, strict=True)}
                for row in cursor.fetchall()
            ]
            others = [c for c in columns if c != "org_id"]
            if "org_id" not in columns or not others:
                return FailureSummary(
                    rows=len(samples), sample_rows=samples, id_column=others[0] if others else None
                )
            id_column = others[0]
            rows = conn.execute(
                sql.SQL(
                    """
                    select org_id, failing_rows, sample_ids, organizations, total_rows
                    from (
                        select org_id, count(*) as failing_rows,
                               array_agg(distinct row_id collate "C" order by row_id collate "C")
                                   filter (where rank <= {sample}) as sample_ids,
                               count(*) over () as organizations,
                               sum(count(*)) over () as total_rows
                        from (
                            select f.org_id::text as org_id,
                                   left(f.{id}::text, {width}) as row_id,
                                   dense_rank() over (
                                       partition by f.org_id order by f.{id}::text collate "C"
                                   ) as rank
                            from ({query}) as f
                        ) as ranked
                        group by org_id
                    ) as per_org
                    order by failing_rows desc, org_id collate "C" nulls first
                    limit {orgs}
                    """
                ).format(
                    sample=sql.Literal(SAMPLE_IDS),
                    id=sql.Identifier(id_column),
                    width=sql.Literal(MAX_VALUE_CHARS),
                    query=failing_rows,
                    orgs=sql.Literal(MAX_ORGS),
                )
            ).fetchall()
    except psycopg.Error as exc:
        return FailureSummary(error=_first_line(str(exc)))
    if not rows:
        return FailureSummary(id_column=id_column, sample_rows=samples)
    return FailureSummary(
        rows=int(rows[0][4]),
        organization_count=int(rows[0][3]),
        organizations=[
            OrgFailures(org, int(count), [i or "(null)" for i in ids or []])
            for org, count, ids, _, _ in rows
        ],
        id_column=id_column,
        sample_rows=samples,
    )


@dataclass(frozen=True)
class Outcome:
    name: str
    success: bool
    error: bool
    unexpected_count: int
    # The rows checked: the table's rows. (GX reports none for a row-query expectation.)
    element_count: int
    failures: FailureSummary | None = None  # set when the expectation failed
    exception: str | None = None  # the expectation could not be evaluated

    @property
    def unexpected_percent(self) -> float:
        """The failing rows as a share of the rows checked, in percent."""
        if not self.element_count:
            return 0.0
        return round(100.0 * self.unexpected_count / self.element_count, 4)


def _exception(validated: Any) -> str | None:
    """The first error GX caught while evaluating, if any (GX reports rather than raises)."""
    info = validated.exception_info or {}
    for candidate in (info, *(v for v in info.values() if isinstance(v, dict))):
        if candidate.get("raised_exception"):
            return _first_line(str(candidate.get("exception_message") or "unknown error"))
    return None


def _context_config() -> Any:
    """In memory, no progress bars, no usage statistics. GX 1.24 sends none (it has
    no analytics client left); the setting keeps it so should a later version bring
    one back. A new config per context: a context records its data sources in it."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    return DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )


def validate_table(url: str, schema: str, table: str) -> list[Outcome]:
    """Run the table's expectations against PostgreSQL; one outcome per expectation."""
    import great_expectations as gx

    expectations = EXPECTATIONS[(schema, table)]
    context = gx.get_context(mode="ephemeral", project_config=_context_config())
    source = context.data_sources.add_postgres(name="platform", connection_string=url)
    batch = (
        source.add_table_asset(name=f"{schema}.{table}", table_name=table, schema_name=schema)
        .add_batch_definition_whole_table("all")
        .get_batch()
    )
    validated = [
        # One expectation at a time: each result is unambiguously its own.
        batch.validate(expected.expectation(), result_format="SUMMARY")
        for expected in expectations
    ]
    name = sql.Identifier(schema, table)
    with connect(url) as conn:
        # The rows every expectation of the table checked, counted once. (GX's
        # element_count is the same number for the column expectations it gives it for.)
        try:
            with conn.transaction():
                (rows,) = conn.execute(sql.SQL("select count(*) from {}").format(name)).fetchone()
        except psycopg.Error:
            rows = 0  # unreadable: each expectation's evaluation_error says why
        outcomes = []
        for expected, result in zip(expectations, validated, strict=True):
            details = result.result or {}
            unexpected = details.get("unexpected_count")
            if unexpected is None:  # UnexpectedRowsExpectation reports the row count it found
                unexpected = details.get("observed_value", 0) or 0
            outcome = Outcome(
                expected.name,
                bool(result.success),
                expected.error,
                int(unexpected),
                int(rows),
                exception=_exception(result),
            )
            outcomes.append(
                outcome if outcome.success else _with_failures(conn, outcome, expected, name)
            )
    return outcomes


def _with_failures(
    conn: psycopg.Connection, outcome: Outcome, expected: Expectation, table: sql.Identifier
) -> Outcome:
    failing = sql.SQL(expected.violations).format(batch=table)
    summary = summarize_failures(conn, failing)
    return Outcome(
        outcome.name,
        outcome.success,
        outcome.error,
        # An expectation GX could not evaluate still counts its failing rows here.
        outcome.unexpected_count or summary.rows,
        outcome.element_count,
        summary,
        outcome.exception,
    )
