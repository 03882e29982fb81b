{{
    config(
        materialized="table",
        indexes=[{"columns": ["partner_id"], "unique": True}, {"columns": ["org_id"]}],
        pre_hook="{{ lock_ingestion() }}",
        post_hook=["{{ save_watermark(loaded_high_water()) }}", "{{ analyze_after_rebuild() }}"],
    )
}}
-- depends_on: {{ ref('stg_crm__ingest_batches') }}

-- Small (one row per partner): rebuilt whole on every run.
select * from {{ ref('stg_crm__partners') }}
