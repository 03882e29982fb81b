{{
    config(
        materialized="table",
        indexes=[{"columns": ["org_id"], "unique": True}],
        post_hook="{{ hide_statistics_from_tenants() }}",
    )
}}

-- One row per organization with its size tier by active partners.
-- Small (one row per organization): rebuilt whole on every run. Indexed on
-- org_id only: an index a tenant's query can use must start with org_id
-- (docs/attribution.md, "Mart indexes and tenants").

with active_partners as (
    select
        org_id,
        count(*) as active_partner_count
    from {{ ref('int_partners__current') }}
    where partner_status = 'active'
    group by org_id
),

sized as (
    select
        organizations.org_id,
        organizations.org_name,
        organizations.plan,
        coalesce(active_partners.active_partner_count, 0) as active_partner_count
    from {{ ref('stg_crm__organizations') }} as organizations
    left join active_partners on organizations.org_id = active_partners.org_id
)

select
    org_id,
    org_name,
    plan,
    active_partner_count,
    case
        when active_partner_count >= 500 then 'enterprise'
        when active_partner_count >= 200 then 'large'
        when active_partner_count >= 50 then 'medium'
        else 'small'
    end as tier,
    active_partner_count >= 200 as requires_pagination,
    now() as computed_at
from sized
