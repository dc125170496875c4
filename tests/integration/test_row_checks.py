"""The consolidated data test (dbt_project/tests/generic/test_row_checks.sql) fails when it should.

One ``row_checks`` test stands for many single-rule tests of a model, so it must catch every
kind of rule it replaced, name the check that broke and count its rows. A tiny dbt project,
built here with the project's own macro files, gives it a model with bad rows of each kind and
a clean model that must pass; the build goes through ``flows.transform.run_dbt``, as the
pipeline's does, so the failing checks must also reach the run's message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.settings import PROJECT_ROOT, get_settings
from flows.transform import run_dbt

pytestmark = pytest.mark.integration

DBT_PROJECT = PROJECT_ROOT / "dbt_project"

PROJECT_YML = """
name: row_checks_probe
version: "1.0.0"
config-version: 2
profile: row_checks_probe
models:
  row_checks_probe:
    +materialized: table
"""

PROFILES_YML = """
row_checks_probe:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('HT_BUILD_DB') }}"
      threads: 1
"""

# Key (id, window). One clean row per batch 1, then a row per broken rule in batch 2.
BAD_ROWS = """
select * from (values
    (1, 1, 'all', 1, 'a', 1, 1, 2),
    (2, 2, 'all', 2, 'b', 1, 1, 2),
    (2, 2, 'all', 1, 'c', 1, 1, 2),      -- the key twice
    (3, 2, 'hour', 1, 'd', 1, 1, 2),     -- a window not accepted
    (4, 2, 'all', null, 'e', 1, 1, 2),   -- segment_id NULL (the relationship lets NULL pass)
    (5, 2, 'all', 9, 'f', 1, 1, 2),      -- segment 9 is not in parents
    (6, 2, 'all', 1, 'a', 1, 1, 2),      -- slug a again (batch 1 has it)
    (7, 2, 'all', 1, 'g', 1, 1, 3),      -- a + b != total
    (8, 2, 'all', 1, 'h', null, 1, 2),   -- a + b NULL: fails, as in expression_is_true
    (9, 2, null, 1, 'i', 1, 1, 2)        -- window NULL (accepted_values lets NULL pass)
) as t(id, batch, "window", segment_id, slug, a, b, total)
"""

GOOD_ROWS = """
select * from (values
    (1, 1, 'all', 1, 'a', 1, 1, 2),
    (1, 1, '24h', 2, 'b', 0, 1, 1)
) as t(id, batch, "window", segment_id, slug, a, b, total)
"""

PARENTS = "select * from (values (1), (2)) as t(segment_id)"

CHECKS = """
          arguments:
            key: [id, window]
            not_null: [window, segment_id]
            unique: [slug]
            accepted_values:
              window: ["24h", "7d", "30d", "all"]
            relationships:
              segment_id: ref('parents')
            expressions:
              adds_up: "a + b = total"
