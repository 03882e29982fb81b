-- Current version of each commission plan: greatest updated_at, ties to the version loaded last.
select distinct on (plan_id) *
from {{ ref('stg_crm__commission_plan_versions') }}
order by plan_id asc, updated_at desc, batch_id desc, line_no desc
