{#
    All the row-level checks of one model in one test: one scan, one dbt node. dbt spends
    more per node (compile, connection, bookkeeping) than the checks cost in SQL, so a test per
    column and rule made the scheduled build several times slower than its models.

    The test returns one row per failing check: check_name, failing_rows (the rows that break
    it) and example_key (the key of one of them), so a failure names the check that broke and
    a row to look at. Passing checks return nothing.

    Arguments (all but key optional). Each check's name, as reported, is in brackets:
    - key: the grain, a list of columns; no two rows may share it [unique(<columns>)]. It also
      identifies the example row of every other check.
    - not_null: columns that must not be NULL [not_null(<column>)].
    - accepted_values: {column: [values]}; NULL passes, as in dbt's accepted_values
      [accepted_values(<column>)].
    - unique: more columns (or lists of columns) that must be unique as well
      [unique(<columns>)]. A window count over the rows in scope: meant for small tables.
    - relationships: {column: ref('model')}: every non-NULL value is in the column of the same
      name there [relationships(<column> -> <model>)]. The test then reads that model too, and
      `dbt build` holds a model back for a failing test only if the model depends on every
      model the test reads: where the models downstream do not depend on it, a separate
      relationships test keeps these checks holding them back.
    - expressions: {name: SQL boolean}: a row invariant; a row where it is false or NULL fails
      (write `x is null or ...` where NULL is allowed) [<name>].

    The `where` config (e.g. newest_load, macros/get_where_subquery.sql) scopes every check.
    Each failing condition below is true or false, never NULL, so a count of it is exact.
    With `test_full_history` the group by spans every row: on 30 days of fct_cohort_snapshots
    (31M rows) it took 35-41 s, where the single-rule tests it replaced took about 15 s.
#}
{% test row_checks(
    model,
    key,
    not_null=[],
    accepted_values={},
    unique=[],
    relationships={},
    expressions={}
) %}

    {%- set key_columns = [] -%}
    {%- set key_fields = [] -%}
    {%- for column in key -%}
        {%- do key_columns.append(adapter.quote(column)) -%}
        {%- do key_fields.append("'" ~ column ~ "': " ~ adapter.quote(column)) -%}
    {%- endfor -%}

    {#- (name, SQL that is true for a row that breaks the check) -#}
    {%- set checks = [] -%}

    {%- for column in not_null -%}
        {%- do checks.append(('not_null(' ~ column ~ ')', adapter.quote(column) ~ ' is null')) -%}
    {%- endfor -%}

    {%- for column, values in accepted_values.items() -%}
        {%- set literals = [] -%}
        {%- for value in values -%}
            {%- do literals.append("'" ~ (value | string | replace("'", "''")) ~ "'") -%}
        {%- endfor -%}
        {%- do checks.append((
            'accepted_values(' ~ column ~ ')',
            adapter.quote(column) ~ ' is not null and ' ~ adapter.quote(column)
            ~ ' not in (' ~ literals | join(', ') ~ ')'
        )) -%}
    {%- endfor -%}

    {%- for columns in unique -%}
        {%- set columns = [columns] if columns is string else columns -%}
        {%- set quoted = [] -%}
        {%- for column in columns -%}
            {%- do quoted.append(adapter.quote(column)) -%}
        {%- endfor -%}
        {%- do checks.append((
            'unique(' ~ columns | join(', ') ~ ')',
            'count(*) over (partition by ' ~ quoted | join(', ') ~ ') > 1'
        )) -%}
    {%- endfor -%}

    {%- for column, parent in relationships.items() -%}
        {%- do checks.append((
            'relationships(' ~ column ~ ' -> ' ~ parent.identifier ~ ')',
            adapter.quote(column) ~ ' is not null and not coalesce(' ~ adapter.quote(column)
            ~ ' in (select ' ~ adapter.quote(column) ~ ' from ' ~ parent ~ '), false)'
        )) -%}
    {%- endfor -%}

    {%- for name, expression in expressions.items() -%}
        {%- do checks.append((name, 'not coalesce((' ~ expression ~ '), false)')) -%}
    {%- endfor -%}

    {#- As reported, in the order of the columns below: failing_0 is the key's uniqueness. -#}
    {%- set check_names = ['unique(' ~ key | join(', ') ~ ')'] -%}
    {%- for name, failing in checks -%}
        {%- do check_names.append(name) -%}
    {%- endfor -%}

    with

    checked as (

        select
            {{ key_columns | join(', ') }}
            {%- for name, failing in checks %},
            {{ failing }} as check_{{ loop.index }}
            {%- endfor %}

        from {{ model }}

    ),

    per_key as (

        select
            {{ '{' ~ key_fields | join(', ') ~ '}' }} as key_values,
            count(*) as key_rows
            {%- for check in checks %},
            count(*) filter (where check_{{ loop.index }}) as check_{{ loop.index }}
            {%- endfor %}

        from checked

        group by {{ key_columns | join(', ') }}

    ),

    totals as (

        select
            cast(coalesce(sum(key_rows) filter (where key_rows > 1), 0) as bigint) as failing_0,
            min(key_values) filter (where key_rows > 1) as example_0
            {%- for check in checks %},
            cast(coalesce(sum(check_{{ loop.index }}), 0) as bigint) as failing_{{ loop.index }},
            min(key_values) filter (where check_{{ loop.index }} > 0) as example_{{ loop.index }}
            {%- endfor %}

        from per_key

    ),

    results as (

        select
            unnest([
                {%- for name in check_names %}
                {%- set i = loop.index0 %}
                {
                    'check_name': '{{ name | replace("'", "''") }}',
                    'failing_rows': failing_{{ i }},
                    'example_key': concat_ws(', '
                        {%- for column in key %},
                        '{{ column }}=' || coalesce(cast(example_{{ i }}['{{ column }}'] as varchar), 'null')
                        {%- endfor %})
                }{{ ',' if not loop.last }}
                {%- endfor %}
            ], recursive := true)

        from totals

    )

    select * from results

    where failing_rows > 0

{% endtest %}