"""

SCHEMA_YML = f"""
version: 2
models:
  - name: parents
  - name: bad
    data_tests:
      - row_checks:
          name: bad_checks
{CHECKS}
      - row_checks:
          name: bad_checks_newest_batch
{CHECKS}
          config:
            where: "newest:batch"
      - row_checks:
          name: bad_checks_warn_only
          arguments:
            key: [id, slug]
            expressions:
              adds_up: "a + b = total"
          config:
            severity: warn
  - name: good
    data_tests:
      - row_checks:
          name: good_checks
{CHECKS}
"""


@pytest.fixture
def probe_project(tmp_path: Path) -> Path:
    project = tmp_path / "probe"
    for folder in ("models", "macros", "tests/generic"):
        (project / folder).mkdir(parents=True)
    (project / "dbt_project.yml").write_text(PROJECT_YML)
    (project / "profiles.yml").write_text(PROFILES_YML)
    # The project's own files, so that what is tested is what runs.
    shutil.copy(DBT_PROJECT / "tests/generic/test_row_checks.sql", project / "tests/generic")
    shutil.copy(DBT_PROJECT / "macros/get_where_subquery.sql", project / "macros")
    (project / "models/parents.sql").write_text(PARENTS)
    (project / "models/bad.sql").write_text(BAD_ROWS)
    (project / "models/good.sql").write_text(GOOD_ROWS)
    (project / "models/schema.yml").write_text(SCHEMA_YML)
    return project


def test_row_checks_fail_per_check_with_counts_and_an_example(
    tmp_path: Path, probe_project: Path
) -> None:
    settings = get_settings(data_dir=tmp_path / "data", dbt_project_dir=probe_project)
    settings.build_db_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = run_dbt(settings, ["build"])
    by_name = {r["name"]: r for r in outcome.results}

    assert not outcome.success
    assert by_name["good_checks"]["status"] == "pass"
    assert [f["name"] for f in outcome.failures] == ["bad_checks", "bad_checks_newest_batch"]

    failing = {
        c["check_name"]: (c["failing_rows"], c["example_key"])
        for c in by_name["bad_checks"]["failing_checks"]
    }
    assert failing == {
        "unique(id, window)": (2, "id=2, window=all"),
        "not_null(window)": (1, "id=9, window=null"),
        "not_null(segment_id)": (1, "id=4, window=all"),
        "accepted_values(window)": (1, "id=3, window=hour"),
        "unique(slug)": (2, "id=1, window=all"),
        "relationships(segment_id -> parents)": (1, "id=5, window=all"),
        "adds_up": (2, "id=7, window=all"),
    }
    # The run's message names each failing check, as the separate tests' names used to.
    message = by_name["bad_checks"]["message"]
    assert "adds_up: 2 row(s), e.g. id=7, window=all" in message
    assert "relationships(segment_id -> parents)" in message

    # Scoped to the newest batch, batch 1's row no longer shares slug a with row 6.
    scoped = {c["check_name"] for c in by_name["bad_checks_newest_batch"]["failing_checks"]}
    assert scoped == set(failing) - {"unique(slug)"}

    # Severity is the test's: a warning names its checks too, and does not fail the build.
    warned = by_name["bad_checks_warn_only"]
    assert warned["status"] == "warn"
    assert warned["failing_checks"] == [
        {"check_name": "adds_up", "failing_rows": 2, "example_key": "id=7, slug=g"}
    ]


def test_every_row_check_is_documented_on_its_model(tmp_path: Path) -> None:
    """The docs site lists each model's checks: the test's description, also in the model's."""
    from dbt.cli.main import dbtRunner

    project = str(DBT_PROJECT)
    args = ["parse", "--project-dir", project, "--profiles-dir", project, "--target", "lint"]
    args += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    parsed = dbtRunner().invoke(args)
    assert parsed.success, parsed.exception
    manifest = parsed.result
    tests = [
        node
        for node in manifest.nodes.values()
        if getattr(node, "test_metadata", None) is not None
        and node.test_metadata.name == "row_checks"
    ]
    assert len(tests) >= 15
    undocumented = []
    for test in tests:
        kwargs = test.test_metadata.kwargs
        parent_id = test.attached_node or next(
            n for n in test.depends_on.nodes if n.startswith("source.")
        )
        parent = manifest.nodes.get(parent_id) or manifest.sources[parent_id]
        unique = [
            c for cs in kwargs.get("unique", []) for c in ([cs] if isinstance(cs, str) else cs)
        ]
        names = [
            test.name,
            *kwargs["key"],
            *kwargs.get("not_null", []),
            *(f"accepted_values({c})" for c in kwargs.get("accepted_values", {})),
            *unique,
            *kwargs.get("relationships", {}),
            *kwargs.get("expressions", {}),
        ]
        missing = [name for name in names if name not in test.description]
        if missing or test.description.strip() not in parent.description:
            undocumented.append((test.name, missing))
    assert not undocumented, undocumented
