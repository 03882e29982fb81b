-- Touchpoints are events: a repeated touchpoint_id is the same event, and the
-- version loaded last wins (docs/contract.md §2).
select distinct on (touchpoint_id) *
from {{ ref('stg_crm__touchpoint_versions') }}
order by touchpoint_id asc, batch_id desc, line_no desc
