{{ config(materialized='daily_parquet', meta={'publish': 'view'}, rebuild_offsets=[0, 1]) }}

{#- Each cohort's day-over-day change in notional, split into flow and price effect. The
    rows, the pairing of D with D-1 and the semantics of gaps, new and closed keys are
    cohort_day_over_day's (docs block cohort_flow_price_daily in _market__docs.md). -#}
{%- set sides = ['long', 'short', 'net'] %}

-- depends_on: {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (daily_rebuild_days reads them)

{#- Rebuilt: the days that received a snapshot since the last build, and the day after each
    (it compares itself with them). Read: those days and the day before each. None: all. -#}
{%- set rebuild_days = daily_rebuild_days() %}
{%- set read_days = daily_rebuild_days(offsets=[-1, 0, 1]) %}

with

cohort_changes as (

    select * from {{ ref('cohort_day_over_day') }}

    {% if rebuild_days is not none %}
        where snapshot_date in {{ rebuild_days }}
    {% endif %}

),

-- The mark price captured with each snapshot (one per snapshot and coin, whatever the window).
market_prices as (

    select
        snapshot_date,
        snapshot_id,
        coin,
        mark_price

    from {{ ref('stg_hyperliquid__market_contexts') }}

    {% if read_days is not none %}
        where snapshot_date in {{ read_days }}
    {% endif %}

),

priced as (

    select
        cohort_changes.snapshot_date,
        cohort_changes."window",
        cohort_changes.coin,
        cohort_changes.segment_id,
        cohort_changes.ladder,
        cohort_changes.previous_date,
        cohort_changes.close_snapshot_id,
        cohort_changes.previous_close_snapshot_id,
        cohort_changes.close_source,
        cohort_changes.previous_close_source,
        cohort_changes.has_previous_day,
        cohort_changes.is_new,
        cohort_changes.is_closed,
        current_prices.mark_price,
        previous_prices.mark_price as previous_mark_price,
        cohort_changes.long_usd,
        cohort_changes.previous_long_usd,
        cohort_changes.short_usd,
        cohort_changes.previous_short_usd,
        cohort_changes.long_usd - cohort_changes.short_usd as net_usd,
        cohort_changes.previous_long_usd - cohort_changes.previous_short_usd as previous_net_usd,
        cohort_changes._max_load_id

    from cohort_changes

    left join market_prices as current_prices
        on
            cohort_changes.snapshot_date = current_prices.snapshot_date
            and cohort_changes.close_snapshot_id = current_prices.snapshot_id
            and cohort_changes.coin = current_prices.coin

    left join market_prices as previous_prices
        on
            cohort_changes.previous_date = previous_prices.snapshot_date
            and cohort_changes.previous_close_snapshot_id = previous_prices.snapshot_id
            and cohort_changes.coin = previous_prices.coin

),

-- Sizes in coins: notional / mark at that close (an assumption: the vendor does not say
-- whether it values at mark). NULL where the close has no price.
sized as (

    select
        {% for side in sides %}
            {{ safe_ratio(side ~ '_usd', 'mark_price') }} as {{ side }}_size_coins,
            {{ safe_ratio('previous_' ~ side ~ '_usd', 'previous_mark_price') }}
                as previous_{{ side }}_size_coins,
        {% endfor %}
        priced.*

    from priced

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
        mark_price is not null and previous_mark_price is not null as has_prices,
        mark_price,
        previous_mark_price,
        {% for side in sides %}
            {{ side }}_usd,
            previous_{{ side }}_usd,
            {{ side }}_size_coins,
            previous_{{ side }}_size_coins,
        {% endfor %}
        {% for side in sides %}
            {{ side }}_usd - previous_{{ side }}_usd as {{ side }}_usd_change,
            -- Flow: the change in size, valued at D-1's price.
            ({{ side }}_size_coins - previous_{{ side }}_size_coins)
            * previous_mark_price as {{ side }}_flow_usd,
            -- Price effect: D's size, revalued from D-1's price to D's.
            {{ side }}_size_coins
            * (mark_price - previous_mark_price) as {{ side }}_price_effect_usd,
        {% endfor %}
        _max_load_id

    from sized

)

select * from final
