{{ config(materialized='table', meta={'publish': 'table'}) }}

-- Every signal event, one row each, whatever its type: the flips, extremes and divergences
-- (each its own incremental model, with its own evidence columns) in one shape, with a
-- stable event_id, a line for people (summary) and the type's evidence as JSON (details).
-- Rebuilt whole each run: it holds events, not snapshots, so it stays small.

with

cohorts as (

    select
        segment_id,
        cohort_slug,
        cohort_name,
        cohort_group

    from {{ ref('cohort_ladder') }}

),

flips as (

    select
        'flip' as signal_type,
        flips.snapshot_id,
        flips.snapshot_at,
        flips.snapshot_date,
        flips."window",
        flips.coin,
        cohorts.cohort_slug as subject,
        cohorts.cohort_name as subject_name,
        flips.segment_id,
        cohorts.cohort_group,
        flips.direction,
        flips.bias as signal_value,
        flips.previous_bias as reference_value,
        flips.total_usd,
        printf(
            '%s flipped %s on %s (%s): bias %.3f, %s at %.3f on %s; $%.1fM',
            cohorts.cohort_name, flips.direction, flips.coin, flips."window", flips.bias,
            flips.previous_side, flips.previous_bias,
            strftime(flips.previous_at, '%Y-%m-%d %H:%M'), flips.total_usd / 1e6
        ) as headline,
        to_json({
            previous_side: flips.previous_side,
            previous_bias: flips.previous_bias,
            previous_snapshot_id: flips.previous_snapshot_id,
            previous_at: flips.previous_at,
            long_usd: flips.long_usd,
            hysteresis: flips.hysteresis,
            min_total_usd: flips.min_total_usd
        }) as details,
        flips._load_id

    from {{ ref('signal_flips') }} as flips

    inner join cohorts
        on flips.segment_id = cohorts.segment_id

),

extreme_bounds as (

    select
        *,
        case when direction = 'long' then upper_bound else lower_bound end as bound,
        printf(
            'p%d',
            cast(
                round(100 * case when direction = 'long' then upper_quantile else lower_quantile end)
                as integer
            )
        ) as bound_name

    from {{ ref('signal_extremes') }}

),

extremes as (

    select
        'extreme' as signal_type,
        extremes.snapshot_id,
        extremes.snapshot_at,
        extremes.snapshot_date,
        extremes."window",
        extremes.coin,
        cohorts.cohort_slug as subject,
        cohorts.cohort_name as subject_name,
        extremes.segment_id,
        cohorts.cohort_group,
        extremes.direction,
        extremes.bias as signal_value,
        extremes.bound as reference_value,
        extremes.total_usd,
        printf(
            '%s at a %s extreme on %s (%s): bias %.3f, beyond its %s %.3f over %d snapshots; $%.1fM',
            cohorts.cohort_name, extremes.direction, extremes.coin, extremes."window",
            extremes.bias, extremes.bound_name, extremes.bound, extremes.history_snapshots,
            extremes.total_usd / 1e6
        ) as headline,
        to_json({
            lower_bound: extremes.lower_bound,
            upper_bound: extremes.upper_bound,
            lower_quantile: extremes.lower_quantile,
            upper_quantile: extremes.upper_quantile,
            history_snapshots: extremes.history_snapshots,
            lookback_days: extremes.lookback_days
        }) as details,
        extremes._load_id

    from extreme_bounds as extremes

    inner join cohorts
        on extremes.segment_id = cohorts.segment_id

),

divergences as (

    select
        'divergence' as signal_type,
        snapshot_id,
        snapshot_at,
        snapshot_date,
        "window",
        coin,
        pair as subject,
        replace(group_a, '_', ' ') || ' vs ' || replace(group_b, '_', ' ') as subject_name,
        cast(null as smallint) as segment_id,
        group_a as cohort_group,
        direction,
        spread_pp as signal_value,
        threshold_pp as reference_value,
        least(group_a_total_usd, group_b_total_usd) as total_usd,
        printf(
            '%s %s than %s on %s (%s) for %d snapshots: %+.1f bias points (%.3f vs %.3f) since %s',
            replace(group_a, '_', ' '),
            case when direction = 'long' then 'longer' else 'shorter' end,
            replace(group_b, '_', ' '), coin, "window", run_snapshots, spread_pp,
            group_a_bias, group_b_bias, strftime(run_started_at, '%Y-%m-%d %H:%M')
        ) as headline,
        to_json({
            group_a: group_a,
            group_b: group_b,
            group_a_bias: group_a_bias,
            group_b_bias: group_b_bias,
            group_a_total_usd: group_a_total_usd,
            group_b_total_usd: group_b_total_usd,
            run_snapshots: run_snapshots,
            run_started_at: run_started_at,
            run_min_abs_spread_pp: run_min_abs_spread_pp,
            threshold_pp: threshold_pp
        }) as details,
        _load_id

    from {{ ref('signal_divergences') }}

),

unioned as (

    select * from flips
    union all
    select * from extremes
    union all
    select * from divergences

),

final as (

    select
        md5(
            signal_type || '|' || "window" || '|' || coin || '|' || subject || '|' || snapshot_id
        ) as event_id,
        signal_type,
        snapshot_id,
        snapshot_at,
        snapshot_date,
        "window",
        coin,
        subject,
        subject_name,
        segment_id,
        cohort_group,
        direction,
        signal_value,
        reference_value,
        total_usd,
        headline,
        cast(details as varchar) as details,
        _load_id

    from unioned

)

select * from final
