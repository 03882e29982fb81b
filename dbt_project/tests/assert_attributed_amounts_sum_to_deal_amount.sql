{{ config(meta={"dagster": {"ref": {"name": "fct_partner_attribution"}}}) }}
-- SPEC §4.2: attributed amounts sum to the deal's USD amount (within 0.01).
select
    attribution.deal_id,
    attribution.attribution_model,
    sum(attribution.attributed_amount_usd) as attributed,
    max(deals.amount_usd) as deal_amount_usd
from {{ ref('fct_partner_attribution') }} as attribution
inner join {{ ref('fct_deals') }} as deals on attribution.deal_id = deals.deal_id
group by attribution.deal_id, attribution.attribution_model
having abs(sum(attribution.attributed_amount_usd) - max(deals.amount_usd)) > 0.01
