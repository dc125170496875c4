{{ config(materialized='daily_parquet', meta={'publish': 'view'}, rebuild_offsets=[0, 1]) }}

{#- The semantics (gaps, new and closed coins) are written out in the docs block
    coin_day_over_day in _marts__docs.md and pinned by unit tests. -#}
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

coin_days as (

    select * from {{ ref('coin_bias_daily') }}

    {% if read_days is not none %}
        where snapshot_date in {{ read_days }}
    {% endif %}

),

-- "Present" at a close means the coin was in that snapshot.
coin_closes as (

    select * from coin_days

    where is_present_at_close

),

current_closes as (

    select
        day_pairs.snapshot_date,
        day_pairs."window",
        coin_closes.coin,
        {% for measure in measures %}
            coin_closes.{{ measure }},
        {% endfor %}
        coin_closes.bias,
        coin_closes.long_positions_share,
        coin_closes.totals_derived

    from day_pairs

    inner join coin_closes
        on
            day_pairs.snapshot_date = coin_closes.snapshot_date
            and day_pairs."window" = coin_closes."window"

),

previous_closes as (

    select
        day_pairs.snapshot_date,
        day_pairs."window",
        coin_closes.coin,
        {% for measure in measures %}
            coin_closes.{{ measure }},
        {% endfor %}
        coin_closes.bias,
        coin_closes.long_positions_share,
        coin_closes.totals_derived

    from day_pairs

    inner join coin_closes
        on
            day_pairs.previous_date = coin_closes.snapshot_date
            and day_pairs."window" = coin_closes."window"

),

coin_keys as (

    select
        snapshot_date,
        "window",
        coin

    from current_closes

    union

    select
        snapshot_date,
        "window",
        coin

    from previous_closes

),

compared as (

    select
        coin_keys.snapshot_date,
        coin_keys."window",
        coin_keys.coin,
        day_pairs.previous_date,
        day_pairs.close_snapshot_id,
        day_pairs.previous_close_snapshot_id,
        day_pairs.close_source,
        day_pairs.previous_close_source,
        day_pairs.has_previous_day,
        day_pairs.has_previous_day and previous_closes.coin is null as is_new,
        current_closes.coin is null as is_closed,
        -- A derived total (the size ladder's sum) beside a live one: the change is partly
        -- the positions in no cohort, not a move. Zeros of absence are not derived.
        coalesce(current_closes.totals_derived, false) as totals_derived,
        case
            when day_pairs.has_previous_day
                then coalesce(previous_closes.totals_derived, false)
        end as previous_totals_derived,
        {% for measure in measures %}
            coalesce(current_closes.{{ measure }}, 0) as {{ measure }},
            case
                when day_pairs.has_previous_day
                    then coalesce(previous_closes.{{ measure }}, 0)
            end as previous_{{ measure }},
        {% endfor %}
        current_closes.bias,
        previous_closes.bias as previous_bias,
        current_closes.long_positions_share,
        previous_closes.long_positions_share as previous_long_positions_share,
        day_pairs._max_load_id

    from coin_keys

    inner join day_pairs
        on
            coin_keys.snapshot_date = day_pairs.snapshot_date
            and coin_keys."window" = day_pairs."window"

    left join current_closes
        on
            coin_keys.snapshot_date = current_closes.snapshot_date
            and coin_keys."window" = current_closes."window"
            and coin_keys.coin = current_closes.coin

    left join previous_closes
        on
            coin_keys.snapshot_date = previous_closes.snapshot_date
            and coin_keys."window" = previous_closes."window"
            and coin_keys.coin = previous_closes.coin

),

final as (

    select
        snapshot_date,
        "window",
        coin,
        previous_date,
        close_snapshot_id,
        previous_close_snapshot_id,
        close_source,
        previous_close_source,
        has_previous_day,
        is_new,
        is_closed,
        totals_derived,
        previous_totals_derived,
        {% for measure in measures %}
            {{ measure }},
            previous_{{ measure }},
            {{ measure }} - previous_{{ measure }} as {{ measure }}_change,
            {{ pct_change(measure, 'previous_' ~ measure) }} as {{ measure }}_change_pct,
        {% endfor %}
        bias,
        previous_bias,
        (bias - previous_bias) * 100 as bias_change_pp,
        long_positions_share,
        previous_long_positions_share,
        (long_positions_share - previous_long_positions_share)
        * 100 as long_positions_share_change_pp,
        _max_load_id

    from compared

)

select * from final
