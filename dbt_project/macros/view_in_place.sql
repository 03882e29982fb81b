{#-
    Views are replaced in place (`create or replace view`), never swapped.
    dbt's own view materialization creates `<name>__dbt_tmp`, renames the live
    view away and drops it with `cascade`, which also drops every view that
    reads it: attribution_backlog (a mart BI reads) reads staging views, so it
    disappeared on every build, and for good when the build failed after
    staging. `create or replace` keeps the view's identity, its dependants and
    its grants, and readers see the old or the new definition, never none.
    When a deploy changes a view's columns in a way PostgreSQL cannot replace
    (a column removed, renamed or retyped), the view is dropped and created
    again in the same transaction; dbt rebuilds its dependants later in the run.
-#}
{%- materialization view, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set name = target_relation.include(database=False) -%}
    {%- set grant_config = config.get('grants') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if config.get('contract').enforced -%}
        {{ get_assert_columns_equivalent(sql) }}
    {%- endif -%}

    {% call statement('main') -%}
        do $replace_view$
        declare
            kind "char" := (select relkind from pg_class where oid = to_regclass('{{ name }}'));
        begin
            if kind is not null and kind <> 'v' then
                execute 'drop table {{ name }} cascade';
            end if;
            execute $view_sql$ create or replace view {{ name }} as (
                {{ sql }}
            ) $view_sql$;
        exception when invalid_table_definition then
            execute 'drop view {{ name }} cascade';
            execute $view_sql$ create view {{ name }} as (
                {{ sql }}
            ) $view_sql$;
        end
        $replace_view$
    {%- endcall %}

    {% do apply_grants(target_relation, grant_config, should_revoke=True) %}
    {% do persist_docs(target_relation, model) %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{%- endmaterialization -%}
