{#-
  What PostgreSQL is given to plan the models' queries, and what it must not
  learn from the marts: an estimation hint (same_org), sort memory
  (large_work_mem) and planner statistics (analyze_after_rebuild,
  hide_statistics_from_tenants).
-#}

{#-
  `a.org_id = b.org_id` as a second join condition next to a key that already
  determines the organization (deal_id, partner_id). PostgreSQL multiplies the
  selectivities of join conditions as if they were independent, so it expects
  1/10,000th of the real rows on a hyper dataset and picks nested loops that run
  for minutes. Wrapped in coalesce() the condition is checked the same way (both
  sides are never null: org_id is required on every entity) but estimated as a
  plain filter, and the join is planned on its key alone.
-#}
{% macro same_org(left, right) -%}
    coalesce({{ left }} = {{ right }}, false)
{%- endmacro %}

{#-
  Pre-hook of the models that sort or hash whole tables on a full refresh (the
  2.8M touchpoints of a hyper month, 1M deals): the server default (64MB, sized
  for 200 connections) makes those sorts spill to disk. `set local` lasts until
  the model's transaction commits, and dbt runs at most two models at a time,
  so the peak stays a few GB on the 24 GB reference machine.
-#}
{% macro large_work_mem() -%}
    set local work_mem = '512MB'
{%- endmacro %}

{#-
  Post-hook of the tables later models of the same run join against: a table
  dbt has just created has no planner statistics until autovacuum gets to it,
  which is after the run, so the next model would be planned on guesses.
  ANALYZE reads a fixed-size sample (~1 s on 2.8M rows), and only after a full
  rebuild: incremental runs change a small share of the rows.
-#}
{% macro analyze_after_rebuild() -%}
    {%- if not is_incremental() -%}analyze {{ this }}{%- else -%}select 1{%- endif -%}
{%- endmacro %}

{#-
  Post-hook of every mart table: planner statistics that hold no values.
  Statistics are gathered over all organizations, and PostgreSQL uses them to
  estimate a tenant's query whenever the comparison is leakproof (text, dates,
  timestamps, integers), row security or not: with the usual statistics the
  estimate for `org_id = 'org_00002'` gives that organization's size (most
  common values) and a range over deal_id the spread of other organizations'
  ids (histogram). So every column gets statistics target 0 (ANALYZE, manual or
  autovacuum, no longer samples it), and the columns in `counts`, which later
  models of the run join or group on, keep only their number of distinct values
  and share of nulls, restored from one ANALYZE without any list of values.
  Estimates then come out the same for every value a tenant can ask about;
  docs/attribution.md ("Mart indexes and tenants") weighs the options.

  Acts only when the table is new (or still has ordinary statistics: a mart
  built before this hook); with `counts` it then also takes the place of an
  analyze_after_rebuild(). Otherwise it changes nothing and takes no lock.
-#}
{% macro hide_statistics_from_tenants(counts=[]) -%}
    do $stats$
    declare
        mart regclass := '{{ this.include(database=False) }}'::regclass;
        kept record;
        has_stats_functions boolean := current_setting('server_version_num')::int >= 180000;
    begin
        if not exists (
            select from pg_attribute
            where attrelid = mart and attnum > 0 and not attisdropped and attstattarget is distinct from 0
        ) then
            return;
        end if;
        for kept in
            select attname from pg_attribute
            where attrelid = mart and attnum > 0 and not attisdropped
        loop
            execute format(
                'alter table %s alter column %I set statistics %s', mart, kept.attname,
                case when has_stats_functions
                          and kept.attname = any(array[{% for c in counts %}'{{ c }}'{% if not loop.last %}, {% endif %}{% endfor %}]::name[])
                     then -1 else 0 end
            );
            if has_stats_functions then
                perform pg_clear_attribute_stats('{{ this.schema }}', '{{ this.identifier }}', kept.attname, false);
            end if;
        end loop;
        {% if counts -%}
        -- PostgreSQL 16 and 17 cannot restore counts without values: every column stays at 0.
        if not has_stats_functions then
            return;
        end if;
        execute format('analyze %s', mart);
        for kept in
            select attname, null_frac, avg_width, n_distinct from pg_stats
            where schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
        loop
            perform pg_clear_attribute_stats('{{ this.schema }}', '{{ this.identifier }}', kept.attname, false);
            perform pg_restore_attribute_stats(
                'schemaname', '{{ this.schema }}', 'relname', '{{ this.identifier }}',
                'attname', kept.attname::text, 'inherited', false,
                'null_frac', kept.null_frac, 'avg_width', kept.avg_width, 'n_distinct', kept.n_distinct
            );
        end loop;
        -- Also the columns ANALYZE found nothing for (an empty table).
        for kept in
            select attname from pg_attribute
            where attrelid = mart and attnum > 0 and not attisdropped and attstattarget is distinct from 0
        loop
            execute format('alter table %s alter column %I set statistics 0', mart, kept.attname);
        end loop;
        {%- endif %}
    end
    $stats$
{%- endmacro %}
