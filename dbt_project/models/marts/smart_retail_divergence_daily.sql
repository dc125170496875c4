{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='snapshot_date',
        on_schema_change='fail',
    )
}}

-- depends_on: {{ ref('stg_hypertracker__snapshots') }}  (read on incremental runs only)

-- Who leans which way at the day's close: value-weighted long share (sum long / sum total)
-- of the PnL winners, of the smallest accounts and of the PnL losers, and the gaps between
-- them. Groups (segment ids): smart = Money Printer + Smart Money (8, 9); retail = Shrimp +
-- Fish (16, 1); losers = Exit Liquidity, Semi-Rekt, Full Rekt, Giga-Rekt (12-15).

{%- set groups = {
    'smart': '8, 9',
    'retail': '16, 1',
    'losers': '12, 13, 14, 15',
} %}

{% if is_incremental() %}
    {#- The days that received a snapshot since the last run: only these are rebuilt. -#}
    {%- set rebuild_days = changed_snapshot_dates() -%}
{% endif %}

with

cohort_days as (

    select * from {{ ref('cohort_bias_daily') }}

    {% if is_incremental() %}
        where snapshot_date in {{ rebuild_days }}
    {% endif %}

),

cohort_closes as (

    select * from cohort_days

    where is_present_at_close

),

grouped as (

    select
        snapshot_date,
        "window",
        coin,
        close_snapshot_id,
        {% for group, segment_ids in groups.items() %}
            sum(
                case when segment_id in ({{ segment_ids }}) then long_usd else 0 end
            ) as {{ group }}_long_usd,
            sum(
                case when segment_id in ({{ segment_ids }}) then total_usd else 0 end
            ) as {{ group }}_total_usd,
        {% endfor %}
        max(_max_load_id) as _max_load_id

    from cohort_closes

    group by snapshot_date, "window", coin, close_snapshot_id

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
        {% for group in groups %}
            {{ group }}_long_usd,
            {{ group }}_total_usd,
            {{ group }}_bias,
        {% endfor %}
        (smart_bias - retail_bias) * 100 as smart_minus_retail_pp,
        (smart_bias - losers_bias) * 100 as smart_minus_losers_pp,
        _max_load_id

    from biased

)

select * from final
