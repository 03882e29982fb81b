{{ config(meta={"dagster": {"ref": {"name": "fct_partner_attribution"}}}) }}
-- Per attributed deal and model, the partners' attributed amounts (in cents) add
-- up exactly to the deal's USD amount (in cents). One row per failing deal and
-- model, with its organization, so a failure says whose data it is.
select
    deals.org_id,
    attribution.deal_id,
    attribution.attribution_model,
    sum(attribution.attributed_amount_usd) as attributed,
    max(deals.amount_usd) as deal_amount_usd
from {{ ref('fct_partner_attribution') }} as attribution
inner join {{ ref('fct_deals') }} as deals on attribution.deal_id = deals.deal_id
group by deals.org_id, attribution.deal_id, attribution.attribution_model
having sum(attribution.attributed_amount_usd) <> max(deals.amount_usd)
