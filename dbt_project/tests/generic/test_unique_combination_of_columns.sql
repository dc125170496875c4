{#
    The grain test: no two rows share the values of these columns (dbt_utils' test of the
    same name, written here because dbt deps cannot reach the package hub).
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

    {%- set columns_csv = combination_of_columns | map('tojson') | join(', ') -%}

    select
        {{ columns_csv }},
        count(*) as n_records

    from {{ model }}

    group by {{ columns_csv }}

    having count(*) > 1

{% endtest %}
