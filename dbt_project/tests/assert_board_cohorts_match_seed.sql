-- The heatmap board's per-cohort columns come from the macro board_cohorts() (column names
-- must be known at compile time). Every row here is a cohort where the macro and the seed
-- disagree on id or slug.

with

seed as (

    select
        segment_id,
        cohort_slug

    from {{ ref('cohort_ladder') }}

),

board as (

    {% for segment_id, slug in board_cohorts() %}
        select
            {{ segment_id }} as segment_id,
            '{{ slug }}' as cohort_slug
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select
    coalesce(seed.segment_id, board.segment_id) as segment_id,
    seed.cohort_slug as seed_slug,
    board.cohort_slug as board_slug

from seed

full outer join board
    on seed.segment_id = board.segment_id

where seed.cohort_slug is distinct from board.cohort_slug
