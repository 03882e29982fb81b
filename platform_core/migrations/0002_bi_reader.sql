-- Read-only access for BI tools (SPEC §5): the role bi_reader may read the
-- marts and nothing else. It is created without a password, so it cannot log
-- in until `attribution bi set-password` gives it one (from the environment).

do $$
begin
    if not exists (select from pg_roles where rolname = 'bi_reader') then
        create role bi_reader login;
    end if;
end
$$;

create schema if not exists marts;
grant usage on schema marts to bi_reader;
-- Tables dbt creates later (as the role running this migration) are readable too;
-- dbt also grants select on every mart after each build (dbt_project.yml).
alter default privileges in schema marts grant select on tables to bi_reader;
grant select on all tables in schema marts to bi_reader;

-- Nothing else: no objects in public, no temporary tables (ingestion's own
-- role keeps its right to them).
revoke create on schema public from public;
do $$
begin
    execute format('revoke temporary on database %I from public', current_database());
    execute format('grant temporary on database %I to %I', current_database(), current_user);
end
$$;
