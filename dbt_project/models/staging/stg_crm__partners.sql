-- Current version of each partner: greatest updated_at, ties to the version loaded last.
select distinct on (partner_id)
    partner_id,
    org_id,
    {{ spreadsheet_safe('name') }} as partner_name,
    {{ spreadsheet_safe('partner_type') }} as partner_type,
    status as partner_status,
    created_at,
    updated_at,
    batch_id,
    line_no
from {{ source('crm', 'partners') }}
order by partner_id asc, updated_at desc, batch_id desc, line_no desc
