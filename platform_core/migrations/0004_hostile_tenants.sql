-- Hardening against a hostile tenant login (docs/bi.md, "What a tenant login
-- can and cannot do"). Applied once; attribution/bi.py applies the per-login
-- limits (connection limit, timeouts) when it creates or updates a login.

-- 1. Grants follow the role itself, not its name: a login that is dropped and
--    created again under the same name starts with no organization. The name
--    is kept for people (and checked too, so a renamed role reads nothing).
alter table security.bi_org_grants add column if not exists role_oid oid;
update security.bi_org_grants as grants
set role_oid = roles.oid
from pg_roles as roles
where roles.rolname = grants.role_name and grants.role_oid is null;
delete from security.bi_org_grants where role_oid is null;
alter table security.bi_org_grants alter column role_oid set not null;
alter table security.bi_org_grants drop constraint if exists bi_org_grants_pkey;
alter table security.bi_org_grants add primary key (role_oid, org_id);

-- Declared IMMUTABLE on purpose, though it reads a table: the planner then
-- evaluates it once, while planning, and the policy becomes
-- `org_id = any ('{...}'::text[])`, a constant. As a STABLE function it ran
-- once per row that passed a tenant's own (cheaper, leakproof) condition, and
-- its page reads, visible in EXPLAIN (ANALYZE, BUFFERS), counted the rows of
-- other organizations that matched that condition. A plan a session keeps
-- (prepared statement) keeps the list it was planned with: `revoke-org`
-- therefore ends the login's sessions.
create or replace function security.visible_org_ids() returns text []
language sql immutable security definer
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(array_agg(grants.org_id order by grants.org_id), '{}')
    from security.bi_org_grants as grants
    inner join pg_roles as roles
        on roles.oid = grants.role_oid and roles.rolname = grants.role_name
    where roles.rolname = session_user
$$;

-- Run at the start of every dbt build and by `attribution bi grant-org`: rows
-- of roles that no longer exist go, so an OID reused much later finds nothing.
create or replace function security.forget_dropped_logins() returns integer
language sql volatile
set search_path = pg_catalog, pg_temp
as $$
    with gone as (
        delete from security.bi_org_grants as grants
        where not exists (
            select from pg_roles as roles
            where roles.oid = grants.role_oid and roles.rolname = grants.role_name
        )
        returning 1
    )
    select count(*)::integer from gone
$$;
revoke all on function security.forget_dropped_logins() from public;

-- 2. Locks and storage no tenant may take. Advisory locks serialize the
--    platform's own work (ingestion, dbt builds, migrations); anyone allowed to
--    execute pg_advisory_lock could take those keys (they are visible in
--    pg_locks) and stall the pipeline. Large objects would let a read-only
--    login write unbounded data into the database. Revoking EXECUTE on these
--    catalog functions needs a superuser; on a server where the platform is
--    not one, `attribution bi grant-org` warns and docs/bi.md gives the
--    statements for the DBA.
do $$
declare
    fn regprocedure;
begin
    if not (select rolsuper from pg_roles where rolname = current_user) then
        raise notice 'not a superuser: advisory-lock and large-object functions stay executable by PUBLIC';
        return;
    end if;
    for fn in
        select oid::regprocedure from pg_proc
        where pronamespace = 'pg_catalog'::regnamespace
          and (proname like 'pg\_advisory%' or proname like 'pg\_try\_advisory%'
               or proname in ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import', 'lo_put'))
    loop
        execute format('revoke execute on function %s from public', fn);
        execute format('grant execute on function %s to %I', fn, current_user);
    end loop;
end
$$;
