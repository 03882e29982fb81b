{#-
  Incremental bookkeeping (docs/attribution.md, "How incremental runs stay right").

  Every raw row carries the id of the batch that loaded it; batch ids follow
  commit order because ingestion loads one batch at a time under an advisory lock.
  An incremental model remembers the highest batch it has absorbed (its
  watermark, a row of intermediate.dbt_watermarks) and next time reads only
  rows of later batches. The watermark is saved in the same transaction as the
  model's rows, so a failed run leaves it where it was and the next run catches
  up. docs/incremental.md walks through it.
-#}

{#- The watermark table, intermediate.dbt_watermarks (model
    int_incremental__watermarks). Every model that reads or saves a watermark
    declares `-- depends_on: {{ ref('int_incremental__watermarks') }}`: dbt then
    builds the table first, and Dagster shows it in the lineage. Rendered as
    `intermediate.dbt_watermarks`, as the statements read before the table was a
    model (what operators and the fault tests look for in pg_stat_activity). -#}
{% macro watermark_table() %}
    {{ return(ref('int_incremental__watermarks').include(database=False).quote(schema=False, identifier=False)) }}
{% endmacro %}

{#- Holds new batches back while this model's transaction runs, so the batch
    high-water mark saved by the post-hook is exactly what the model saw. The key
    is ingestion's (platform_core/locks.py), handed over by `attribution-dbt`. -#}
{% macro lock_ingestion() %}
    select pg_advisory_xact_lock_shared(
        hashtext('{{ env_var("ATTRIBUTION_INGEST_LOCK_KEY") | replace("'", "''") }}'))
{% endmacro %}

{% macro watermark(model_name=none) -%}
    (select coalesce(max(batch_id), 0) from {{ watermark_table() }}
     where model = '{{ model_name or this.identifier }}')
{%- endmacro %}

{#-
  A model's watermark as a number written into its SQL, read when dbt compiles
  the model, which it does just before running it (after its upstream models).
  Compared with a subquery, `batch_id > 146` lets PostgreSQL see that only the
  newest rows qualify and use the batch_id / detected_batch_id indexes, so an
  incremental run reads the new rows rather than scanning history. Only for
  model bodies: hooks and views keep `watermark()`, evaluated when they run.
  The value is an integer from our own table (`| int`), never text.
-#}
{% macro watermark_value(model_name=none) -%}
    {{- batch_value(watermark(model_name)) -}}
{%- endmacro %}

{#- The batch id a scalar subquery (`watermark()`, `consumers_low_water()`, …)
    returns now, as a number; the subquery itself when dbt only parses. Before
    the first run (`dbt compile` on an empty database) there are no watermarks: 0. -#}
{% macro batch_value(subquery) -%}
    {%- if execute -%}
        {%- set exists = run_query("select to_regclass('" ~ watermark_table() ~ "') is not null").columns[0].values()[0] -%}
        {%- if exists -%}
            {%- set result = run_query("select coalesce(" ~ subquery ~ ", 0)").columns[0].values()[0] -%}
            {{- result | int -}}
        {%- else -%}
            0
        {%- endif -%}
    {%- else -%}
        {{- subquery -}}
    {%- endif -%}
{%- endmacro %}

{% macro loaded_high_water() -%}
    (select coalesce(max(batch_id), 0) from {{ ref('stg_crm__ingest_batches') }}
     where outcome = 'loaded')
{%- endmacro %}

{#- `suffix`: a second watermark of the model, of something else than batches
    (fct_commission_lines: `__closings`, the last closing id it has absorbed). -#}
{% macro save_watermark(value_sql, suffix="") %}
    insert into {{ watermark_table() }} (model, batch_id)
    values ('{{ this.identifier ~ suffix }}', {{ value_sql }})
    on conflict (model) do update set batch_id = excluded.batch_id, saved_at = now()
{% endmacro %}

{#- The rows of batches this model has not absorbed yet (all rows on a full build). -#}
{% macro since_watermark(batch_column='batch_id') -%}
    {% if is_incremental() -%}
        {{ batch_column }} > {{ watermark_value() }}
    {%- else -%}
        true
    {%- endif %}
{%- endmacro %}

{#-
  Custom incremental strategy "replace_keys": delete every target row whose key
  appears in the new rows, then insert the new rows except "tombstones" (rows
  whose `tombstone_column` is null). A tombstone says "this key changed and now
  has no rows" — e.g. a won deal that became lost — which delete+insert alone
  cannot express.

  `skip_unchanged=True` (models with one row per key): a target row that reads
  the same as its new row is kept rather than deleted and inserted again.
  Columns whose equal values can read differently (numeric: 1.50 and 1.5; jsonb
  and arrays, which may hold numbers) are compared as text, so the stored value
  reads exactly as a full refresh would write it; the others (text, integers,
  booleans, dates, timestamps) by value, which is cheaper and just as exact.
  `computed_at` (when a mart row was last written, docs/contract.md §5.7) is
  not compared: a kept row keeps the time it was written. Nor is the column
  named by `change_marker`, which then tells which rows this run did change
  (int_attribution__markov_months: the batch of the change).
  A day's change log holds many deals whose facts come out the same (a
  touchpoint that does not count, an FX rate for another date range); each row
  not rewritten saves a heap tuple and one entry in every index.

  `org_history={"model": M, "column": C}` (the marts, whose keys do not contain
  org_id): every index of a mart starts with org_id (an index led by a key would
  let a tenant's `deal_id = '…'` find another organization's row before row
  security filters it out; docs/attribution.md), so the rows to replace are
  found by (organization, key). A key's row may sit under an organization it
  has since left: model M (read through its key, same column names) lists in
  array column C every organization each key has ever had, and the delete
  probes each of them. The insert's "already there" check needs only the new
  row's organization: a row that survived the delete equals the new row.
-#}
{% macro get_incremental_replace_keys_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set source = arg_dict["temp_relation"] -%}
    {%- set keys = arg_dict["unique_key"] -%}
    {%- set keys = [keys] if keys is string else keys -%}
    {%- set tombstone = config.get("tombstone_column") -%}
    {%- set skip_unchanged = config.get("skip_unchanged", false) -%}
    {%- set history = config.get("org_history") -%}
    {%- set names = arg_dict["dest_columns"] | map(attribute="name") | list -%}
    {%- set exact_types = ["text", "character varying", "character", "smallint", "integer", "bigint",
                           "boolean", "date", "timestamp with time zone", "timestamp without time zone"] -%}
    {%- set compared = [] -%}
    {%- set not_compared = ["computed_at", config.get("change_marker")] -%}
    {%- for column in arg_dict["dest_columns"] if column.name not in not_compared -%}
        {%- do compared.append(("{}" if (column.dtype | lower) in exact_types else "{}::text").format(adapter.quote(column.name))) -%}
    {%- endfor -%}
    {%- set columns = get_quoted_csv(names) -%}
    {%- set key_match -%}
        {% for key in keys %}t.{{ key }} = s.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
    {%- endset -%}
    {%- if history -%}
        {%- set history_join -%}
            inner join {{ model_relation(history["model"]) }} as h
                on {% for key in keys %}h.{{ key }} = s.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
        {%- endset -%}
        {%- set delete_match = "t.org_id = any(h." ~ history["column"] ~ ") and " ~ key_match -%}
        {%- set kept_match = "t.org_id = s.org_id and " ~ key_match -%}
    {%- else -%}
        {%- set history_join = "" -%}
        {%- set delete_match = key_match -%}
        {%- set kept_match = key_match -%}
    {%- endif -%}
    {% if skip_unchanged %}
        delete from {{ target }} as t
        using {{ source }} as s {{ history_join }}
        where {{ delete_match }}
            and row({% for expression in compared %}t.{{ expression }}{% if not loop.last %}, {% endif %}{% endfor %})
            is distinct from row({% for expression in compared %}s.{{ expression }}{% if not loop.last %}, {% endif %}{% endfor %});

        insert into {{ target }} ({{ columns }})
        select {{ columns }} from {{ source }} as s
        where not exists (select from {{ target }} as t where {{ kept_match }})
        {% if tombstone %}and s.{{ tombstone }} is not null{% endif %};
    {% else %}
        delete from {{ target }} as t
        using (select distinct {{ keys | join(", ") }} from {{ source }}) as s {{ history_join }}
        where {{ delete_match }};

        insert into {{ target }} ({{ columns }})
        select {{ columns }} from {{ source }}
        {% if tombstone %}where {{ tombstone }} is not null{% endif %};
    {% endif %}
{% endmacro %}

{#- The relation of a model of this project, by name, without ref(): ref() in a
    macro needs the calling model to declare the dependency, and the models
    using `org_history` already run after M (they read M or a model built from
    it). -#}
{% macro model_relation(name) -%}
    {%- set found = graph.nodes.values() | selectattr("resource_type", "equalto", "model")
                    | selectattr("name", "equalto", name) | list -%}
    {%- if found | length != 1 -%}
        {{ exceptions.raise_compiler_error("org_history: no model named " ~ name) }}
    {%- endif -%}
    {{- found[0].relation_name -}}
{%- endmacro %}
