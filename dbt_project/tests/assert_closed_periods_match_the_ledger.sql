{{ config(meta={"dagster": {"ref": {"name": "fct_commission_lines"}}}) }}
-- docs/contract.md §8.4, §8.8: a closed period's lines are exactly what was
-- recorded when it closed. The mart's closed lines equal the ledger's, row for
-- row; each close's lines still have the count, total and digest recorded with
-- it; and no open line sits in a closed period. One row per problem, with its organization.
with mart_closed as (
    select
        org_id,
        period,
        deal_id,
        partner_id,
        line_type,
        plan_id,
        attribution_model,
        amount_usd,
        deal_closed_at
    from {{ ref('fct_commission_lines') }}
    where period_status = 'closed'
),

ledger as (
    select
        org_id,
        period,
        deal_id,
        partner_id,
        line_type,
        plan_id,
        attribution_model,
        amount_usd,
        deal_closed_at
    from {{ ref('stg_commissions__ledger_lines') }}
),

recomputed as (
    select
        closings.closing_id,
        closings.org_id,
        closings.line_count,
        closings.total_usd,
        closings.lines_digest,
        count(lines.closing_id) as actual_count,
        coalesce(sum(lines.amount_usd), 0) as actual_total,
        commissions.lines_digest(coalesce(array_agg(lines) filter (where lines.closing_id is not null), '{}'))
            as actual_digest
    from {{ ref('stg_commissions__closings') }} as closings
    left join {{ source('commissions', 'ledger_lines') }} as lines
        on closings.closing_id = lines.closing_id
    group by
        closings.closing_id, closings.org_id, closings.line_count, closings.total_usd, closings.lines_digest
),

last_closed as (
    select
        org_id,
        max(period) as period
    from {{ ref('stg_commissions__closings') }}
    group by org_id
)

select
    org_id,
    'closed line not in the ledger' as problem
from (
    select * from mart_closed
    except all
    select * from ledger
) as extra
union all
select
    org_id,
    'ledger line missing from the mart' as problem
from (
    select * from ledger
    except all
    select * from mart_closed
) as missing
union all
select
    org_id,
    'closing ' || closing_id || ': its lines changed since it was recorded' as problem
from recomputed
where
    actual_count <> line_count
    or actual_total <> total_usd
    or actual_digest <> lines_digest
union all
select
    lines.org_id,
    'open line in closed period ' || lines.period as problem
from {{ ref('fct_commission_lines') }} as lines
inner join last_closed on lines.org_id = last_closed.org_id
where lines.period_status = 'open' and lines.period <= last_closed.period
