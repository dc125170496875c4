{#
    Test scope for the marts over the whole history: what the coming publish would hand to
    analysts, tested before it does, even after a build that failed.

    dbt wraps every generic test's `model` in get_where_subquery(), which applies the test's
    `where` config. This override adds two forms:

    - `where: unpublished`: the rows of every load above the newest published one
      (lake.publishes). The days and snapshots of those loads are inlined as literals, so
      the lake scans skip other days' folders (partition filter) and other snapshots' files
      (Parquet statistics); more than 500 snapshots (a first build, a rebuild) are scoped by
      day and load. One snapshot (a scheduled run) is scoped by equalities: DuckDB carries
      an equality on a join key across the join into the other side's scans, an IN list it
      does not, so a view that left-joins an aggregate over the lake (fct_market_snapshots'
      size ladder, fct_forward_returns' candles) read the whole history for each test: at
      30 days 0.8 s a test against 0.1 s.
    - `where: "unpublished:<column>"`: the rows whose <column> (a load id, e.g. the daily
      marts' _max_load_id) is above the newest published load: the days rebuilt since.

    `dbt build --vars '{test_full_history: true}'` drops both limits and tests every row.
    Any other `where` value behaves exactly as in dbt's own macro.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') or '' -%}
    {%- if where == 'unpublished' or where.startswith('unpublished:') -%}
        {%- if var('test_full_history', false) or not execute -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set pending_query -%}
            select
                (select coalesce(max(load_id), 0) from {{ source('hypertracker', 'publishes') }})
                    as published,
                string_agg(distinct 'date ''' || snapshot_date || '''', ', ') as days,
                string_agg('''' || snapshot_id || '''', ', ') as snapshot_ids,
                count(*) as snapshots
            from {{ source('hypertracker', 'loads') }}
            where load_id > (
                select coalesce(max(load_id), 0) from {{ source('hypertracker', 'publishes') }}
            )
        {%- endset -%}
        {%- set pending = run_query(pending_query).rows[0] -%}
        {%- if where.startswith('unpublished:') -%}
            {%- set condition = where[12:] | trim ~ ' > ' ~ pending[0] -%}
        {%- elif pending[3] == 0 -%}
            {%- set condition = 'false' -%}
        {%- elif pending[3] == 1 -%}
            {%- set condition = 'snapshot_date = ' ~ pending[1] ~ ' and snapshot_id = '
                ~ pending[2] -%}
        {%- elif pending[3] <= 500 -%}
            {#- By snapshot ids where there are few: a filter on _load_id would hide them from
                the scans. -#}
            {%- set condition = 'snapshot_date in (' ~ pending[1] ~ ') and snapshot_id in ('
                ~ pending[2] ~ ')' -%}
        {%- else -%}
            {%- set condition = 'snapshot_date in (' ~ pending[1] ~ ') and _load_id > '
                ~ pending[0] -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ condition }}) as dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- elif where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) as dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
