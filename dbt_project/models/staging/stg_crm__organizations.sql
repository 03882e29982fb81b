-- Current version of each organization: greatest updated_at, ties to the version loaded last.
select distinct on (org_id)
    org_id,
    {{ spreadsheet_safe('name') }} as org_name,
    {{ spreadsheet_safe('plan') }} as plan,
    created_at,
    updated_at,
    batch_id,
    line_no
from {{ source('crm', 'organizations') }}
order by org_id asc, updated_at desc, batch_id desc, line_no desc
