"""dbt, run from Prefect: ``dbt build`` over the build database.

By default dbt runs in-process through ``dbtRunner`` inside one Prefect task, and every
node's result (model, seed, test; status, time, message) is published as a Prefect table
artifact and logged; a failing test fails the task and the run, naming the test.
``HT_DBT_NODE_TASKS=true`` uses ``prefect_dbt.PrefectDbtRunner`` instead, which makes each
node a Prefect task of its own: richer in the UI, but measured 5-6x slower here (about 60 s
against 10 s for the project's ~200 nodes on 2 cores), too slow for a 15-minute schedule.
The dbt project reads its DuckDB path from ``HT_BUILD_DB``, set here from the settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _outcome(result: Any) -> DbtOutcome:
    rows = []
    for r in getattr(result.result, "results", None) or []:
        node = r.node
        rows.append(
            {
                "name": node.name,
                "unique_id": node.unique_id,
                "resource_type": str(node.resource_type),
                "status": str(r.status),
                "seconds": round(float(r.execution_time or 0.0), 3),
                "message": (r.message or "")[:300],
                "failures": r.failures,
            }
        )
    return DbtOutcome(success=bool(result.success), results=rows)


def run_dbt(settings: Settings, args: list[str], *, in_prefect: bool = False) -> DbtOutcome:
    """Invoke dbt with ``args`` (e.g. ``["build"]``).

    ``in_prefect`` with ``settings.dbt_node_tasks`` makes each node a Prefect task
    (``PrefectDbtRunner``); otherwise dbt runs as one call of plain ``dbtRunner``.
    """
    dbt_env(settings)
    project = str(settings.dbt_project_dir)
    target = settings.dbt_target_dir
    full_args = [
        *args,
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target-path",
        str(target),
        "--log-path",
        str(target.parent / "logs"),
    ]
    try:
        if in_prefect and settings.dbt_node_tasks:
            from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

            runner = PrefectDbtRunner(
                settings=PrefectDbtSettings(project_dir=Path(project), profiles_dir=Path(project)),
                raise_on_failure=False,
            )
            result = runner.invoke(full_args)
        else:
            from dbt.cli.main import dbtRunner

            result = dbtRunner().invoke(full_args)
    finally:
        release_database()
    return _outcome(result)


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
