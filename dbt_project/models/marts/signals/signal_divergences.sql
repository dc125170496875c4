{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ signal_incremental_tidy() }}",
    meta={'publish': 'table'},
) }}

-- depends_on: {{ ref('signal_thresholds') }}, {{ source('hypertracker', 'loads') }}, {{ source('hypertracker', 'publishes') }}
-- (signal_threshold and signal_incremental_scope read them)

-- Two cohort groups (the seed cohort_ladder's cohort_group) disagree: group a's bias minus
-- group b's, in bias points, at or beyond divergence_threshold_pp on the same side for
-- divergence_min_snapshots consecutive snapshots. A group's bias is notional-weighted: the
-- sum of its cohorts' long USD over the sum of their total USD in the coin and window (as
-- smart_retail_divergence_daily). A snapshot counts only where each group holds at least
-- divergence_min_total_usd. The event is the snapshot where the run reaches N, once per run.
-- Consecutive among the states at the live pace only (signal_state_filter): 12-hourly
-- export states are no part of the runs.

{%- set pairs = [
    ('smart_money_vs_retail', 'smart_money', 'retail'),
    ('whales_vs_retail', 'whales', 'retail'),
] %}
{%- set threshold_pp = signal_threshold('divergence_threshold_pp') %}
{%- set min_snapshots = signal_threshold('divergence_min_snapshots') | int %}
{#- A run reaching N at a new snapshot is seen from the N snapshots before the cutoff. -#}
{%- set scope = signal_incremental_scope(snapshots_back=min_snapshots) %}
{%- set min_total_usd = signal_threshold('divergence_min_total_usd') %}

with

cohort_snapshots as (

    select
        snapshot_id,
        "window",
        coin,
        segment_id,
        last_update,
        snapshot_date,
        long_usd,
        total_usd,
        _load_id

    from {{ ref('fct_cohort_snapshots') }}

    where
        {{ signal_state_filter() }}
        and {{ signal_scope_filter(scope, 'scan') }}

),

cohort_groups as (

    select
        segment_id,
        cohort_group

    from {{ ref('cohort_ladder') }}

    where cohort_group is not null

),

groups as (

    select
        cohort_snapshots.snapshot_id,
        cohort_snapshots."window",
        cohort_snapshots.coin,
        cohort_snapshots.last_update,
        cohort_snapshots.snapshot_date,
        cohort_groups.cohort_group,
        sum(cohort_snapshots.long_usd) as long_usd,
        sum(cohort_snapshots.total_usd) as total_usd,
        {{ safe_ratio('sum(cohort_snapshots.long_usd)', 'sum(cohort_snapshots.total_usd)') }}
            as bias,
        max(cohort_snapshots._load_id) as _load_id

    from cohort_snapshots

    inner join cohort_groups
        on cohort_snapshots.segment_id = cohort_groups.segment_id

    group by
        cohort_snapshots.snapshot_id,
        cohort_snapshots."window",
        cohort_snapshots.coin,
        cohort_snapshots.last_update,
        cohort_snapshots.snapshot_date,
        cohort_groups.cohort_group

),

-- Consecutive means consecutive snapshots of the history, whichever coin: a snapshot where
-- the coin is missing, or a group too small, breaks the run.
sequenced as (

    select
        *,
        dense_rank() over (order by last_update, snapshot_id) as snapshot_seq

    from groups

),

pairs as (

    {% for pair, group_a, group_b in pairs %}
        select
            a.snapshot_id,
            a."window",
            a.coin,
            a.last_update,
            a.snapshot_date,
            a.snapshot_seq,
            '{{ pair }}' as pair,
            '{{ group_a }}' as group_a,
            '{{ group_b }}' as group_b,
            a.bias as group_a_bias,
            b.bias as group_b_bias,
            a.total_usd as group_a_total_usd,
            b.total_usd as group_b_total_usd,
            (a.bias - b.bias) * 100 as spread_pp,
            greatest(a._load_id, b._load_id) as _load_id

        from sequenced as a

        inner join sequenced as b
            on
                a.snapshot_id = b.snapshot_id
                and a."window" = b."window"
                and a.coin = b.coin
                and b.cohort_group = '{{ group_b }}'

        where
            a.cohort_group = '{{ group_a }}'
            and a.total_usd >= {{ min_total_usd }}
            and b.total_usd >= {{ min_total_usd }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

diverged as (

    select
        *,
        case
            when spread_pp >= {{ threshold_pp }} then 'long'
            when spread_pp <= -{{ threshold_pp }} then 'short'
        end as direction

    from pairs

),

-- Gaps and islands: within a run of consecutive snapshots on one side, snapshot_seq minus
-- the row's rank on that side is constant.
islands as (

    select
        *,
        snapshot_seq - row_number() over (
            partition by "window", coin, pair, direction order by snapshot_seq
        ) as island

    from diverged

    where direction is not null

),

runs as (

    select
        *,
        row_number() over run as run_snapshots,
        first_value(last_update) over run as run_started_at,
        min(abs(spread_pp)) over run as run_min_abs_spread_pp

    from islands

    window run as (
        partition by "window", coin, pair, direction, island
        order by snapshot_seq
        rows between unbounded preceding and current row
    )

),

final as (

    select
        snapshot_id,
        last_update as snapshot_at,
        snapshot_date,
        "window",
        coin,
        pair,
        group_a,
        group_b,
        direction,
        spread_pp,
        group_a_bias,
        group_b_bias,
        group_a_total_usd,
        group_b_total_usd,
        run_snapshots,
        run_started_at,
        run_min_abs_spread_pp,
        cast({{ threshold_pp }} as double) as threshold_pp,
        _load_id

    from runs

    where
        run_snapshots = {{ min_snapshots }}
        and {{ signal_scope_filter(scope, 'new') }}

)

select * from final
