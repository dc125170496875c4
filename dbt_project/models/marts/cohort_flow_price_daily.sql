{{ config(
    materialized='daily_parquet', meta={'publish': 'view'}, rebuild_offsets=[0, 1],
    rebuild_also='flow_price_repriceable_days'
) }}

{#- Each cohort's day-over-day change in notional, split into flow and price effect. The
    rows, the pairing of D with D-1 and the semantics of gaps, new and closed keys are
    cohort_day_over_day's (docs block cohort_flow_price_daily in _market__docs.md). -#}
{%- set sides = ['long', 'short', 'net'] %}

-- depends_on: {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (daily_rebuild_days reads them)

{#- Rebuilt: the days that received a snapshot since the last build, the days whose closes
    the candles landed since can now price (rebuild_also: macros/flow_price_repriceable_days.sql),
    and the day after each (it compares itself with them). Read: those days and the day
    before each. None: all. -#}
{%- set rebuild_days = daily_rebuild_days() %}
{%- set read_days = daily_rebuild_days(offsets=[-1, 0, 1]) %}

with

cohort_changes as (

    select * from {{ ref('cohort_day_over_day') }}

    {% if rebuild_days is not none %}
        where snapshot_date in {{ rebuild_days }}
    {% endif %}

),

-- The closes the rebuilt rows compare, D's and D-1's, with the coin each prices.
closes as (

    select
        snapshot_date,
        close_snapshot_id as snapshot_id,
        coin

    from cohort_changes

    union

    select
        previous_date,
        previous_close_snapshot_id,
        coin

    from cohort_changes

    where previous_close_snapshot_id is not null

),

-- Each close's state time (a coin that has left the heatmap keeps its closes' times).
snapshot_times as (

    select distinct
        snapshot_date,
        snapshot_id,
        last_update

    from {{ ref('int_snapshot_coins') }}

    {% if read_days is not none %}
        where snapshot_date in {{ read_days }}
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

hourly_closes as (

    select * from {{ ref('int_hourly_closes') }}

    where is_closed

),

timed_closes as (

    select
        closes.snapshot_date,
        closes.snapshot_id,
        closes.coin,
        snapshot_times.last_update as close_at,
        market_prices.mark_price

    from closes

    inner join snapshot_times
        on
            closes.snapshot_date = snapshot_times.snapshot_date
            and closes.snapshot_id = snapshot_times.snapshot_id

    left join market_prices
        on
            closes.snapshot_date = market_prices.snapshot_date
            and closes.snapshot_id = market_prices.snapshot_id
            and closes.coin = market_prices.coin

),

-- The hourly close that can price each close without a market: the newest final one at or
-- before the state, if it closed within the hour before (the top of the state's hour: the
-- close known at the state). Older than that, or no candle: NULL, never a stale price.
candle_prices as (

    select
        timed_closes.*,
        case
            when hourly_closes.closed_at > timed_closes.close_at - interval 1 hour
                then hourly_closes.close_price
        end as candle_price

    from timed_closes

    asof left join hourly_closes
        on
            timed_closes.coin = hourly_closes.coin
            and timed_closes.close_at >= hourly_closes.closed_at

),

-- The price of each close: the mark captured with its snapshot, else the candle's (a
-- backfilled state, a failed market fetch).
close_prices as (

    select
        snapshot_date,
        snapshot_id,
        coin,
        close_at,
        coalesce(mark_price, candle_price) as price,
        case
            when mark_price is not null then 'mark'
            when candle_price is not null then 'candle'
        end as price_source

    from candle_prices

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
        current_prices.close_at,
        previous_prices.close_at as previous_close_at,
        current_prices.price,
        current_prices.price_source,
        previous_prices.price as previous_price,
        previous_prices.price_source as previous_price_source,
        cohort_changes.long_usd,
        cohort_changes.previous_long_usd,
        cohort_changes.short_usd,
        cohort_changes.previous_short_usd,
        cohort_changes.long_usd - cohort_changes.short_usd as net_usd,
        cohort_changes.previous_long_usd - cohort_changes.previous_short_usd as previous_net_usd,
        cohort_changes._max_load_id

    from cohort_changes

    left join close_prices as current_prices
        on
            cohort_changes.snapshot_date = current_prices.snapshot_date
            and cohort_changes.close_snapshot_id = current_prices.snapshot_id
            and cohort_changes.coin = current_prices.coin

    left join close_prices as previous_prices
        on
            cohort_changes.previous_date = previous_prices.snapshot_date
            and cohort_changes.previous_close_snapshot_id = previous_prices.snapshot_id
            and cohort_changes.coin = previous_prices.coin

),

-- Sizes in coins: notional / the close's price (an assumption: the vendor does not say
-- whether it values at mark). NULL where the close has no price.
sized as (

    select
        {% for side in sides %}
            {{ safe_ratio(side ~ '_usd', 'price') }} as {{ side }}_size_coins,
            {{ safe_ratio('previous_' ~ side ~ '_usd', 'previous_price') }}
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
        price is not null and previous_price is not null as has_prices,
        close_at,
        previous_close_at,
        price,
        price_source,
        previous_price,
        previous_price_source,
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
            * previous_price as {{ side }}_flow_usd,
            -- Price effect: D's size, revalued from D-1's price to D's.
            {{ side }}_size_coins
            * (price - previous_price) as {{ side }}_price_effect_usd,
        {% endfor %}
        _max_load_id

    from sized

)

select * from final
