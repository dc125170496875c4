{#
    The daily marts: one row set per day (column snapshot_date), kept as Parquet, one file per
    day, each written once under a name no file had before (the build's start time). The
    model's relation is a view over the current file of each day, and the ledger
    _marts.files (in the build database, created by the project's on-run-start) says which
    file that is.

    A build writes only the days that daily_rebuild_days() names (every day on the first or
    a full build), as new files, and marks the files they replace as no longer current; it
    never rewrites a file. Publishing (flows/publish.py) gives analysts a view over the same
    files and deletes a replaced file once no published state has named it for the grace
    period, so a reader holding an older analytics.duckdb goes on reading whole files.

    Config: rebuild_offsets (default [0]): the days to rebuild relative to each day that
    received a snapshot since the model's last build; a day-over-day model compares a day with
    the day before, so it rebuilds [0, 1]. rebuild_also (optional): the name of a macro
    of this project whose query returns more days to rebuild (column `day`), for a model that
    also reads data arriving apart from the snapshots. It is looked up in dbt-core's `context`
    by name: adapter.dispatch would need the name as a literal (dbt parses it statically).
#}
{% materialization daily_parquet, adapter='duckdb' %}

    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set staged = api.Relation.create(
        database=this.database, schema=this.schema, identifier=this.identifier ~ '__dbt_days',
        type='table'
    ) -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set folder = env_var('HT_MARTS_DIR') ~ '/' ~ this.identifier -%}
    {%- set days = daily_rebuild_days() -%}
    {%- set stamp = run_started_at.strftime('%Y%m%dT%H%M%S%f') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if config.get('contract').enforced -%}
        {{ get_assert_columns_equivalent(sql) }}
    {%- endif -%}

    {% call statement('main') -%}
        create or replace table {{ staged }} as ({{ sql }})
    {%- endcall %}

    {% do run_query(
        "copy (select * from " ~ staged ~ " order by snapshot_date) to '" ~ folder ~ "' "
        ~ "(format parquet, compression zstd, partition_by (snapshot_date), "
        ~ "write_partition_columns true, overwrite_or_ignore, "
        ~ "filename_pattern 'v" ~ stamp ~ "_{i}')"
    ) %}

    {%- set replaced -%}
        update _marts.files set is_current = false
        where model = '{{ this.identifier }}' and is_current
        {%- if days is not none %} and (day is null or day in {{ days }}){% endif %}
    {%- endset -%}
    {% do run_query(replaced) %}

    {% do run_query(
        "insert into _marts.files select '" ~ this.identifier ~ "', "
        ~ "cast(regexp_extract(file, 'snapshot_date=([0-9-]+)', 1) as date), file, "
        ~ "current_timestamp, true from glob('" ~ folder ~ "/*/v" ~ stamp ~ "_*.parquet')"
    ) %}

    {%- set current = run_query(
        "select path from _marts.files where model = '" ~ this.identifier
        ~ "' and is_current order by day, path"
    ).columns[0].values() | list -%}
    {%- if current | length == 0 -%}
        {#- No day at all yet: a file with the columns and no rows keeps the view typed. -#}
        {%- set empty = folder ~ '/empty.v' ~ stamp ~ '.parquet' -%}
        {% do run_query(
            "copy (select * from " ~ staged ~ " limit 0) to '" ~ empty ~ "' (format parquet)"
        ) %}
        {% do run_query(
            "insert into _marts.files values ('" ~ this.identifier ~ "', null, '" ~ empty
            ~ "', current_timestamp, true)"
        ) %}
        {%- set current = [empty] -%}
    {%- endif -%}

    {% if existing is not none and existing.type != 'view' %}
        {{ drop_relation_if_exists(existing) }}
    {% endif %}

    {% call statement('create_view') -%}
        create or replace view {{ target_relation }} as
        select * from read_parquet([
            {%- for path in current %}'{{ path }}'{{ ', ' if not loop.last }}{% endfor -%}
        ], hive_partitioning = false)
    {%- endcall %}

    {{ drop_relation_if_exists(staged) }}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do persist_docs(target_relation, model) %}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}


{#
    The days a daily model rebuilds, as a SQL list for `snapshot_date in {{ ... }}`, or none
    for every day (the first build, a full refresh, a unit test, or when dbt only parses; and
    when the model's columns are not those of its current files: a new version of the model
    rewrites every day, since a view over files of two shapes would read the first file's).

    The days are those of the snapshots loaded after the newest published load (lake.publishes:
    a build that failed its tests, or was not published, is rebuilt by the next) and those
    the model's rebuild_also macro names, each shifted by `offsets` (default: the model's
    rebuild_offsets). They are read from the small ledgers
    and inlined as literals, so that the filter reaches the lake's scans as a partition filter.
    An empty set renders `(null)`, which matches nothing.
#}
{% macro daily_rebuild_days(offsets=none) -%}
    {%- if not execute or this is none or should_full_refresh() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set existing = load_relation(this) -%}
    {%- if existing is none or existing.type != 'view' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set have = adapter.get_columns_in_relation(existing) | map(attribute='name') | list -%}
    {%- set want = model.columns.keys() | list -%}
    {%- if want and have != want -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set offsets = offsets if offsets is not none else config.get('rebuild_offsets', [0]) -%}
    {%- set also = config.get('rebuild_also') -%}
    {%- set query -%}
        with watermark as (
            select coalesce(max(load_id), 0) as load_id
            from {{ source('hypertracker', 'publishes') }}
        ),

        changed as (
            select loads.snapshot_date as day
            from {{ source('hypertracker', 'loads') }} as loads
            where loads.load_id > (select watermark.load_id from watermark)
            {%- if also %}
            union
            select cast(also.day as date) from ({{ context[also]() }}) as also
            {%- endif %}
        )

        select distinct cast(changed.day + offsets.day_offset as varchar) as day
        from changed
        cross join (select unnest({{ offsets | list }}) as day_offset) as offsets
        order by day
    {%- endset -%}
    {%- set days = run_query(query).columns[0].values() -%}
    {%- if days | length == 0 -%}
        {{ return('(null)') }}
    {%- endif -%}
    {%- set literals = [] -%}
    {%- for day in days -%}
        {%- do literals.append("date '" ~ day ~ "'") -%}
    {%- endfor -%}
    {{ return('(' ~ literals | join(', ') ~ ')') }}
{%- endmacro %}
