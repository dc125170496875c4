{{ config(materialized='view', meta={'publish': 'view'}) }}

-- The event study: did a signal have any edge on this history? Per signal type, window,
-- subject (cohort or group pair) and direction, the forward returns after its events beside
-- the same over every snapshot and coin (the baseline). A view: the forward returns keep
-- arriving (a 24h return is known a day after its snapshot), so it is computed when read,
-- and a build pays nothing for it. The rows with window and subject 'any' pool a type and
-- direction over all of them.

{%- set horizons = ['1h', '4h', '24h'] %}

with

events as (

    select * from {{ ref('signal_events') }}

),

-- The states a signal can fire on (signal_state_filter: live and deep-backfilled), so that
-- the baseline samples the same times as the events.
forward_returns as (

    select * from {{ ref('fct_forward_returns') }}

    where {{ signal_state_filter() }}

),

event_returns as (

    select
        events.signal_type,
        events."window",
        events.subject,
        events.direction,
        forward_returns.return_1h,
        forward_returns.return_4h,
        forward_returns.return_24h

    from events

    left join forward_returns
        on
            events.snapshot_date = forward_returns.snapshot_date
            and events.snapshot_id = forward_returns.snapshot_id
            and events.coin = forward_returns.coin

),

pooled as (

    select
        signal_type,
        'any' as "window",
        'any' as subject,
        direction,
        return_1h,
        return_4h,
        return_24h,
        true as is_pooled

    from event_returns

    union all

    select
        signal_type,
        "window",
        subject,
        direction,
        return_1h,
        return_4h,
        return_24h,
        false as is_pooled

    from event_returns

),

studied as (

    select
        signal_type,
        "window",
        subject,
        direction,
        is_pooled,
        {% for h in horizons %}
            count(return_{{ h }}) as known_{{ h }},
            avg(return_{{ h }}) as mean_return_{{ h }},
            median(return_{{ h }}) as median_return_{{ h }},
        {% endfor %}
        count(*) as event_count

    from pooled

    group by signal_type, "window", subject, direction, is_pooled

),

baseline as (

    select
        {% for h in horizons %}
            count(return_{{ h }}) as baseline_known_{{ h }},
            avg(return_{{ h }}) as baseline_mean_return_{{ h }},
            median(return_{{ h }}) as baseline_median_return_{{ h }},
        {% endfor %}
        count(*) as baseline_rows

    from forward_returns

),

final as (

    select
        studied.signal_type,
        studied."window",
        studied.subject,
        studied.direction,
        studied.is_pooled,
        {% for h in horizons %}
            studied.known_{{ h }},
            studied.mean_return_{{ h }},
            studied.median_return_{{ h }},
            baseline.baseline_known_{{ h }},
            baseline.baseline_mean_return_{{ h }},
            baseline.baseline_median_return_{{ h }},
            studied.mean_return_{{ h }}
            - baseline.baseline_mean_return_{{ h }} as excess_mean_return_{{ h }},
        {% endfor %}
        studied.event_count

    from studied

    cross join baseline

)

select * from final
