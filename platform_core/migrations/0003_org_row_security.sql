-- Per-organization BI logins (issue: tenant isolation). Every mart carries
-- org_id; dbt enables row-level security on each mart after every build
-- (macro enable_org_row_security) with two policies:
--   bi_reader      reads every row (the platform-wide BI role);
--   bi_org_reader  members read only the organizations granted to their
--                  *login* in security.bi_org_grants.
-- The org is decided by session_user, which a session cannot change (SET ROLE
-- changes current_user only; SET SESSION AUTHORIZATION needs a superuser), and
-- never by a setting the session controls.

do $$
begin
    if not exists (select from pg_roles where rolname = 'bi_org_reader') then
        create role bi_org_reader nologin;
    end if;
end
$$;

create schema if not exists security;
revoke all on schema security from public;

create table if not exists security.bi_org_grants (
    role_name text not null,
    org_id text not null,
    granted_at timestamptz not null default now(),
    primary key (role_name, org_id)
);
revoke all on security.bi_org_grants from public;

-- Security definer: org logins may not read the grants table itself (it
-- would list every tenant), only ask which organizations are theirs.
create or replace function security.visible_org_ids() returns text []
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(array_agg(org_id order by org_id), '{}')
    from security.bi_org_grants
    where role_name = session_user
$$;

-- For views (their owner bypasses row security on the tables they read):
-- org logins see their organizations, every other reader sees all rows.
create or replace function security.org_readable(org text) returns boolean
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
    select case
        when (select rolsuper from pg_roles where rolname = session_user) then true
        when pg_has_role(session_user, 'bi_org_reader', 'MEMBER') then org = any(security.visible_org_ids())
        else true
    end
$$;

revoke all on function security.visible_org_ids() from public;
revoke all on function security.org_readable(text) from public;
grant usage on schema security to bi_org_reader, bi_reader;
grant execute on function security.visible_org_ids() to bi_org_reader, bi_reader;
grant execute on function security.org_readable(text) to bi_org_reader, bi_reader;

grant usage on schema marts to bi_org_reader;
alter default privileges in schema marts grant select on tables to bi_org_reader;
grant select on all tables in schema marts to bi_org_reader;
