-- The commission ledger (docs/commissions.md): what `attribution commissions
-- close` recorded for each organization's closed periods. Its own schema, which
-- dbt never builds, drops or refreshes: a full refresh or a rebuild of every
-- model from raw leaves it as it is. Append-only: a trigger refuses every
-- UPDATE, DELETE and TRUNCATE, whoever the role (superusers included), so a
-- closed period can only change by someone disabling the trigger on purpose.
-- BI roles have no access; the marts fct_commission_lines and partner_statements
-- show these lines under row-level security.
create schema if not exists commissions;
revoke all on schema commissions from public;

-- One row per close of one organization: every month up to `period` that was
-- still open is closed by it.
create table commissions.closings (
    closing_id bigint generated always as identity primary key,
    org_id text not null,
    first_period date not null,
    period date not null,
    closed_at timestamptz not null default now(),
    line_count bigint not null,
    total_usd numeric not null,
    -- commissions.lines_digest of the lines as recorded: the check that closed
    -- periods never change recomputes it from the ledger.
    lines_digest text not null,
    unique (org_id, period),
    check (first_period <= period),
    check (extract(day from period) = 1 and extract(day from first_period) = 1)
);

create table commissions.ledger_lines (
    closing_id bigint not null references commissions.closings (closing_id),
    org_id text not null,
    period date not null,
    deal_id text not null,
    partner_id text not null,
    line_type text not null check (line_type in ('earned', 'adjustment')),
    plan_id text,
    attribution_model text,
    amount_usd numeric not null,
    deal_closed_at timestamptz,
    primary key (org_id, deal_id, partner_id, period, line_type)
);
create index ledger_lines_closing_idx on commissions.ledger_lines (closing_id);

-- The sha256 of a set of lines in a canonical order and text: times as epoch
-- seconds and amounts without trailing zeros, so the digest does not depend on
-- the session's time zone or on how a number was written. closing_id is not part
-- of it: the close computes it before the lines have their closing.
create function commissions.lines_digest(lines commissions.ledger_lines []) returns text
language sql immutable
as $$
    select encode(sha256(convert_to(coalesce(string_agg(
        concat_ws('|', l.period, l.deal_id, l.partner_id, l.line_type, l.plan_id,
                  l.attribution_model, trim_scale(l.amount_usd), extract(epoch from l.deal_closed_at)),
        chr(10) order by l.period, l.deal_id collate "C", l.partner_id collate "C", l.line_type
    ), ''), 'UTF8')), 'hex')
    from unnest(lines) as l
$$;

create function commissions.refuse_change() returns trigger
language plpgsql
as $$
begin
    raise exception 'commissions.% is append-only: a closed period never changes (docs/commissions.md)',
        tg_table_name
        using errcode = 'insufficient_privilege';
end
$$;

create trigger closings_append_only before update or delete on commissions.closings
for each row execute function commissions.refuse_change();
create trigger closings_no_truncate before truncate on commissions.closings
for each statement execute function commissions.refuse_change();
create trigger ledger_lines_append_only before update or delete on commissions.ledger_lines
for each row execute function commissions.refuse_change();
create trigger ledger_lines_no_truncate before truncate on commissions.ledger_lines
for each statement execute function commissions.refuse_change();

revoke all on all tables in schema commissions from public;
