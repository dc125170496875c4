{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    schema='intermediate',
    pre_hook="{{ signal_incremental_tidy() }}",
) }}

-- depends_on: {{ ref('signal_thresholds') }}, {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (signal_threshold and signal_incremental_scope read them)

-- The cohort series the flips and extremes look back on, kept small: the snapshots where
-- a cohort holds at least the smaller of flip_min_total_usd and extreme_min_total_usd in a
-- coin and window (a few percent of fct_cohort_snapshots' rows). Appended per new snapshot,
-- so a scheduled build reads the new snapshots from the lake and the lookback from here.
-- In the intermediate schema: analysts read the events, not this. Only states at the live
-- pace (live or deep-backfilled: macros/signal_thresholds.sql, signal_state_filter).

{%- set scope = signal_incremental_scope(snapshots_back=0) %}
{%- set min_total_usd = [
    signal_threshold('flip_min_total_usd'), signal_threshold('extreme_min_total_usd')
] | min %}

with

cohort_snapshots as (

    select
        snapshot_id,
        snapshot_date,
        last_update,
        "window",
        coin,
        segment_id,
        long_usd,
        total_usd,
        bias,
        _load_id

    from {{ ref('fct_cohort_snapshots') }}

    where
        total_usd >= {{ min_total_usd }}
        and {{ signal_state_filter() }}
        and {{ signal_scope_filter(scope, 'scan') }}
        and {{ signal_scope_filter(scope, 'new') }}

)

select * from cohort_snapshots
