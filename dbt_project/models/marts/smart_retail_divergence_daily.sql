{{ config(materialized='daily_parquet', meta={'publish': 'view'}) }}

-- depends_on: {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (daily_rebuild_days reads them)

-- Who leans which way at the day's close: value-weighted long share (sum long / sum total)
-- of each cohort group, and the gaps between them. Which cohort is in which group is the
-- seed's cohort_group; the columns are named by the prefixes below.

{%- set groups = {
    'smart': 'smart_money',
    'retail': 'retail',
    'losers': 'losers',
    'whales': 'whales',
} %}

{#- The days that received a snapshot since the last build (none: every day). -#}
{%- set rebuild_days = daily_rebuild_days() %}

with

cohort_days as (

    select * from {{ ref('cohort_bias_daily') }}

    {% if rebuild_days is not none %}
        where snapshot_date in {{ rebuild_days }}
    {% endif %}

),

cohort_groups as (

    select
        segment_id,
        cohort_group

    from {{ ref('cohort_ladder') }}

),

cohort_closes as (

    select
        cohort_days.*,
        cohort_groups.cohort_group

    from cohort_days

    inner join cohort_groups
        on cohort_days.segment_id = cohort_groups.segment_id

    where cohort_days.is_present_at_close

),

grouped as (

    select
        snapshot_date,
        "window",
        coin,
        close_snapshot_id,
        close_source,
        {% for prefix, cohort_group in groups.items() %}
            sum(
                case when cohort_group = '{{ cohort_group }}' then long_usd else 0 end
            ) as {{ prefix }}_long_usd,
            sum(
                case when cohort_group = '{{ cohort_group }}' then total_usd else 0 end
            ) as {{ prefix }}_total_usd,
        {% endfor %}
        max(_max_load_id) as _max_load_id

    from cohort_closes

    group by snapshot_date, "window", coin, close_snapshot_id, close_source

),

biased as (

    select
        {% for group in groups %}
            {{ safe_ratio(group ~ '_long_usd', group ~ '_total_usd') }} as {{ group }}_bias,
        {% endfor %}
        grouped.*

    from grouped

),

final as (

    select
        snapshot_date,
        "window",
        coin,
        close_snapshot_id,
        close_source,
        {% for group in groups %}
            {{ group }}_long_usd,
            {{ group }}_total_usd,
            {{ group }}_bias,
        {% endfor %}
        (smart_bias - retail_bias) * 100 as smart_minus_retail_pp,
        (smart_bias - losers_bias) * 100 as smart_minus_losers_pp,
        (whales_bias - retail_bias) * 100 as whales_minus_retail_pp,
        _max_load_id

    from biased

)

select * from final
