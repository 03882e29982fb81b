-- Every loaded version of every partner (int_partners__current reads which
-- organizations a partner has ever belonged to from here).
select
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
