"""dbt, run from Prefect: ``dbt build`` over the build database.

By default dbt runs in-process through ``dbtRunner`` inside one Prefect task, and every
node's result (model, seed, test; status, time, message) is published as a Prefect table
artifact and logged; a failing test fails the task and the run, naming the test (and, for
a test that holds many checks, the checks that broke).
``HT_DBT_NODE_TASKS=true`` uses ``prefect_dbt.PrefectDbtRunner`` instead, which makes each
node a Prefect task of its own: richer in the UI, but measured 5-6x slower here (about 60 s
against 10 s when the project had ~200 nodes, on 2 cores), too slow for a 15-minute schedule.
The dbt project reads its DuckDB path from ``HT_BUILD_DB``, set here from the settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from flows.settings import Settings


@dataclass
class DbtOutcome:
    """What one dbt invocation did, node by node."""

    success: bool
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] in ("error", "fail", "runtime error")]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["status"] == "warn"]

    def count(self, resource_type: str) -> int:
        return sum(1 for r in self.results if r["resource_type"] == resource_type)


def dbt_env(settings: Settings) -> None:
    """Point dbt at the build database; keep it offline and quiet about usage stats."""
    os.environ["HT_BUILD_DB"] = str(settings.build_db_path)
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ.setdefault("DBT_PROFILES_DIR", str(settings.dbt_project_dir))


def _outcome(result: Any, database: Path) -> DbtOutcome:
    rows = []
    for r in getattr(result.result, "results", None) or []:
        node = r.node
        row = {
            "name": node.name,
            "unique_id": node.unique_id,
            "resource_type": str(node.resource_type),
            "status": str(r.status),
            "seconds": round(float(r.execution_time or 0.0), 3),
            "message": (r.message or "")[:300],
            "failures": r.failures,
        }
        flagged = row["resource_type"] == "test" and row["status"] in ("fail", "warn")
        if flagged:
            row["failing_checks"] = failing_checks(database, getattr(node, "compiled_code", None))
            if row["failing_checks"]:
                detail = "; ".join(
                    f"{c['check_name']}: {c['failing_rows']} row(s), e.g. {c['example_key']}"
                    for c in row["failing_checks"]
                )
                row["message"] = f"{row['message']}. Failing checks: {detail}"[:1000]
        rows.append(row)
    return DbtOutcome(success=bool(result.success), results=rows)


def failing_checks(database: Path, sql: str | None) -> list[dict[str, Any]]:
    """Which checks of a failed ``row_checks`` test broke, read again from the build database.

    One such test guards many rules of a model (dbt_project/tests/generic/test_row_checks.sql),
    and dbt only reports how many rows it returned; its rows name the checks. Run only for a
    test that failed or warned, after dbt let go of the file. Empty for other tests, or if the
    query cannot run again.
    """
    if not sql:
        return []
    try:
        con = duckdb.connect(str(database), read_only=True)
    except duckdb.Error:
        return []
    try:
        cursor = con.execute(f"select * from ({sql}) as failing limit 50")
        columns = [d[0] for d in cursor.description or []]
        if columns[:3] != ["check_name", "failing_rows", "example_key"]:
            return []
        return [dict(zip(columns[:3], row[:3], strict=True)) for row in cursor.fetchall()]
    except duckdb.Error:
        return []
    finally:
        con.close()


def run_dbt(settings: Settings, args: list[str], *, in_prefect: bool = False) -> DbtOutcome:
    """Invoke dbt with ``args`` (e.g. ``["build"]``).

    ``in_prefect`` with ``settings.dbt_node_tasks`` makes each node a Prefect task
    (``PrefectDbtRunner``); otherwise dbt runs as one call of plain ``dbtRunner``.
    """
    dbt_env(settings)
    project = str(settings.dbt_project_dir)
    target = settings.dbt_target_dir
    paths = [
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target-path",
        str(target),
        "--log-path",
        str(target.parent / "logs"),
    ]
    full_args = [*args, *paths]
    try:
        if in_prefect and settings.dbt_node_tasks:
            from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

            runner = PrefectDbtRunner(
                settings=PrefectDbtSettings(project_dir=Path(project), profiles_dir=Path(project)),
                raise_on_failure=False,
            )
            result = runner.invoke(full_args)
        else:
            result = _invoke_with_cached_manifest(settings, full_args, paths)
    finally:
        release_database()
    return _outcome(result, settings.build_db_path)


# The manifest of the newest plain-dbtRunner invocation and what it was parsed from. A
# long-lived process (``serve``) runs the same ``dbt build`` every time; parsing the project
# again, even partially, took about 0.6-0.8 s of each scheduled build (measured, 2 cores).
_cached_manifest: tuple[tuple[Any, ...], Any] | None = None


def _parse_inputs(settings: Settings, full_args: list[str]) -> tuple[Any, ...]:
    """Everything a parse reads: the arguments, the build database's path (its name is each
    relation's database), dbt's environment variables and every file of the project."""
    project = settings.dbt_project_dir
    skip = {"target", "logs", "dbt_packages"}
    files = []
    for folder, dirs, names in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith("."))
        for name in sorted(names):
            stat = os.stat(os.path.join(folder, name))
            files.append((os.path.join(folder, name), stat.st_size, stat.st_mtime_ns))
    dbt_vars = sorted((k, v) for k, v in os.environ.items() if k.startswith("DBT_"))
    return (tuple(full_args), str(settings.build_db_path), tuple(dbt_vars), tuple(files))


# Flags that change what a parse produces; they go to `dbt parse` with their values.
_PARSE_FLAGS = ("--vars", "--target", "-t", "--profile")


def _invoke_with_cached_manifest(settings: Settings, full_args: list[str], paths: list[str]) -> Any:
    """``dbtRunner`` with the manifest parsed for an identical earlier invocation, if any.

    Reused only while the arguments, the environment dbt sees and every project file (path,
    size, modification time) are unchanged, and dropped when an invocation ends in an
    exception rather than a result; otherwise dbt parses, as it always did.
    """
    global _cached_manifest
    from dbt.cli.main import dbtRunner

    inputs = _parse_inputs(settings, full_args)
    manifest = None
    if _cached_manifest is not None and _cached_manifest[0] == inputs:
        manifest = _cached_manifest[1]
        if any(os.environ.get(k) != v for k, v in manifest.env_vars.items()):
            manifest = None
    if manifest is None:
        _cached_manifest = None
        parse_args = ["parse", *paths]
        for i, arg in enumerate(full_args):
            if arg in _PARSE_FLAGS and i + 1 < len(full_args):
                parse_args += [arg, full_args[i + 1]]
            elif arg.startswith(tuple(f"{flag}=" for flag in _PARSE_FLAGS)):
                parse_args.append(arg)
        parsed = dbtRunner().invoke(parse_args)
        if not parsed.success or parsed.result is None:
            # Let the invocation itself report why the project does not parse.
            return dbtRunner().invoke(full_args)
        manifest = parsed.result
    result = dbtRunner(manifest=manifest).invoke(full_args)
    _cached_manifest = (inputs, manifest) if result.exception is None else None
    return result


def release_database() -> None:
    """Close the DuckDB file dbt-duckdb keeps open after a run (its ``keep_open`` default).

    In a long-lived process (``serve``) that handle would hold ``build.duckdb`` for good:
    other processes could not open it, and this process could not open it read-only.
    dbt-duckdb has no public call for it, hence the private attribute, guarded.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    env = getattr(DuckDBConnectionManager, "_ENV", None)
    if env is not None and hasattr(env, "close"):
        env.close()
    DuckDBConnectionManager._ENV = None
