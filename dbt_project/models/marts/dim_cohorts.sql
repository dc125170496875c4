-- The cohort ladder as this project defines it (the seed), beside how the API described
-- each cohort at its newest /segments fetch.

with

cohort_ladder as (

    select * from {{ ref('cohort_ladder') }}

),

segments as (

    select * from {{ ref('stg_hypertracker__segments') }}

),

latest_fetch as (

    select max(fetched_at) as fetched_at

    from segments

),

latest_segments as (

    select segments.*

    from segments

    inner join latest_fetch
        on segments.fetched_at = latest_fetch.fetched_at

),

final as (

    select
        cohort_ladder.segment_id,
        cohort_ladder.cohort_name,
        cohort_ladder.cohort_slug,
        cohort_ladder.ladder,
        cohort_ladder.lower_bound_usd,
        cohort_ladder.upper_bound_usd,
        cohort_ladder.display_order,
        cohort_ladder.cohort_group,
        latest_segments.cohort_name as api_cohort_name,
        latest_segments.api_category,
        latest_segments.emoji,
        latest_segments.criteria_json,
        latest_segments.fetched_at as api_fetched_at

    from cohort_ladder

    left join latest_segments
        on cohort_ladder.segment_id = latest_segments.segment_id

)

select * from final
