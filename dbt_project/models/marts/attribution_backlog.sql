{{ config(materialized="view") }}

-- Won deals whose current version the marts do not reflect yet (SPEC §4.6):
-- a won version loaded after the marts' last run that is newer than the
-- version fct_deals shows. A view, so the backlog check always sees now.
-- Reads only versions of batches after the marts' watermark. The view's owner
-- bypasses the marts' row security, so the view filters by organization itself
-- (security.org_readable; security_barrier is set by the marts' post-hook).

with recent_versions as (
    select distinct on (versions.deal_id)
        versions.deal_id,
        versions.org_id,
        versions.status,
        versions.updated_at,
        versions.batch_id,
        versions.line_no
    from {{ ref('stg_crm__deal_versions') }} as versions
    where versions.batch_id > {{ watermark('fct_deals') }}
    order by versions.deal_id asc, versions.updated_at desc, versions.batch_id desc, versions.line_no desc
)

select
    recent_versions.deal_id,
    recent_versions.org_id,
    recent_versions.updated_at,
    batches.finished_at as loaded_at,
    now() - batches.finished_at as pending_for
from recent_versions
inner join {{ ref('stg_crm__ingest_batches') }} as batches
    on recent_versions.batch_id = batches.batch_id
left join {{ ref('fct_deals') }} as deals
    on recent_versions.deal_id = deals.deal_id
where
    recent_versions.status = 'won'
    and security.org_readable(recent_versions.org_id)
    and (
        deals.deal_id is null
        or (recent_versions.updated_at, recent_versions.batch_id, recent_versions.line_no)
        > (deals._source_updated_at, deals._source_batch_id, deals._source_line_no)
    )
