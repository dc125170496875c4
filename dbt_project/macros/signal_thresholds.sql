{#
    The signal models' thresholds (seed signal_thresholds, one row per parameter), as literals
    in the SQL: a window frame or a quantile wants a constant, and a literal shows in the
    compiled SQL what a build used.

    A var overrides the seed: `dbt build --vars '{signal_thresholds: {flip_hysteresis: 0.1}}'`
    (unit tests set every parameter this way). The seed's table is read by name when the
    model runs (the model declares its dependency with a depends_on comment); while dbt only
    parses, or where the seed is not loaded (sqlfluff's lint against an empty database), the
    value is a placeholder 0 that nothing runs with.
#}
{% macro signal_threshold(parameter) -%}
    {%- set overrides = var('signal_thresholds', {}) -%}
    {%- if parameter in overrides -%}
        {{ return(overrides[parameter] | float) }}
    {%- endif -%}
    {%- if not execute -%}
        {{ return(0) }}
    {%- endif -%}
    {%- set seed = adapter.get_relation(
        database=target.database, schema='seeds', identifier='signal_thresholds'
    ) -%}
    {%- if seed is none -%}
        {{ return(0) }}
    {%- endif -%}
    {%- set rows = run_query(
        "select value from " ~ seed ~ " where parameter = '" ~ parameter ~ "'"
    ).rows -%}
    {%- if rows | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "signal threshold '" ~ parameter ~ "' is in neither seeds/signal_thresholds.csv "
            ~ "nor the var signal_thresholds"
        ) }}
    {%- endif -%}
    {{ return(rows[0][0] | float) }}
{%- endmacro %}


{#
    Where an incremental build of a signal model starts: the events at and after `cutoff_id`
    (the oldest snapshot loaded since the newest publish; snapshot ids sort as their times)
    are computed again, from the facts since `scan_from` (that snapshot's day less the
    lookback, so that every percentile and previous side the events look back on is read; or,
    with `snapshots_back`, the day of that many snapshots before it: enough for a run of
    consecutive snapshots; 0: the cutoff's own day). Returns none for a full build (the first, a full refresh, a unit
    test, a parse), and {'cutoff_id': none} when nothing is unpublished: only the pre-hook's
    tidy-up runs.

    The loads that a failed test held back leave lake.loads: the pre-hook
    (signal_incremental_tidy) deletes their events as well.
#}
{% macro signal_incremental_scope(snapshots_back=none) -%}
    {%- if not execute or this is none or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        select
            min(loads.snapshot_id) as cutoff_id,
            cast(min(loads.snapshot_date) as varchar) as cutoff_date
        from {{ source('hypertracker', 'loads') }} as loads
        where loads.load_id > (
            select coalesce(max(publishes.load_id), 0)
            from {{ source('hypertracker', 'publishes') }} as publishes
        )
    {%- endset -%}
    {%- set row = run_query(query).rows[0] -%}
    {%- if row[0] is none -%}
        {{ return({'cutoff_id': none, 'scan_from': none}) }}
    {%- endif -%}
    {%- if snapshots_back == 0 -%}
        {{ return({'cutoff_id': row[0], 'scan_from': "date '" ~ row[1] ~ "'"}) }}
    {%- elif snapshots_back is not none -%}
        {#- Enough to see the `snapshots_back` snapshots before the cutoff (by their day). -#}
        {%- set back = run_query(
            "select cast(snapshot_date as varchar) from " ~ source('hypertracker', 'loads')
            ~ " where snapshot_id < '" ~ row[0] ~ "' order by snapshot_id desc limit 1 offset "
            ~ (snapshots_back | int - 1)
        ).rows -%}
        {%- set day = back[0][0] if back | length > 0 else '1970-01-01' -%}
        {{ return({'cutoff_id': row[0], 'scan_from': "date '" ~ day ~ "'"}) }}
    {%- endif -%}
    {%- set lookback = signal_threshold('lookback_days') | int + 1 -%}
    {{ return({
        'cutoff_id': row[0],
        'scan_from': "date '" ~ row[1] ~ "' - " ~ lookback
    }) }}
{%- endmacro %}


{#
    The pre-hook of an incremental signal model: before the new rows are appended, delete
    the events that are computed again (at and after the scope's cutoff) and those of
    snapshots no longer loaded (held back by a failed test). Nothing on a full build.
#}
{% macro signal_incremental_tidy() -%}
    {%- set scope = signal_incremental_scope(snapshots_back=1) -%}
    {%- if scope is none -%}
        {{ return('select 1') }}
    {%- endif -%}
    delete from {{ this }}
    where
        snapshot_id not in (select snapshot_id from {{ source('hypertracker', 'loads') }})
        {%- if scope.cutoff_id is not none %}
            or snapshot_id >= '{{ scope.cutoff_id }}'
        {%- endif %}
{%- endmacro %}


{#
    The two filters of an incremental signal model, from its scope: which facts it reads
    (`scan`: the whole history on a full build, none when nothing is unpublished) and which
    of the events it finds it keeps (`new`: those at and after the cutoff).
#}
{% macro signal_scope_filter(scope, part) -%}
    {%- if scope is none -%}
        true
    {%- elif scope.cutoff_id is none -%}
        false
    {%- elif part == 'scan' -%}
        snapshot_date >= {{ scope.scan_from }}
    {%- else -%}
        snapshot_id >= '{{ scope.cutoff_id }}'
    {%- endif -%}
{%- endmacro %}


{#
    The states the signals read: live snapshots (`heatmap`) and deep-backfilled ones
    (`position_metrics`: every state, at the live pace of 15-30 minutes). The quick
    backfill's export states (`segment_metrics_export`: 12 hours apart) are left out: the
    thresholds count snapshots at that pace (extreme_min_history, divergence_min_snapshots),
    a flip between two of them could have happened anywhere in the 12 hours, and a run of 4
    of them would be 36 hours, not an hour. A condition on the facts' `source`.
#}
{% macro signal_state_filter() -%}
    source in ('heatmap', 'position_metrics')
{%- endmacro %}
