{{ config(materialized="view") }}
-- depends_on: {{ ref('stg_commissions__closings') }}
-- depends_on: {{ ref('stg_commissions__ledger_lines') }}
-- depends_on: {{ ref('int_commissions__due') }}
-- depends_on: {{ ref('fct_deals') }}

-- The line each (deal, partner) needs in an open period (docs/contract.md §8.5;
-- the rule: macro commission_open_lines, which fct_commission_lines applies to
-- the keys a run changes). A view, so `attribution commissions close` reads it
-- inside its transaction, against the ledger as it is at that moment.

{{ commission_open_lines() }}
