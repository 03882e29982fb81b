-- Current version of each deal: greatest updated_at, ties to the version loaded last.
select distinct on (deal_id) *
from {{ ref('stg_crm__deal_versions') }}
order by deal_id asc, updated_at desc, batch_id desc, line_no desc
