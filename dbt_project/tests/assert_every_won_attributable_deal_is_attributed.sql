{{ config(meta={"dagster": {"ref": {"name": "fct_partner_attribution"}}}) }}
-- A won deal with a USD amount and eligible touchpoints has rows under every
-- model. One row per failing deal, with its organization.
select
    deals.org_id,
    deals.deal_id,
    count(distinct attribution.attribution_model) as models
from {{ ref('fct_deals') }} as deals
left join {{ ref('fct_partner_attribution') }} as attribution on deals.deal_id = attribution.deal_id
where deals.is_won and deals.amount_usd is not null and deals.eligible_touchpoint_count > 0
group by deals.org_id, deals.deal_id
having count(distinct attribution.attribution_model) <> {{ attribution_model_names() | length }}
