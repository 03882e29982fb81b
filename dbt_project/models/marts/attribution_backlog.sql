{{ config(materialized="view") }}
-- depends_on: {{ ref('int_incremental__watermarks') }}

-- Won deals whose current version the marts do not reflect yet: a won version
-- loaded after the marts' last run that is newer than the version fct_deals
-- shows (int_deals__mart_state keeps which one that is; should fct_deals have
-- failed after it, every such version counts). A view, so the backlog check
-- always sees now. Reads only versions of batches after the marts' watermark.
--
-- The view's owner bypasses row security, so the view filters by organization
-- itself (security.org_readable; security_barrier is set by the marts'
-- post-hook). The filter sits inside a materialized CTE: PostgreSQL pushes a
-- reader's leakproof conditions (`deal_id = '…'`) into a security-barrier view,
-- down to the scan of the raw versions, ahead of the view's own filter, and
-- EXPLAIN ANALYZE would then count another organization's pending deal found
-- and removed. Nothing is pushed into a materialized CTE, so a reader's
-- conditions only ever see its own organizations' rows.

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
),

readable as materialized (
    select *
    from recent_versions
    where status = 'won' and security.org_readable(org_id)
)

select
    readable.deal_id,
    readable.org_id,
    readable.updated_at,
    batches.finished_at as loaded_at,
    now() - batches.finished_at as pending_for,
    -- A view: its rows are computed by the query that reads them.
    now() as computed_at
from readable
inner join {{ ref('stg_crm__ingest_batches') }} as batches
    on readable.batch_id = batches.batch_id
left join {{ ref('int_deals__mart_state') }} as state
    on readable.deal_id = state.deal_id
where
    state.deal_id is null
    or {{ watermark('int_deals__mart_state') }} <> {{ watermark('fct_deals') }}
    or (readable.updated_at, readable.batch_id, readable.line_no)
    > (state.source_updated_at, state.source_batch_id, state.source_line_no)
