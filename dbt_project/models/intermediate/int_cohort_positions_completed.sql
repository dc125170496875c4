-- The API leaves out a cohort that holds no position in a coin. Here every coin present in a
-- snapshot and window gets all 16 cohorts, with zeros where the API said nothing, so sums,
-- averages and changes never mistake "no positions" for "no data".

with

coin_positions as (

    select
        snapshot_id,
        "window",
        coin,
        last_update,
        snapshot_date,
        source,
        _load_id

    from {{ ref('stg_hypertracker__coin_positions') }}

),

cohort_positions as (

    select * from {{ ref('stg_hypertracker__cohort_positions') }}

),

cohort_ladder as (

    select
        segment_id,
        ladder

    from {{ ref('cohort_ladder') }}

),

coin_cohort_grid as (

    select
        coin_positions.snapshot_id,
        coin_positions."window",
        coin_positions.coin,
        cohort_ladder.segment_id,
        cohort_ladder.ladder,
        coin_positions.last_update,
        coin_positions.snapshot_date,
        coin_positions.source,
        coin_positions._load_id

    from coin_positions

    cross join cohort_ladder

),

completed as (

    select
        coin_cohort_grid.snapshot_id,
        coin_cohort_grid."window",
        coin_cohort_grid.coin,
        coin_cohort_grid.segment_id,
        coin_cohort_grid.ladder,
        coin_cohort_grid.last_update,
        coin_cohort_grid.snapshot_date,
        cohort_positions.segment_id is not null as is_reported,
        coalesce(cohort_positions.long_usd, 0) as long_usd,
        coalesce(cohort_positions.short_usd, 0) as short_usd,
        coalesce(cohort_positions.total_usd, 0) as total_usd,
        coalesce(cohort_positions.long_positions, 0) as long_positions,
        coalesce(cohort_positions.short_positions, 0) as short_positions,
        coalesce(cohort_positions.total_positions, 0) as total_positions,
        cohort_positions.api_bias,
        -- A state's rows share one source (staging keeps live or backfilled, never both).
        coin_cohort_grid.source,
        coin_cohort_grid._load_id

    from coin_cohort_grid

    -- Matching on _load_id too is redundant (staging keeps one load per snapshot) but lets a
    -- filter on the grid's _load_id reach the cohort scan as well.
    left join cohort_positions
        on
            coin_cohort_grid.snapshot_id = cohort_positions.snapshot_id
            and coin_cohort_grid."window" = cohort_positions."window"
            and coin_cohort_grid.coin = cohort_positions.coin
            and coin_cohort_grid.segment_id = cohort_positions.segment_id
            and coin_cohort_grid._load_id = cohort_positions._load_id

)

select * from completed
