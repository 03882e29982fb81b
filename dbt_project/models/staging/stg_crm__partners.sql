-- Current version of each partner: greatest updated_at, ties to the version loaded last.
select distinct on (partner_id) *
from {{ ref('stg_crm__partner_versions') }}
order by partner_id asc, updated_at desc, batch_id desc, line_no desc
