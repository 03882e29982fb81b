-- One rate per currency and date; a re-published rate replaces the earlier one.
select distinct on (currency, rate_date)
    currency,
    rate_date,
    usd_per_unit,
    batch_id,
    line_no
from {{ source('crm', 'fx_rates') }}
order by currency asc, rate_date asc, batch_id desc, line_no desc
