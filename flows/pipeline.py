"""The flows. Read top to bottom, they are the pipeline:

    snapshot   state -> four windows -> validate -> archive -> lake
    warehouse  lake (read in place) -> load ledger -> dbt build -> publish analytics.duckdb
    elt        snapshot, then warehouse (what the schedule runs)
    report     analytics.duckdb -> the heatmap report (on its own, slower schedule)
    rebuild    archive -> lake -> warehouse, from the raw archive alone

Task results are never persisted (``persist_result=False``): the bodies they pass around
are already in the archive, and nothing that reaches Prefect's storage can carry the token.
The token never appears as a flow or task parameter; the client reads it from settings.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import snapshot
from flows.hypertracker.client import HyperTrackerClient
from flows.lake import parquet
from flows.lake.archive import RawArchive, SnapshotManifest, parse_iso, read_zst
from flows.publish import PublishResult, publish
from flows.quota import Ledger, QuotaWouldBeExceeded, requests_per_run
from flows.runlock import RunLocked, run_lock
from flows.runlog import RunSummary, largest_bias_moves, record_run
from flows.settings import Settings, get_settings
from flows.transform import DbtOutcome, build, source_freshness
from flows.warehouse import LoadResult, load_lake, wipe_warehouse

TASK_OPTS: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE}


def archive_for(settings: Settings) -> RawArchive:
    return RawArchive(settings.archive_dir, settings.quarantine_dir)


# ----------------------------------------------------------------------------- snapshot


def _state_kept_moving(task: Any, run: Any, state: Any) -> bool:
    try:
        state.result()
    except snapshot.StateKeptMoving:
        return True
    except Exception:
        return False
    return False


@task(name="refresh cohort ladder", **TASK_OPTS)
def refresh_segments(client: HyperTrackerClient, settings: Settings) -> bool:
    """Fetch ``/segments`` when the stored ladder is older than the refresh interval."""
    return snapshot.refresh_segments(client, archive_for(settings), settings, now=datetime.now(UTC))


# The client already retries every request (backoff, Retry-After, bounded); a task retry
# on top would only multiply the wait. The one failure a later attempt can cure is a
# state that kept moving through every refetch: that task waits and tries once more.
@task(
    name="take snapshot",
    retries=1,
    retry_delay_seconds=60,
    retry_condition_fn=_state_kept_moving,
    **TASK_OPTS,
)
def take_snapshot(
    client: HyperTrackerClient, settings: Settings, force: bool
) -> snapshot.SnapshotOutcome:
    """State -> windows (archived as they arrive) -> checks -> archive -> lake."""
    return snapshot.take_snapshot(client, archive_for(settings), settings, force=force)


@flow(name="hypertracker-snapshot")
def snapshot_flow(force: bool = False) -> snapshot.SnapshotOutcome:
    """Fetch the current HyperTracker state's windows, archive them, land them in the lake.

    Ends early with "no new state" when the current state is already archived, unless
    ``force`` is set (the windows are then fetched again and the landing completed). Every
    request made is written to the quota ledger, whether the run succeeds or not.
    """
    settings = get_settings()
    ledger = Ledger.open(settings)
    with HyperTrackerClient(settings) as client:
        try:
            refresh_segments(client, settings)
            return take_snapshot(client, settings, force)
        finally:
            ledger.record(client.request_count)


# ---------------------------------------------------------------------------- warehouse


@task(name="load warehouse", **TASK_OPTS)
def load(settings: Settings) -> LoadResult:
    """Take the landed snapshots the warehouse does not have yet into ``lake.loads``."""
    result = load_lake(settings)
    if result.load_id is None:
        get_run_logger().info("nothing new in the lake to load")
    return result


@task(name="dbt build", **TASK_OPTS)
def transform(settings: Settings, *, unit_tests: bool = False) -> DbtOutcome:
    """``dbt build``: seeds, models and data tests; each node's result becomes an artifact row.

    A scheduled run builds the ``scheduled`` selector (dbt_project/selectors.yml: everything
    but dbt's unit tests, which check the models' logic on fixed rows, not the data); a
    rebuild runs the unit tests too.
    """
    outcome = build(settings, unit_tests=unit_tests, node_tasks=True)
    log = get_run_logger()
    for node in outcome.failures + outcome.warnings:
        log.warning("dbt %s %s: %s", node["status"], node["name"], node["message"])
    log.info(
        "dbt build: %d models, %d tests, %d warnings, %d failures",
        outcome.count("model"),
        outcome.count("test") + outcome.count("unit_test"),
        len(outcome.warnings),
        len(outcome.failures),
    )
    create_table_artifact(
        key="dbt-build-results",
        table=[
            {k: node[k] for k in ("resource_type", "name", "status", "seconds", "message")}
            for node in outcome.results
        ],
        description="dbt build: every model, seed and test of this run",
    )
    if not outcome.success:
        names = ", ".join(f"{f['name']} ({f['status']})" for f in outcome.failures) or "see log"
        raise RuntimeError(
            f"dbt build failed: {names}. Nothing was published: analysts keep the last good "
            "analytics database. Fix the cause, then run again (the load is kept)."
        )
    return outcome


@task(name="source freshness", **TASK_OPTS)
def freshness(settings: Settings) -> str:
    """``dbt source freshness`` of the snapshots (thresholds in the sources YAML), for status."""
    result = source_freshness(settings)
    status = result.status if result else "unknown"
    get_run_logger().info("snapshots freshness: %s", status)
    return status


@task(name="publish", **TASK_OPTS)
def publish_task(settings: Settings) -> PublishResult:
    """Write a fresh ``analytics.duckdb`` for analysts and rename it into place."""
    result = publish(settings)
    get_run_logger().info(
        "published %s (load %d) in %.2fs: %d views, %d tables copied",
        result.path,
        result.load_id,
        result.seconds,
        result.views,
        len(result.tables),
    )
    return result


@flow(name="hypertracker-report")
def report_flow() -> str:
    """The heatmap report from the newest publish: ``reports/latest.html`` plus the day's copy.

    Its own schedule, apart from the ELT run: rendering the PNGs takes several seconds of
    CPU, and a run's job is to get the new snapshot into analysts' hands, not to draw it.
    A report that already shows the newest published snapshot is not drawn again.
    """
    from flows.analyst import prune_reports, write_report
    from flows.analyst.data import connect, latest_snapshot
    from flows.analyst.report import keep_day_close

    settings = get_settings()
    log = get_run_logger()
    if not settings.analytics_db_path.exists():
        log.warning("nothing published yet (%s): no report", settings.analytics_db_path)
        return "nothing published yet"
    with connect(settings.analytics_db_path) as con:
        newest_id, as_of = latest_snapshot(con)
    if (settings.reports_dir / f"{as_of:%Y-%m-%d}" / f"{newest_id}.html").exists():
        log.info("the report already shows the newest snapshot %s", newest_id)
        return "up to date"
    path = write_report(settings)
    keep_day_close(settings.reports_dir)
    prune_reports(settings.reports_dir, keep_days=settings.reports_keep_days)
    log.info("report written: %s", path)
    return str(path)


@flow(name="hypertracker-warehouse")
def warehouse_flow() -> dict[str, Any]:
    """Lake -> DuckDB -> dbt build -> publish."""
    settings = get_settings()
    loaded = load(settings)
    outcome = transform(settings)
    published = publish_task(settings)
    freshness(settings)
    return {"load": loaded, "dbt": outcome, "publish": published}


@task(name="check quota", **TASK_OPTS)
def check_quota(settings: Settings) -> int:
    """Refuse to start a run that would spend more requests than the plan has left."""
    archive = archive_for(settings)
    newest = archive.latest_segments_fetch()
    due = newest is None or (datetime.now(UTC) - newest).total_seconds() >= (
        settings.segments_refresh_hours * 3600
    )
    needed = requests_per_run(settings, with_segments=due)
    Ledger.open(settings).check(settings, needed)
    return needed


@flow(name="hypertracker-elt")
def elt_flow(force: bool = False) -> RunSummary:
    """What the schedule runs: snapshot -> load -> dbt build -> publish, one writer at a time.

    A run that finds no new state ends quickly as "no new data"; one that would exceed the
    API quota, or finds another run still writing, does not start and says why.
    """
    settings = get_settings()
    log = get_run_logger()
    summary = RunSummary(started_at=datetime.now(UTC))
    try:
        with run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="elt run"):
            with summary.step("quota"):
                check_quota(settings)
            with summary.step("snapshot"):
                summary.snapshot = snapshot_flow(force=force)
            if not summary.snapshot.stored:
                summary.outcome = "no new data"
                return summary
            with summary.step("load"):
                summary.load = load(settings)
            with summary.step("dbt build"):
                summary.dbt = transform(settings)
            with summary.step("publish"):
                summary.publish = publish_task(settings)
            summary.outcome = "published"
            freshness(settings)
            summary.moves = largest_bias_moves(settings.analytics_db_path)
    except (QuotaWouldBeExceeded, RunLocked) as exc:
        log.warning("%s", exc)
        summary.outcome = f"skipped: {exc}"
    except BaseException as exc:
        summary.outcome = "failed"
        summary.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        summary.finished_at = datetime.now(UTC)
        record_run(settings, summary)
    return summary


# ------------------------------------------------------------------------------ rebuild


# Snapshots typed per DuckDB pass in a rebuild: enough to amortise a pass's fixed cost,
# few enough that a batch's rows (~15k per snapshot) stay small.
REBUILD_BATCH = 24


def rebuild_lake(
    settings: Settings,
    *,
    progress: Callable[[int, int], None] | None = None,
    verify: bool = True,
) -> int:
    """Land every archived snapshot and ladder fetch in the lake again.

    Snapshots already in the lake are skipped (landing is deterministic), so an interrupted
    rebuild resumes where it stopped. With ``verify`` each batch's bodies are checked against
    the sha256 their manifest recorded, in a thread beside DuckDB's reading, before anything
    of the batch lands. A batch's files are written by two threads (pyarrow lets go of the
    GIL while it encodes).
    """
    archive = archive_for(settings)
    manifests = list(archive.manifests())
    todo = [
        m
        for m in manifests
        if not parquet.lake_path(settings.lake_dir, "snapshots", m.snapshot_id).exists()
    ]
    done = len(manifests) - len(todo)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rebuild") as pool:
        for start in range(0, len(todo), REBUILD_BATCH):
            batch = todo[start : start + REBUILD_BATCH]
            verified = pool.submit(_verify_bodies, archive, batch) if verify else None
            rows = snapshot.archived_rows(archive, batch)
            if verified is not None:
                verified.result()  # raises if a body does not match its manifest
            landed = [
                pool.submit(snapshot.land, settings.lake_dir, m, rows[m.snapshot_id]) for m in batch
            ]
            for future in landed:
                future.result()
            done += len(batch)
            if progress:
                progress(done, len(manifests))
    for folder, record in archive.segment_fetches():
        fetched_at = parse_iso(record.fetched_at)
        assert fetched_at is not None
        parquet.land_segments(settings.lake_dir, read_zst(folder / record.file), fetched_at)
    return len(manifests)


def _verify_bodies(archive: RawArchive, manifests: list[SnapshotManifest]) -> None:
    for manifest in manifests:
        for window in manifest.bodies:
            archive.read_body(manifest, window)  # checks the sha256; the bytes are dropped


@flow(name="hypertracker-rebuild")
def rebuild_flow(lake_only: bool = False, fresh_lake: bool = False) -> dict[str, Any]:
    """Archive -> lake -> warehouse -> marts, from the raw archive alone.

    ``fresh_lake`` deletes the lake first (for a lake that is suspect); otherwise existing
    lake files are kept and the rebuild resumes. The warehouse is always rebuilt from
    scratch: the load is one transaction, so an interrupted rebuild simply runs again.
    """
    settings = get_settings()
    log = get_run_logger()
    with run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="rebuild"):
        if fresh_lake and settings.lake_dir.exists():
            shutil.rmtree(settings.lake_dir)
        step = max(REBUILD_BATCH, len(list(archive_for(settings).manifests())) // 20)
        count = rebuild_lake(
            settings,
            progress=lambda i, n: (
                (i == n or i // step > (i - REBUILD_BATCH) // step)
                and log.info("rebuilt %d of %d snapshots in the lake", i, n)
            ),
        )
        log.info("lake rebuilt from %d archived snapshots", count)
        if lake_only:
            return {"snapshots": count}
        wipe_warehouse(settings)
        loaded = load(settings)
        outcome = transform(settings, unit_tests=True)
        published = publish_task(settings)
        return {"snapshots": count, "load": loaded, "dbt": outcome, "publish": published}
