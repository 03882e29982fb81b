-- Raw layer: every version of every record, as validated and typed by ingestion.
-- Append-only; the batch ledger says where each row came from (SPEC §3).

create schema if not exists raw;

create table raw.ingest_batches (
    batch_id bigint generated always as identity primary key,
    file_name text not null,
    file_path text not null,
    entity text,
    file_format text,
    content_hash text not null,
    file_size bigint not null,
    rows_read bigint not null default 0,
    rows_loaded bigint not null default 0,
    rows_quarantined bigint not null default 0,
    ignored_columns text [] not null default '{}',
    started_at timestamptz not null,
    finished_at timestamptz,
    outcome text not null check (outcome in ('loaded', 'refused')),
    error_message text,
    constraint rows_conserved check (rows_read = rows_loaded + rows_quarantined)
);

-- A file (name + content) is loaded once; a changed file is a new batch.
create unique index ingest_batches_file_content_key
on raw.ingest_batches (file_name, content_hash);

create table raw.quarantine (
    batch_id bigint not null,
    entity text not null,
    source_file text not null,
    line_no bigint not null,
    record jsonb,
    raw_text text,
    reason text not null,
    quarantined_at timestamptz not null default now()
);

create index quarantine_batch_idx on raw.quarantine (batch_id);

create table raw.organizations (
    batch_id bigint not null,
    line_no bigint not null,
    org_id text not null,
    name text not null,
    plan text,
    created_at timestamptz,
    updated_at timestamptz not null,
    loaded_at timestamptz not null default now()
);

create table raw.partners (
    batch_id bigint not null,
    line_no bigint not null,
    partner_id text not null,
    org_id text not null,
    name text not null,
    partner_type text,
    status text not null,
    created_at timestamptz,
    updated_at timestamptz not null,
    loaded_at timestamptz not null default now()
);

create table raw.deals (
    batch_id bigint not null,
    line_no bigint not null,
    deal_id text not null,
    org_id text not null,
    name text,
    amount numeric not null,
    currency text not null,
    status text not null,
    created_at timestamptz not null,
    closed_at timestamptz,
    updated_at timestamptz not null,
    loaded_at timestamptz not null default now()
);

create table raw.touchpoints (
    batch_id bigint not null,
    line_no bigint not null,
    touchpoint_id text not null,
    org_id text not null,
    deal_id text not null,
    partner_id text not null,
    touchpoint_type text not null,
    occurred_at timestamptz not null,
    loaded_at timestamptz not null default now()
);

create table raw.fx_rates (
    batch_id bigint not null,
    line_no bigint not null,
    currency text not null,
    rate_date date not null,
    usd_per_unit numeric not null,
    loaded_at timestamptz not null default now()
);

-- BRIN on the batch id: rows arrive in batch order, so "rows since batch N"
-- (incremental models) is cheap without slowing bulk loads.
create index organizations_batch_brin on raw.organizations using brin (batch_id);
create index partners_batch_brin on raw.partners using brin (batch_id);
create index deals_batch_brin on raw.deals using brin (batch_id);
create index touchpoints_batch_brin on raw.touchpoints using brin (batch_id);
create index fx_rates_batch_brin on raw.fx_rates using brin (batch_id);
