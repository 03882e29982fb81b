{{ config(meta={"dagster": {"ref": {"name": "fct_partner_attribution"}}}) }}
-- SPEC §4.2: for every attributed deal and model the partners' credits sum to 1.
select
    deal_id,
    attribution_model,
    sum(credit) as total_credit
from {{ ref('fct_partner_attribution') }}
group by deal_id, attribution_model
having abs(sum(credit) - 1) > 1e-9
