{{
    config(
        materialized="table",
        indexes=[{"columns": ["currency", "rate_date"], "unique": True}],
        pre_hook="{{ lock_ingestion() }}",
        post_hook="{{ save_watermark(loaded_high_water()) }}",
    )
}}
-- depends_on: {{ ref('stg_crm__ingest_batches') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Small (one row per currency and day): rebuilt whole on every run.
select * from {{ ref('stg_crm__fx_rates') }}
