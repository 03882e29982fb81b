-- Every loaded version of every touchpoint (type already lower-cased on load).
select
    touchpoint_id,
    org_id,
    deal_id,
    partner_id,
    touchpoint_type,
    occurred_at,
    batch_id,
    line_no
from {{ source('crm', 'touchpoints') }}
