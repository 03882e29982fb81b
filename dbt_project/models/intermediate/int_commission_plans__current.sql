{{
    config(
        materialized="table",
        indexes=[{"columns": ["org_id", "partner_id"]}],
        post_hook=["{{ analyze_after_rebuild() }}"],
    )
}}

-- The current version of each commission plan (small: rebuilt whole on every run),
-- indexed for the plan lookup of int_commissions__due.
select
    plan_id,
    org_id,
    partner_id,
    attribution_model,
    rate,
    effective_from,
    effective_to,
    holding_days
from {{ ref('stg_crm__commission_plans') }}
