select
    batch_id,
    file_name,
    entity,
    outcome,
    rows_read,
    rows_loaded,
    rows_quarantined,
    started_at,
    finished_at,
    error_message
from {{ source('crm', 'ingest_batches') }}
