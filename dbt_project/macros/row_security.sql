{#-
    Row-level security on a mart (tenant isolation for BI). A `table` rebuild,
    `--full-refresh` included, creates a new relation without policies, so this
    runs as a post-hook inside the build's transaction: no reader ever sees a
    mart without them. Idempotent and lock-free when already in place (an
    incremental run must not take an exclusive lock on a table BI is reading).
    Policies and functions come from migration 0003_org_row_security.sql.
-#}
{% macro enable_org_row_security() %}
    {%- if model.config.materialized == 'view' -%}
        alter view {{ this }} set (security_barrier = true)
    {%- else -%}
        do $rls$
        begin
            if not (select relrowsecurity from pg_class where oid = '{{ this.include(database=False) }}'::regclass) then
                alter table {{ this }} enable row level security;
            end if;
            if not exists (
                select from pg_policy
                where polrelid = '{{ this.include(database=False) }}'::regclass and polname = 'bi_reader_all_orgs'
            ) then
                create policy bi_reader_all_orgs on {{ this }}
                    for select to bi_reader using (true);
            end if;
            if not exists (
                select from pg_policy
                where polrelid = '{{ this.include(database=False) }}'::regclass and polname = 'bi_org_reader_own_orgs'
            ) then
                create policy bi_org_reader_own_orgs on {{ this }}
                    for select to bi_org_reader using (org_id = any (security.visible_org_ids()));
            end if;
        end
        $rls$
    {%- endif -%}
{% endmacro %}
