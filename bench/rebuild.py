"""Child process: ``flows.pipeline.rebuild_flow`` over an archive, step by step.

``python -m bench.rebuild OUT.json`` with ``HT_DATA_DIR`` set. The flow runs as ``ht
rebuild`` runs it (Prefect, a fresh process); the steps it calls are wrapped with timers
(the flow looks them up by name when it runs), so the report can say where the time went.
The size of ``build.duckdb`` right after the load (raw tables only, before dbt) is kept
for the storage section.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import say, write_json


def main(out: Path) -> None:
    started = time.perf_counter()
    from flows import pipeline
    from flows.settings import get_settings

    imported = time.perf_counter()
    settings = get_settings()
    steps: dict[str, float] = {}
    facts: dict[str, Any] = {}

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                steps[name] = round(time.perf_counter() - t, 3)
                say("rebuild", f"{name}: {steps[name]:.1f}s")

        return wrapper

    original_rebuild_lake = pipeline.from_archive.rebuild_lake

    def rebuild_lake(settings: Any, *, progress: Any = None) -> int:
        every = max(1, len(pipeline.archive_for(settings).snapshot_ids()) // 10)

        def report(i: int, n: int) -> None:
            if progress:
                progress(i, n)
            if i % every == 0 or i == n:
                say("rebuild", f"lake: {i}/{n} snapshots")

        return original_rebuild_lake(settings, progress=report)

    original_load = pipeline.load

    def load(settings: Any) -> Any:
        result = original_load(settings)
        path = settings.build_db_path
        facts["raw_duckdb_bytes"] = path.stat().st_size
        facts["snapshots"] = len(result.snapshot_ids)
        return result

    pipeline.from_archive.rebuild_lake = timed("lake from archive", rebuild_lake)
    pipeline.wipe_warehouse = timed("wipe warehouse", pipeline.wipe_warehouse)
    pipeline.load = timed("load", load)
    pipeline.transform = timed("dbt build", pipeline.transform)
    pipeline.publish_task = timed("publish", pipeline.publish_task)

    t = time.perf_counter()
    result = pipeline.rebuild_flow(fresh_lake=True)
    flow_s = time.perf_counter() - t
    dbt = result["dbt"]
    write_json(
        out,
        {
            "snapshots": result["snapshots"],
            "flow_seconds": round(flow_s, 3),
            "import_seconds": round(imported - started, 3),
            "steps": steps,
            # Prefect: the temporary API server's start and the flow run's bookkeeping.
            "prefect_overhead_seconds": round(flow_s - sum(steps.values()), 3),
            "dbt_success": dbt.success,
            "dbt_nodes": len(dbt.results),
            "dbt_node_seconds": round(sum(r["seconds"] for r in dbt.results), 3),
            "dbt_slowest": [
                {"name": r["name"], "type": r["resource_type"], "seconds": r["seconds"]}
                for r in sorted(dbt.results, key=lambda r: -r["seconds"])[:8]
            ],
            "data_dir": str(settings.data_dir),
            **facts,
        },
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
