-- Commission plans (docs/contract.md §2, §8): every version of every plan, as
-- validated and typed by ingestion, like the other raw tables (0001). The
-- current version of a plan is its greatest updated_at, ties to the version
-- loaded last (batch_id, then line_no); dbt staging picks it.
create table raw.commission_plans (
    batch_id bigint not null,
    line_no bigint not null,
    plan_id text not null,
    org_id text not null,
    -- null: the organization's default plan
    partner_id text,
    -- one of the attribution models, or 'sourced'
    attribution_model text not null,
    -- a fraction from 0 to 1 (0.15 is 15 %)
    rate numeric not null,
    effective_from date not null,
    -- exclusive; null: open-ended
    effective_to date,
    -- days from a deal's close until its commission is payable (30 when the file says none)
    holding_days integer not null,
    updated_at timestamptz not null,
    loaded_at timestamptz not null default now()
);

-- BRIN on the batch id: rows arrive in batch order (see 0001_raw_schema.sql).
create index commission_plans_batch_brin on raw.commission_plans using brin (batch_id);
