{{ config(materialized='daily_parquet', meta={'publish': 'view'}, rebuild_offsets=[0, 1]) }}

{#- The semantics (gaps, new and closed keys) are written out in the docs block
    cohort_day_over_day in _marts__docs.md and pinned by unit tests. -#}
{%- set measures = [
    'long_usd', 'short_usd', 'total_usd',
    'long_positions', 'short_positions', 'total_positions',
] %}

-- depends_on: {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (daily_rebuild_days reads them)

{#- Rebuilt: the days that received a snapshot since the last build, and the day after each
    (it compares itself with them). Read: those days and the day before each. None: all. -#}
{%- set rebuild_days = daily_rebuild_days() %}
{%- set read_days = daily_rebuild_days(offsets=[-1, 0, 1]) %}

with

day_pairs as (

    select * from {{ ref('int_daily_closes_paired') }}

    {% if rebuild_days is not none %}
        where snapshot_date in {{ rebuild_days }}
    {% endif %}

),

cohort_days as (

    select * from {{ ref('cohort_bias_daily') }}

    {% if read_days is not none %}
        where snapshot_date in {{ read_days }}
    {% endif %}

),

-- "Present" at a close means the coin was in that snapshot: all 16 cohorts exist, with zeros.
cohort_closes as (

    select * from cohort_days

    where is_present_at_close

),

current_closes as (

    select
        day_pairs.snapshot_date,
        day_pairs."window",
        cohort_closes.coin,
        cohort_closes.segment_id,
        cohort_closes.ladder,
        cohort_closes.is_reported_at_close,
        {% for measure in measures %}
            cohort_closes.{{ measure }},
        {% endfor %}
        cohort_closes.bias

    from day_pairs

    inner join cohort_closes
        on
            day_pairs.snapshot_date = cohort_closes.snapshot_date
            and day_pairs."window" = cohort_closes."window"

),

previous_closes as (

    select
        day_pairs.snapshot_date,
        day_pairs."window",
        cohort_closes.coin,
        cohort_closes.segment_id,
        cohort_closes.ladder,
        cohort_closes.is_reported_at_close,
        {% for measure in measures %}
            cohort_closes.{{ measure }},
        {% endfor %}
        cohort_closes.bias

    from day_pairs

    inner join cohort_closes
        on
            day_pairs.previous_date = cohort_closes.snapshot_date
            and day_pairs."window" = cohort_closes."window"

),

cohort_keys as (

    select
        snapshot_date,
        "window",
        coin,
        segment_id,
        ladder

    from current_closes

    union

    select
        snapshot_date,
        "window",
        coin,
        segment_id,
        ladder

    from previous_closes

),

compared as (

    select
        cohort_keys.snapshot_date,
        cohort_keys."window",
        cohort_keys.coin,
        cohort_keys.segment_id,
        cohort_keys.ladder,
        day_pairs.previous_date,
        day_pairs.close_snapshot_id,
        day_pairs.previous_close_snapshot_id,
        day_pairs.close_source,
        day_pairs.previous_close_source,
        day_pairs.has_previous_day,
        day_pairs.has_previous_day and previous_closes.coin is null as is_new,
        current_closes.coin is null as is_closed,
        coalesce(current_closes.is_reported_at_close, false) as is_reported,
        case
            when day_pairs.has_previous_day
                then coalesce(previous_closes.is_reported_at_close, false)
        end as was_reported,
        {% for measure in measures %}
            coalesce(current_closes.{{ measure }}, 0) as {{ measure }},
            case
                when day_pairs.has_previous_day
                    then coalesce(previous_closes.{{ measure }}, 0)
            end as previous_{{ measure }},
        {% endfor %}
        current_closes.bias,
        previous_closes.bias as previous_bias,
        day_pairs._max_load_id

    from cohort_keys

    inner join day_pairs
        on
            cohort_keys.snapshot_date = day_pairs.snapshot_date
            and cohort_keys."window" = day_pairs."window"

    left join current_closes
        on
            cohort_keys.snapshot_date = current_closes.snapshot_date
            and cohort_keys."window" = current_closes."window"
            and cohort_keys.coin = current_closes.coin
            and cohort_keys.segment_id = current_closes.segment_id

    left join previous_closes
        on
            cohort_keys.snapshot_date = previous_closes.snapshot_date
            and cohort_keys."window" = previous_closes."window"
            and cohort_keys.coin = previous_closes.coin
            and cohort_keys.segment_id = previous_closes.segment_id

),

final as (

    select
        snapshot_date,
        "window",
        coin,
        segment_id,
        ladder,
        previous_date,
        close_snapshot_id,
        previous_close_snapshot_id,
        close_source,
        previous_close_source,
        has_previous_day,
        is_new,
        is_closed,
        is_reported,
        was_reported,
        {% for measure in measures %}
            {{ measure }},
            previous_{{ measure }},
            {{ measure }} - previous_{{ measure }} as {{ measure }}_change,
            {{ pct_change(measure, 'previous_' ~ measure) }} as {{ measure }}_change_pct,
        {% endfor %}
        bias,
        previous_bias,
        (bias - previous_bias) * 100 as bias_change_pp,
        _max_load_id

    from compared

)

select * from final
