{#-
  Readable, stable index names (docs/bi.md, "Queries the marts are indexed for").

  dbt-postgres names an index by an md5 hash of its columns, relation and the
  current time, so plans and the catalog show names like
  `b0426cbfdd2ab430d38975495fea5a08`. Here an index is named
  `<table>__<col1>_<col2>_idx` (fct_deals__org_id_closed_at_deal_id_idx), or by
  the `name` given in the model's `indexes` config where that would pass
  PostgreSQL's 63 characters; a longer name without one stops the build.

  The name is the same on every build, and index names are unique per schema:
  when dbt rebuilds a table (a table model on every run, an incremental one on
  a full refresh) it creates the new table and its indexes under a temporary
  name while the old table, with the same index names, is still in place; it
  swaps them and drops the old table only after the commit. So the old table's
  index is first renamed out of the way, inside the same transaction (a reader
  keeps using it until the commit; it is dropped with the old table). An
  incremental run creates no index (dbt creates them only with the table).
-#}
{% macro postgres__get_create_index_sql(relation, index_dict) -%}
    {%- set given = {} -%}
    {%- for key, value in index_dict.items() if key != "name" -%}
        {%- do given.update({key: value}) -%}
    {%- endfor -%}
    {%- set index_config = adapter.parse_index(given) -%}
    {%- set name = index_dict.get("name") or readable_index_name(relation, index_config.columns) -%}
    {%- if name | length > 63 -%}
        {{ exceptions.raise_compiler_error(
            "index name " ~ name ~ " is longer than 63 characters: give the index a `name` in "
            ~ relation.identifier ~ "'s indexes config") }}
    {%- endif -%}
    alter index if exists {{ adapter.quote(relation.schema) }}.{{ adapter.quote(name) }}
        rename to {{ adapter.quote("dbt_backup_" ~ local_md5(relation.schema ~ "." ~ name)) }};
    create {% if index_config.unique -%} unique {% endif -%} index {{ adapter.quote(name) }}
    on {{ relation }} {% if index_config.type -%} using {{ index_config.type }} {% endif -%}
    ({{ index_config.columns | join(", ") }})
{%- endmacro %}

{#- `<table>__<columns>_idx` for the table the relation becomes (dbt builds
    `<table>__dbt_tmp` first), in lower-case letters, digits and underscores. -#}
{% macro readable_index_name(relation, columns) -%}
    {%- set table = relation.identifier.split("__dbt_tmp")[0] -%}
    {%- set words = modules.re.sub("[^a-z0-9_]+", "_", (columns | join("_")) | lower).strip("_") -%}
    {{- table ~ "__" ~ words ~ "_idx" -}}
{%- endmacro %}
