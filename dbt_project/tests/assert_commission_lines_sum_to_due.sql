{{ config(meta={"dagster": {"ref": {"name": "fct_commission_lines"}}}) }}
-- docs/contract.md §8.5, §8.8: every (deal, partner)'s commission lines add up to
-- what is due on it now (0 when nothing is). One row per (deal, partner) that does not.
with lines as (
    select
        org_id,
        deal_id,
        partner_id,
        sum(amount_usd) as lines_usd
    from {{ ref('fct_commission_lines') }}
    group by org_id, deal_id, partner_id
)

select
    coalesce(lines.org_id, due.org_id) as org_id,
    coalesce(lines.deal_id, due.deal_id) as deal_id,
    coalesce(lines.partner_id, due.partner_id) as partner_id,
    lines.lines_usd,
    due.due_usd
from lines
full outer join {{ ref('int_commissions__due') }} as due
    on lines.org_id = due.org_id and lines.deal_id = due.deal_id and lines.partner_id = due.partner_id
where coalesce(lines.lines_usd, 0) <> coalesce(due.due_usd, 0)
