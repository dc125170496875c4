{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ signal_incremental_tidy() }}",
    meta={'publish': 'table'},
) }}

-- depends_on: {{ ref('signal_thresholds') }}, {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (signal_threshold and signal_incremental_scope read them)

-- A cohort's bias in a coin and window beyond its own recent range: above the
-- extreme_upper_quantile (or below the extreme_lower_quantile) of its bias over the
-- snapshots of the previous lookback_days, the current one excluded. Only snapshots where
-- the cohort holds at least extreme_min_total_usd count, as history and as events; an
-- event needs extreme_min_history such snapshots before it. It fires when the cohort
-- is beyond and was not beyond on the same side in the extreme_cooldown_hours before:
-- once, not at every snapshot it stays there or comes back to its bound.

{%- set scope = signal_incremental_scope() %}
{%- set lower_quantile = signal_threshold('extreme_lower_quantile') %}
{%- set upper_quantile = signal_threshold('extreme_upper_quantile') %}
{%- set min_history = signal_threshold('extreme_min_history') | int %}
{%- set min_total_usd = signal_threshold('extreme_min_total_usd') %}
{%- set lookback_days = signal_threshold('lookback_days') | int %}
{%- set cooldown_hours = signal_threshold('extreme_cooldown_hours') | int %}

with

cohort_snapshots as (

    select
        snapshot_id,
        "window",
        coin,
        segment_id,
        last_update,
        snapshot_date,
        total_usd,
        bias,
        _load_id

    from {{ ref('int_signal_cohort_series') }}

    where
        total_usd >= {{ min_total_usd }}
        and bias is not null
        and {{ signal_scope_filter(scope, 'scan') }}

),

-- The history of each snapshot: the same cohort, coin and window over the lookback before
-- it (a RANGE frame on the snapshot's time, ending just before it).
ranged as (

    select
        *,
        count(bias) over history as history_snapshots,
        quantile_cont(bias, {{ lower_quantile }}) over history as lower_bound,
        quantile_cont(bias, {{ upper_quantile }}) over history as upper_bound

    from cohort_snapshots

    window history as (
        partition by "window", coin, segment_id
        order by last_update
        range between interval {{ lookback_days }} day preceding
        and interval 1 microsecond preceding
    )

),

classified as (

    select
        *,
        case
            when history_snapshots < {{ min_history }} then null
            when bias > upper_bound then 'long'
            when bias < lower_bound then 'short'
        end as extreme

    from ranged

),

-- A new extreme: beyond the bound, and no snapshot of the cohort was beyond on the same
-- side within the cooldown before (a bias hovering at its bound fires once).
entered as (

    select
        *,
        lag(last_update) over same_side as previous_same_side_at

    from classified

    where extreme is not null

    window same_side as (
        partition by "window", coin, segment_id, extreme
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
        extreme as direction,
        bias,
        lower_bound,
        upper_bound,
        history_snapshots,
        total_usd,
        cast({{ lower_quantile }} as double) as lower_quantile,
        cast({{ upper_quantile }} as double) as upper_quantile,
        cast({{ lookback_days }} as integer) as lookback_days,
        previous_same_side_at,
        _load_id

    from entered

    where
        (
            previous_same_side_at is null
            or previous_same_side_at < last_update - interval {{ cooldown_hours }} hour
        )
        and {{ signal_scope_filter(scope, 'new') }}

)

select * from final
