-- The newest snapshot as the HyperTracker heatmap shows it: one row per coin and window, one
-- column pair per cohort (from the seed). Rebuilt in full each run, but it reads one
-- snapshot only (macros/newest_snapshot_filter.sql).

-- depends_on: {{ ref('cohort_ladder') }}  (cohort_columns reads it)

{%- set newest = newest_snapshot_filter(ref('stg_hypertracker__loads')) %}

with

coin_snapshots as (

    select * from {{ ref('fct_coin_snapshots') }}

    where {{ newest }}

),

cohort_snapshots as (

    select * from {{ ref('fct_cohort_snapshots') }}

    where {{ newest }}

),

cohort_columns as (

    -- The cohort columns come from the seed, which a lint's empty database lacks.
    -- noqa: disable=LT02
    select
        {% for segment_id, slug in cohort_columns() %}
            max(case when segment_id = {{ segment_id }} then bias end) as {{ slug }}_bias,
            max(case when segment_id = {{ segment_id }} then total_usd end) as {{ slug }}_usd,
        {% endfor %}
        "window",
        coin
    -- noqa: enable=LT02

    from cohort_snapshots

    group by "window", coin

),

final as (

    select
        coin_snapshots."window",
        coin_snapshots.coin,
        row_number() over (
            partition by coin_snapshots."window"
            order by coin_snapshots.total_usd desc, coin_snapshots.coin asc
        ) as oi_rank,
        coin_snapshots.total_usd,
        coin_snapshots.long_usd,
        coin_snapshots.short_usd,
        coin_snapshots.total_positions,
        coin_snapshots.long_positions,
        coin_snapshots.short_positions,
        coin_snapshots.bias,
        coin_snapshots.long_positions_share,
        {% for segment_id, slug in cohort_columns() %}
            cohort_columns.{{ slug }}_bias,
            cohort_columns.{{ slug }}_usd,
        {% endfor %}
        coin_snapshots.snapshot_id,
        coin_snapshots.last_update

    from coin_snapshots

    inner join cohort_columns
        on
            coin_snapshots."window" = cohort_columns."window"
            and coin_snapshots.coin = cohort_columns.coin

)

select * from final
