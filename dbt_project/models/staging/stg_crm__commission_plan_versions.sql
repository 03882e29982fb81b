-- Every loaded version of every commission plan (docs/contract.md §2, §8.1).
select
    plan_id,
    org_id,
    partner_id,
    attribution_model,
    rate,
    effective_from,
    effective_to,
    holding_days,
    updated_at,
    batch_id,
    line_no
from {{ source('crm', 'commission_plans') }}
