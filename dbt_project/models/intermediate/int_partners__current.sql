{{
    config(
        materialized="table",
        indexes=[{"columns": ["partner_id"], "unique": True}, {"columns": ["org_id"]}],
        pre_hook="{{ lock_ingestion() }}",
        post_hook=["{{ save_watermark(loaded_high_water()) }}", "{{ analyze_after_rebuild() }}"],
    )
}}
-- depends_on: {{ ref('stg_crm__ingest_batches') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Small (one row per partner): rebuilt whole on every run.
-- org_ids: every organization any loaded version of the partner names (raw
-- keeps every version, stg_crm__partner_versions shows them). partner_performance
-- finds a partner's old row by (organization, partner) after the partner moved
-- (macro replace_keys, `org_history`); the row can only be under one of these.
select
    partners.*,
    versions.org_ids
from {{ ref('stg_crm__partners') }} as partners
inner join (
    select
        partner_id,
        array_agg(distinct org_id order by org_id) as org_ids
    from {{ ref('stg_crm__partner_versions') }}
    group by partner_id
) as versions on partners.partner_id = versions.partner_id
