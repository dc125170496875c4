-- The seed cohort_ladder against the newest GET /segments fetch: every id on one side and not
-- the other, or named differently, is a row. A warning, not an error: the API may rename or
-- add a cohort at any time, and the seed (with the board's column list) should then follow.
{{ config(severity='warn') }}

with

seed as (

    select
        segment_id,
        cohort_name

    from {{ ref('cohort_ladder') }}

),

segments as (

    select * from {{ ref('stg_hypertracker__segments') }}

),

latest_fetch as (

    select
        segment_id,
        cohort_name

    from segments

    where fetched_at = (select max(segments.fetched_at) from segments)

)

select
    coalesce(seed.segment_id, latest_fetch.segment_id) as segment_id,
    seed.cohort_name as seed_cohort_name,
    latest_fetch.cohort_name as api_cohort_name

from seed

full outer join latest_fetch
    on seed.segment_id = latest_fetch.segment_id

where
    seed.cohort_name is distinct from latest_fetch.cohort_name
    -- Before the first /segments fetch there is nothing to compare with.
    and exists (select 1 from latest_fetch)
