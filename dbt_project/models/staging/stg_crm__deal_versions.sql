-- Every loaded version of every deal; incremental models read the versions of
-- recent batches from here (raw.deals has a BRIN index on batch_id).
select
    deal_id,
    org_id,
    {{ spreadsheet_safe('name') }} as deal_name,
    amount,
    currency,
    status,
    created_at,
    closed_at,
    updated_at,
    -- The date whose FX rate converts the amount (docs/contract.md §4.4).
    (case when status in ('won', 'lost') then closed_at else created_at end at time zone 'UTC')::date
        as fx_reference_date,
    batch_id,
    line_no
from {{ source('crm', 'deals') }}
