{#
    The days of cohort_flow_price_daily whose rows lack a close's price that the hourly
    candles now give: a backfilled state or a failed market fetch is priced from the candles
    (the newest final close within the hour before the state), and those arrive after the
    state, often many runs later (a first price history spreads over ~20 runs). Named by the
    model's rebuild_also config, daily_rebuild_days adds these days, so each such day is
    rebuilt once its candles have landed, without waiting for a full rebuild. The condition
    is the model's own (close_prices in cohort_flow_price_daily.sql).
#}
{% macro flow_price_repriceable_days() -%}
    with unpriced as (
        select snapshot_date, coin, close_at as priced_at
        from {{ this }}
        where price is null
        union all
        select snapshot_date, coin, previous_close_at
        from {{ this }}
        where previous_price is null and previous_close_at is not null
    ),

    hourly_closes as (
        select coin, closed_at from {{ ref('int_hourly_closes') }} where is_closed
    )

    select distinct unpriced.snapshot_date as day
    from unpriced
    asof inner join hourly_closes
        on unpriced.coin = hourly_closes.coin and unpriced.priced_at >= hourly_closes.closed_at
    where hourly_closes.closed_at > unpriced.priced_at - interval 1 hour
{%- endmacro %}
