"""What the raw layer and the marts hold, as the command line prints it after a run."""

from __future__ import annotations

from psycopg import sql

from orchestration.dbt_project import mart_tables
from platform_core.database import connect

RAW_TABLES = ("organizations", "partners", "deals", "touchpoints", "fx_rates", "quarantine")


def raw_summary(url: str) -> list[str]:
    """Row counts of the raw layer and the most common quarantine reasons."""
    lines = ["raw layer:"]
    with connect(url) as conn:
        for table in RAW_TABLES:
            query = sql.SQL("select count(*) from raw.{}").format(sql.Identifier(table))
            (count,) = conn.execute(query).fetchone()
            lines.append(f"  raw.{table:<14} {count:>9,} rows")
        reasons = conn.execute(
            """
            select entity, split_part(reason, ':', 1) as field, count(*)
            from raw.quarantine group by 1, 2 order by 3 desc, 1, 2 limit 5
            """
        ).fetchall()
    if reasons:
        lines.append("  most common quarantine reasons (entity, field, rows):")
        lines += [f"    {entity:<12} {field:<40} {n:>6,}" for entity, field, n in reasons]
    return lines


def marts_summary(url: str) -> list[str]:
    """What the marts hold now: row counts and when their rows were last written
    (every mart the dbt project declares), deals attributed, revenue by model, backlog."""
    lines = []
    with connect(url) as conn:
        lines.append("marts:")
        # Tables, not views (a view's computed_at is the time it is read), that have
        # computed_at: a database built before it got one lacks it until its
        # full refresh (docs/incremental.md).
        timed = {
            name
            for (name,) in conn.execute(
                "select c.table_name from information_schema.columns as c"
                " join information_schema.tables as t using (table_schema, table_name)"
                " where c.table_schema = 'marts' and c.column_name = 'computed_at'"
                " and t.table_type = 'BASE TABLE'"
            )
        }
        for table in mart_tables():
            written = (
                sql.SQL("max(computed_at) at time zone 'UTC'")
                if table in timed
                else sql.SQL("null::timestamp")
            )
            query = sql.SQL("select count(*), {written} from marts.{table}").format(
                written=written, table=sql.Identifier(table)
            )
            count, last = conn.execute(query).fetchone()
            when = f"  last written {last:%Y-%m-%d %H:%M} UTC" if last else ""
            lines.append(f"  marts.{table:<24} {count:>10,} rows{when}")
        won, attributed, revenue = conn.execute(
            """
            select count(*) filter (where is_won),
                   count(*) filter (where is_won and eligible_touchpoint_count > 0
                                    and amount_usd is not null),
                   coalesce(sum(amount_usd) filter (where is_won), 0)
            from marts.fct_deals
            """
        ).fetchone()
        lines.append(
            f"won deals: {won:,} (USD {revenue:,.2f}); attributed to partners: {attributed:,}"
        )
        lines.append("attributed revenue by model (USD):")
        for model, amount, partners in conn.execute(
            """
            select attribution_model, sum(attributed_amount_usd), count(distinct partner_id)
            from marts.fct_partner_attribution group by 1 order by 1
            """
        ):
            lines.append(f"  {model:<16} {amount:>16,.2f}  ({partners:,} partners)")
        by_weights, fell_back, reasons = conn.execute(
            """
            select count(*) filter (where not data_driven_fallback),
                   count(*) filter (where data_driven_fallback),
                   string_agg(distinct data_driven_fallback_reason, '; ')
            from marts.fct_deals
            """
        ).fetchone()
        lines.append(
            f"data_driven: {by_weights:,} won deals credited by channel weights,"
            f" {fell_back:,} fell back to linear" + (f" ({reasons})" if reasons else "")
        )
        statements, partners, first, last, closed, due = conn.execute(
            """
            select count(*), count(distinct partner_id), min(period), max(period),
                   count(*) filter (where period_status = 'closed'), coalesce(sum(total_usd), 0)
            from marts.partner_statements
            """
        ).fetchone()
        span = f", {first:%Y-%m} to {last:%Y-%m}" if first else ""
        lines.append(
            f"partner statements: {statements:,} for {partners:,} partners{span}"
            f" ({closed:,} in closed periods); commissions USD {due:,.2f}"
        )
        for org, partner, name, period, total, count in conn.execute(
            """
            select org_id, partner_id, partner_name, period, total_usd, line_count
            from marts.partner_statements order by total_usd desc, partner_id limit 3
            """
        ):
            lines.append(
                f"  {org} {partner} ({name}) {period:%Y-%m}: USD {total:,.2f} over {count:,} lines"
            )
        pending, oldest = conn.execute(
            "select count(*), max(pending_for) from marts.attribution_backlog"
        ).fetchone()
        lines.append(
            f"attribution backlog: {pending:,} pending won deals (oldest: {oldest or '-'})"
        )
    return lines
