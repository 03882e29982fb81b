{{
    config(
        materialized="incremental",
        unique_key="touchpoint_id",
        incremental_strategy="delete+insert",
        on_schema_change="fail",
        indexes=[
            {"columns": ["touchpoint_id"], "unique": True},
            {"columns": ["deal_id"]},
            {"columns": ["partner_id"]},
            {"columns": ["batch_id"]},
            {"columns": ["org_id", "occurred_date"]},
        ],
        pre_hook=["{{ lock_ingestion() }}", "{{ large_work_mem() }}"],
        post_hook=["{{ save_watermark(loaded_high_water()) }}", "{{ analyze_after_rebuild() }}"],
    )
}}
-- depends_on: {{ ref('stg_crm__ingest_batches') }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Current version of every touchpoint (the one loaded last). When a new version
-- moves a touchpoint to another deal, organization or day, the old values are
-- kept in previous_* so the marts also recompute what it used to count for.
with new_versions as (
    select distinct on (touchpoint_id) *
    from {{ ref('stg_crm__touchpoint_versions') }}
    where {{ since_watermark() }}
    order by touchpoint_id asc, batch_id desc, line_no desc
)

select
    new_versions.touchpoint_id,
    new_versions.org_id,
    new_versions.deal_id,
    new_versions.partner_id,
    new_versions.touchpoint_type,
    new_versions.occurred_at,
    (new_versions.occurred_at at time zone 'UTC')::date as occurred_date,
    new_versions.batch_id,
    new_versions.line_no,
    {% if is_incremental() %}
        array(
            select distinct v from unnest(existing.previous_deal_ids || existing.deal_id) as v
            where v is not null
        ) as previous_deal_ids,
        array(
            select distinct v from unnest(existing.previous_org_ids || existing.org_id) as v
            where v is not null
        ) as previous_org_ids,
        array(
            select distinct v from unnest(existing.previous_dates || existing.occurred_date) as v
            where v is not null
        ) as previous_dates
    from new_versions
    left join {{ this }} as existing on new_versions.touchpoint_id = existing.touchpoint_id
    {% else %}
        '{}'::text[] as previous_deal_ids,
        '{}'::text[] as previous_org_ids,
        '{}'::date[] as previous_dates
    from new_versions
    {% endif %}
