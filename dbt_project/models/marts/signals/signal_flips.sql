{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ signal_incremental_tidy() }}",
    meta={'publish': 'table'},
) }}

-- depends_on: {{ ref('signal_thresholds') }}, {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (signal_threshold and signal_incremental_scope read them)

-- A cohort's side in a coin and window changes: short -> long or long -> short, with
-- hysteresis. A snapshot is decisive when the cohort holds at least flip_min_total_usd and
-- its bias is above 0.5 + h (long) or below 0.5 - h (short); in between, or smaller, it
-- keeps the side it had. A flip is a decisive snapshot whose side differs from the
-- cohort's previous decisive one, if that was within lookback_days. Only earlier
-- snapshots are read: no look-ahead.

{%- set scope = signal_incremental_scope() %}
{%- set hysteresis = signal_threshold('flip_hysteresis') %}
{%- set min_total_usd = signal_threshold('flip_min_total_usd') %}
{%- set lookback_days = signal_threshold('lookback_days') | int %}

with

cohort_snapshots as (

    select
        snapshot_id,
        "window",
        coin,
        segment_id,
        last_update,
        snapshot_date,
        long_usd,
        total_usd,
        bias,
        _load_id

    from {{ ref('int_signal_cohort_series') }}

    where {{ signal_scope_filter(scope, 'scan') }}

),

decisive as (

    select
        *,
        case
            when bias > 0.5 + {{ hysteresis }} then 'long'
            when bias < 0.5 - {{ hysteresis }} then 'short'
        end as side

    from cohort_snapshots

    where total_usd >= {{ min_total_usd }}

),

paired as (

    select
        *,
        lag(side) over cohort_series as previous_side,
        lag(bias) over cohort_series as previous_bias,
        lag(snapshot_id) over cohort_series as previous_snapshot_id,
        lag(last_update) over cohort_series as previous_at

    from decisive

    where side is not null

    window cohort_series as (
        partition by "window", coin, segment_id
        order by last_update, snapshot_id
    )

),

final as (

    select
        snapshot_id,
        last_update as snapshot_at,
        snapshot_date,
        "window",
        coin,
        segment_id,
        side as direction,
        bias,
        previous_side,
        previous_bias,
        previous_snapshot_id,
        previous_at,
        long_usd,
        total_usd,
        cast({{ hysteresis }} as double) as hysteresis,
        cast({{ min_total_usd }} as double) as min_total_usd,
        _load_id

    from paired

    where
        side != previous_side
        and previous_at >= last_update - interval {{ lookback_days }} day
        and {{ signal_scope_filter(scope, 'new') }}

)

select * from final
