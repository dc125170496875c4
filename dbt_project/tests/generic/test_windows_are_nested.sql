{#
    Windows nest at one instant: a position opened within 24h is also within 7d, 30d and all,
    so per key 24h <= 7d <= 30d <= all for every measure (USD values within a float
    tolerance). A fetch that straddles a state refresh can break this a little, so use it
    with severity warn. A key missing from a window is not compared for that window.
#}
{% test windows_are_nested(model, keys, measures) %}

    {%- set windows = ['24h', '7d', '30d', 'all'] -%}
    {%- set keys_csv = keys | map('tojson') | join(', ') -%}

    with

    pivoted as (

        select
            {{ keys_csv }},
            {% for measure in measures %}
                {% for window in windows %}
                    max(case when "window" = '{{ window }}' then {{ measure }} end)
                        as "{{ measure }}__{{ window }}",
                {% endfor %}
            {% endfor %}
            count(*) as n_windows

        from {{ model }}

        group by {{ keys_csv }}

    ),

    violations as (

        select *

        from pivoted

        where
            false
            {% for measure in measures %}
                {% for window in windows[:-1] %}
                    {%- set wider = windows[loop.index] %}
                    or "{{ measure }}__{{ window }}"
                    > "{{ measure }}__{{ wider }}"
                    + 0.01 + 1e-9 * abs("{{ measure }}__{{ wider }}")
                {% endfor %}
            {% endfor %}

    )

    select * from violations

{% endtest %}
