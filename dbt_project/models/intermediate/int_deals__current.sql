{{
    config(
        materialized="incremental",
        unique_key="deal_id",
        incremental_strategy="delete+insert",
        on_schema_change="fail",
        indexes=[
            {"columns": ["deal_id"], "unique": True},
            {"columns": ["batch_id"]},
            {"columns": ["currency", "fx_reference_date"]},
        ],
        pre_hook=["{{ lock_ingestion() }}", "{{ large_work_mem() }}"],
        post_hook=["{{ save_watermark(loaded_high_water()) }}", "{{ analyze_after_rebuild() }}"],
    )
}}
-- depends_on: {{ ref('stg_crm__ingest_batches') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Current version of every deal, kept up to date from the versions of new
-- batches only. A newly loaded version wins only if it is newer by the docs/contract.md §2
-- rule (greatest updated_at, then loaded last), so it is compared with the row
-- already here.
with new_versions as (
    select *
    from {{ ref('stg_crm__deal_versions') }}
    where {{ since_watermark() }}
),

candidates as (
    select * from new_versions
    {% if is_incremental() %}
        union all
        select existing.*
        from {{ this }} as existing
        where existing.deal_id in (select new_versions.deal_id from new_versions)
    {% endif %}
)

select distinct on (deal_id) *
from candidates
order by deal_id asc, updated_at desc, batch_id desc, line_no desc
