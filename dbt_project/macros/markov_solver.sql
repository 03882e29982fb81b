{#-
  The absorbing-chain solve of the data-driven model (docs/attribution.md,
  "Data-driven"), as a PL/pgSQL function the model int_attribution__markov_months
  (re)creates in its pre-hook, so the maths ships with the models that use it.

  Input, for one training set with k channels numbered 1..k:
    starts[c]      paths whose first channel is c
    converted[c]   paths that end at c and converted (won)
    lost[c]        paths that end at c and did not (lost: the null state)
    edge_from[e], edge_to[e], edge_count[e]   channel → channel transitions
  Output: conversion_probability P (from the start state) and removal_effects[c].

  With A = I − Q (Q: channel → channel probabilities) and N = A⁻¹, the chain's
  fundamental matrix: x = N·r is the probability of converting from each channel
  (r: channel → conversion), P = s·x (s: start → channel), and the probability of
  ever reaching c from the start is h(c) = (s·N)[c] / N[c][c]. Sending every
  transition into c to null removes exactly the paths that reach c, so
  P₋c = P − h(c)·x[c] and RE(c) = 1 − P₋c / P = h(c)·x[c] / P: one inversion per
  training set, not one solve per channel.

  Gauss-Jordan without pivoting is safe here: every channel of a training set
  reaches an absorbing state (each is followed by another channel or by the end
  of a path), so A is a nonsingular M-matrix and its pivots are positive.
  Double precision: 15 significant digits against the 10 decimals the weights
  are shown with. O(k³); the model caps k (var data_driven_max_channels).
-#}
{% macro create_markov_solver() %}
create or replace function {{ this.schema }}.markov_removal_effects(
    starts double precision[],
    converted double precision[],
    lost double precision[],
    edge_from integer[],
    edge_to integer[],
    edge_count double precision[],
    out conversion_probability double precision,
    out removal_effects double precision[]
)
language plpgsql immutable strict parallel safe
as $solver$
declare
    k integer := coalesce(cardinality(starts), 0);
    a double precision[];
    inv double precision[];
    out_total double precision[];
    x double precision[];
    s double precision[];
    total_starts double precision := 0;
    factor double precision;
    pivot double precision;
    visits double precision;
    i integer;
    j integer;
    p integer;
begin
    removal_effects := array_fill(0::double precision, array[k]);
    conversion_probability := 0;
    if k = 0 then
        return;
    end if;
    out_total := array_fill(0::double precision, array[k]);
    for i in 1..k loop
        out_total[i] := converted[i] + lost[i];
        total_starts := total_starts + starts[i];
    end loop;
    for j in 1..coalesce(cardinality(edge_from), 0) loop
        out_total[edge_from[j]] := out_total[edge_from[j]] + edge_count[j];
    end loop;
    a := array_fill(0::double precision, array[k, k]);
    inv := array_fill(0::double precision, array[k, k]);
    for i in 1..k loop
        a[i][i] := 1;
        inv[i][i] := 1;
    end loop;
    for j in 1..coalesce(cardinality(edge_from), 0) loop
        a[edge_from[j]][edge_to[j]] := a[edge_from[j]][edge_to[j]] - edge_count[j] / out_total[edge_from[j]];
    end loop;
    -- Gauss-Jordan: inv := A⁻¹.
    for p in 1..k loop
        pivot := a[p][p];
        for j in 1..k loop
            a[p][j] := a[p][j] / pivot;
            inv[p][j] := inv[p][j] / pivot;
        end loop;
        for i in 1..k loop
            factor := a[i][p];
            if i <> p and factor <> 0 then
                for j in 1..k loop
                    a[i][j] := a[i][j] - factor * a[p][j];
                    inv[i][j] := inv[i][j] - factor * inv[p][j];
                end loop;
            end if;
        end loop;
    end loop;
    x := array_fill(0::double precision, array[k]);
    s := array_fill(0::double precision, array[k]);
    for i in 1..k loop
        s[i] := starts[i] / total_starts;
        for j in 1..k loop
            x[i] := x[i] + inv[i][j] * converted[j] / out_total[j];
        end loop;
    end loop;
    for i in 1..k loop
        conversion_probability := conversion_probability + s[i] * x[i];
    end loop;
    if conversion_probability <= 0 then
        conversion_probability := 0;
        return;
    end if;
    for j in 1..k loop
        visits := 0;
        for i in 1..k loop
            visits := visits + s[i] * inv[i][j];
        end loop;
        removal_effects[j] := greatest(0, least(1, visits / inv[j][j] * x[j] / conversion_probability));
    end loop;
end
$solver$
{% endmacro %}
