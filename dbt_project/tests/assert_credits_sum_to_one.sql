{{ config(meta={"dagster": {"ref": {"name": "fct_partner_attribution"}}}) }}
-- For every attributed deal and model the partners' credits sum to 1, within
-- what rounding each credit to 10 decimals explains (half of 1e-10 per partner).
-- One row per failing deal and model, with its organization.
select
    org_id,
    deal_id,
    attribution_model,
    sum(credit) as total_credit
from {{ ref('fct_partner_attribution') }}
group by org_id, deal_id, attribution_model
having abs(sum(credit) - 1) > count(*) * 0.00000000005 + 0.000000000000001
