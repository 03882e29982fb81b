{{ config(meta={"dagster": {"ref": {"name": "attribution_channel_weights"}}}) }}
-- The weights in use of each organization and month sum to 1, within what
-- rounding each to 10 decimals explains (half of 1e-10 per channel); every
-- weight and removal effect lies in [0, 1]. One row per failing month.
select
    org_id,
    month,
    sum(weight) as total_weight
from {{ ref('attribution_channel_weights') }}
group by org_id, month
having
    abs(sum(weight) - 1) > count(*) * 0.00000000005 + 0.000000000000001
    or min(least(weight, removal_effect)) < 0
    or max(greatest(weight, removal_effect)) > 1
