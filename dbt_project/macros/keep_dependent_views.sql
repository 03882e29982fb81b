{#-
    Post-hook of every model, inside its transaction. When dbt replaces a
    relation (a view on every run, a table on a full refresh) it renames the old
    one to `<name>__dbt_backup`, renames the new one into place, commits, then
    runs `drop ... cascade` on the backup. Views that read the old relation
    (attribution_backlog reads staging views and fct_deals) follow it to the
    backup and would die with it: BI would see "relation does not exist" until
    dbt recreated them later in the run, or for good if the run failed first.
    Here, before the commit, each such view is redefined on the new relation,
    with its options (security_barrier) and grants kept, so the cascade has
    nothing left to drop. A view whose definition no longer fits the new
    relation (a column removed by a deploy) is left to dbt, which rebuilds it.
-#}
{% macro keep_dependent_views() %}
    {%- if not execute or this is none or model is none or model.resource_type != 'model' -%}
    select 1
    {%- else -%}
    {%- set backup = make_backup_relation(this, this.type or 'table') -%}
    do $keep$
    declare
        backup_oid oid := to_regclass('{{ backup.include(database=False) }}');
        dependent record;
    begin
        if backup_oid is null then
            return;
        end if;
        for dependent in
            select distinct
                views.oid::regclass as view_name,
                views.reloptions,
                regexp_replace(
                    pg_get_viewdef(views.oid),
                    '\m{{ backup.identifier }}\M', '{{ this.identifier }}', 'g'
                ) as definition
            from pg_depend as dep
            inner join pg_rewrite as rules on dep.classid = 'pg_rewrite'::regclass and rules.oid = dep.objid
            inner join pg_class as views on views.oid = rules.ev_class
            where dep.refobjid = backup_oid and views.oid <> backup_oid
        loop
            begin
                execute format(
                    'create or replace view %s %s as %s',
                    dependent.view_name,
                    case when dependent.reloptions is null then ''
                         else format('with (%s)', array_to_string(dependent.reloptions, ', ')) end,
                    dependent.definition
                );
            exception when others then
                raise notice 'view % still reads %: %; dbt rebuilds it later in this run',
                    dependent.view_name, backup_oid::regclass, sqlerrm;
            end;
        end loop;
    end
    $keep$
    {%- endif %}
{% endmacro %}

{#-
    Pre-hook of every model, inside its transaction: when this build will swap
    the relation (a table, or an incremental model's full refresh), lock the
    views that read it first. Otherwise a reader holding such a view while
    waiting for the relation dbt has renamed, and dbt waiting for the view in
    keep_dependent_views(), deadlock, and PostgreSQL cancels one of them. With
    the views locked first, their readers wait for the swap instead (a full
    refresh is rare; incremental runs and views swap nothing).
-#}
{% macro lock_dependent_views() %}
    {%- set materialized = config.get('materialized') if execute and model is not none else none -%}
    {%- if materialized == 'table' or (materialized == 'incremental' and not is_incremental()) -%}
    do $lock$
    declare
        dependent record;
    begin
        for dependent in
            select distinct
                views.oid::regclass as view_name,
                coalesce((
                    select option_value from pg_options_to_table(views.reloptions)
                    where option_name = 'security_barrier'
                ), 'false') as barrier
            from pg_depend as dep
            inner join pg_rewrite as rules on dep.classid = 'pg_rewrite'::regclass and rules.oid = dep.objid
            inner join pg_class as views on views.oid = rules.ev_class
            where dep.refobjid = to_regclass('{{ this.include(database=False) }}')
              and views.oid <> dep.refobjid
            order by 1
        loop
            -- LOCK TABLE on a view would also lock every table under it (raw.deals:
            -- ingestion would wait); setting an option to its own value locks the view alone.
            execute format('alter view %s set (security_barrier = %s)', dependent.view_name, dependent.barrier);
        end loop;
    end
    $lock$
    {%- else -%}
    select 1
    {%- endif -%}
{% endmacro %}
