"""dbt, run from Prefect: ``dbt build`` over the build database, one Prefect task per node.

``prefect_dbt.PrefectDbtRunner`` turns every model, seed and test into a Prefect task, so
each result shows in the Prefect UI, and a failing test fails its task and the run. The
dbt project reads its DuckDB path from ``HT_BUILD_DB``, which is set here from the settings.
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


def run_dbt(settings: Settings, args: list[str], *, in_prefect: bool = True) -> DbtOutcome:
    """Invoke dbt with ``args`` (e.g. ``["build"]``).

    Inside a Prefect flow each node becomes a task (``PrefectDbtRunner``); outside one
    (docs generation, tests of the dbt project alone) plain ``dbtRunner`` is used.
    """
    dbt_env(settings)
    project = str(settings.dbt_project_dir)
    full_args = [*args, "--project-dir", project, "--profiles-dir", project]
    if in_prefect:
        from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

        runner = PrefectDbtRunner(
            settings=PrefectDbtSettings(project_dir=Path(project), profiles_dir=Path(project)),
            raise_on_failure=False,
        )
        result = runner.invoke(full_args)
    else:
        from dbt.cli.main import dbtRunner

        result = dbtRunner().invoke(full_args)
    return _outcome(result)
