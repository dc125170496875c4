"""dbt, run in-process: ``dbt build`` over the build database; and the snapshots' freshness,
judged by the thresholds the sources YAML gives dbt.

dbt runs through ``dbtRunner`` (one Python call; every node's result comes back as a row:
model, seed, test, status, time, message). ``HT_DBT_NODE_TASKS=true`` uses
``prefect_dbt.PrefectDbtRunner`` instead, which makes each node a Prefect task of its own:
richer in the UI, and much slower per node (bench/ measures it).

The dbt project reads its paths from the environment: ``HT_BUILD_DB`` (the DuckDB file) and
``HT_MARTS_DIR`` (where the daily marts' Parquet files go), set here from the settings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.settings import Settings

# What a scheduled run builds: dbt_project/selectors.yml.
SCHEDULED_SELECTOR = "scheduled"


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
    """Point dbt at the build database and the marts folder; keep it offline."""
    os.environ["HT_BUILD_DB"] = str(settings.build_db_path)
    os.environ["HT_MARTS_DIR"] = str(settings.marts_dir.resolve())
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ.setdefault("DBT_PROFILES_DIR", str(settings.dbt_project_dir))
    settings.marts_dir.mkdir(parents=True, exist_ok=True)


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


def run_dbt(settings: Settings, args: list[str], *, node_tasks: bool = False) -> DbtOutcome:
    """Invoke dbt with ``args`` (e.g. ``["build", "--selector", "scheduled"]``).

    ``node_tasks`` with ``settings.dbt_node_tasks`` makes each node a Prefect task
    (``PrefectDbtRunner``, inside a flow run); otherwise dbt runs as one ``dbtRunner`` call.
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
        if node_tasks and settings.dbt_node_tasks:
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


def build(settings: Settings, *, unit_tests: bool = False, node_tasks: bool = False) -> DbtOutcome:
    """``dbt build``: what the schedule builds, or everything with the unit tests too."""
    args = ["build"] if unit_tests else ["build", "--selector", SCHEDULED_SELECTOR]
    return run_dbt(settings, args, node_tasks=node_tasks)


@dataclass(frozen=True)
class Freshness:
    """How old the newest snapshot is, against the source's ``freshness:`` thresholds."""

    status: str  # dbt's words: pass, warn, error
    age_s: float
    warn_after_s: float | None
    error_after_s: float | None


# The periods dbt's freshness thresholds count in, in seconds.
PERIOD_S = {"minute": 60, "hour": 3600, "day": 86400}


def freshness_thresholds(
    settings: Settings, source: str = "hypertracker", table: str = "snapshots"
) -> tuple[float | None, float | None] | None:
    """(warn_after, error_after) in seconds of a source table, as the sources YAML set them
    when dbt last parsed the project (its manifest); None before any build."""
    path = settings.dbt_target_dir / "manifest.json"
    if not path.exists():
        return None
    for node in json.loads(path.read_bytes()).get("sources", {}).values():
        if (node.get("source_name"), node.get("name")) == (source, table):
            config = node.get("freshness") or {}
            return _seconds(config.get("warn_after")), _seconds(config.get("error_after"))
    return None


def _seconds(threshold: dict[str, Any] | None) -> float | None:
    if not threshold or not threshold.get("count") or not threshold.get("period"):
        return None
    return float(threshold["count"] * PERIOD_S[threshold["period"]])


def snapshot_freshness(settings: Settings, age_s: float) -> Freshness | None:
    """The verdict ``dbt source freshness`` gives a newest snapshot ``age_s`` old.

    Computed here rather than by running dbt after every publish: that is a second dbt
    start and parse per run for a comparison of two numbers. The thresholds stay in the
    sources YAML, where dbt's docs site shows them and ``dbt source freshness`` reads them.
    """
    thresholds = freshness_thresholds(settings)
    if thresholds is None:
        return None
    warn_s, error_s = thresholds
    # As dbt judges it: a threshold is crossed once the age exceeds it.
    if error_s is not None and age_s > error_s:
        status = "error"
    elif warn_s is not None and age_s > warn_s:
        status = "warn"
    else:
        status = "pass"
    return Freshness(status=status, age_s=age_s, warn_after_s=warn_s, error_after_s=error_s)


def release_database() -> None:
    """Close the DuckDB file dbt-duckdb keeps open after a run (its ``keep_open`` default).

    In a long-lived process that handle would hold ``build.duckdb`` for good: other
    processes could not open it, and this process could not open it read-only. dbt-duckdb
    has no public call for it, hence the private attribute, guarded.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    env = getattr(DuckDBConnectionManager, "_ENV", None)
    if env is not None and hasattr(env, "close"):
        env.close()
    DuckDBConnectionManager._ENV = None
