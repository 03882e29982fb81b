{{
    config(
        materialized="incremental",
        alias="dbt_watermarks",
        incremental_strategy="append",
        full_refresh=false,
        on_schema_change="fail",
    )
}}

-- The watermarks of the incremental models (docs/incremental.md): one row per
-- model, the batch it has absorbed. The models write their own row in their
-- post-hook (macro save_watermark), inside their transaction; this model only
-- creates the table on the first build and adds no rows. Never rebuilt, not even
-- by --full-refresh (full_refresh=false): a full refresh of the other models
-- saves their watermarks anew, and a partial one must not lose the rest.
-- The table keeps the name it had before it was a model (dbt_watermarks):
-- operators, the marts_consistent check and the fault tests read it by name.
select
    null::text as model,
    null::bigint as batch_id,
    null::timestamptz as saved_at
where false
