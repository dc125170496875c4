{#
    No two rows share the combination of `combination` (a model's grain). dbt's built-in
    `unique` takes one column; the grain of most models here is several.
#}
{% test unique_combination_of_columns(model, combination) %}

    {%- set columns = [] -%}
    {%- for column in combination -%}
        {%- do columns.append(adapter.quote(column)) -%}
    {%- endfor %}

    select
        {{ columns | join(', ') }},
        count(*) as duplicate_rows

    from {{ model }}

    group by {{ columns | join(', ') }}

    having count(*) > 1

{% endtest %}
