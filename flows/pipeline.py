"""The flows. Read top to bottom, they are the pipeline:

    snapshot   state -> four windows -> validate -> archive -> market -> lake
    warehouse  price history -> lake (read in place) -> load ledger -> dbt build -> publish
    elt        snapshot -> load -> dbt build -> publish, then price history (what the
               schedule runs: the candles it lands are built by the next run)
    report     analytics.duckdb -> the heatmap report (on its own, slower schedule)
    rebuild    archive -> lake -> warehouse, from the raw archive alone

Task results are never persisted (``persist_result=False``): the bodies they pass around
are already in the archive, and nothing that reaches Prefect's storage can carry the token.
The token never appears as a flow or task parameter; the client reads it from settings.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import atomic, mart_files, price_history, snapshot
from flows.alerts.task import deliver_alerts
from flows.hyperliquid.client import HyperliquidClient
from flows.hypertracker.client import HyperTrackerClient
from flows.lake import from_archive
from flows.lake.from_archive import archive_for
from flows.market import one_line
from flows.publish import PublishResult, publish
from flows.quota import Ledger, QuotaWouldBeExceeded, requests_per_run
from flows.runlock import RunLocked, run_lock
from flows.runlog import RunSummary, largest_bias_moves, record_run
from flows.settings import Settings, get_settings
from flows.transform import DbtOutcome, build
from flows.warehouse import (
    LoadResult,
    connect,
    hold_unpublished,
    load_lake,
    readmit,
    unpublished_loads,
    wipe_warehouse,
)

TASK_OPTS: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE}


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
    client: HyperTrackerClient, info: HyperliquidClient, settings: Settings, force: bool
) -> snapshot.SnapshotOutcome:
    """State -> windows (archived as they arrive) -> checks -> archive -> market -> lake."""
    return snapshot.take_snapshot(client, archive_for(settings), settings, info=info, force=force)


def run_snapshot(settings: Settings, *, force: bool) -> snapshot.SnapshotOutcome:
    """Fetch the current HyperTracker state's windows, archive them, land them in the lake.

    Ends early with "no new state" when the current state is already archived, unless
    ``force`` is set (the windows are then fetched again and the landing completed). Every
    request is written to the quota ledger before it is sent, whatever becomes of the run.
    Two tasks: ``elt_flow`` calls them as they are (a subflow would add a flow run of its
    own to every run: its creation, states and logs), ``snapshot_flow`` for a snapshot alone.
    """
    ledger = Ledger.open(settings)
    with (
        HyperTrackerClient(settings, on_request=ledger.record) as client,
        HyperliquidClient(settings) as info,
    ):
        refresh_segments(client, settings)
        return take_snapshot(client, info, settings, force)


@flow(name="hypertracker-snapshot")
def snapshot_flow(force: bool = False) -> snapshot.SnapshotOutcome:
    """One snapshot and nothing more, under the run lock (:func:`run_snapshot`)."""
    settings = get_settings()
    with run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="snapshot"):
        return run_snapshot(settings, force=force)


@task(name="price history", **TASK_OPTS)
def fetch_price_history(settings: Settings) -> price_history.PriceHistoryOutcome:
    """Candles and funding for the board's coins, only what the lake lacks (within the run's
    weight); never raises: a failure is reported and the run goes on."""
    log = get_run_logger()
    try:
        with HyperliquidClient(settings) as info:
            outcome = price_history.update(info, archive_for(settings), settings)
    except Exception as exc:
        log.warning("price history failed: %s (the next run tries again)", one_line(exc))
        return price_history.PriceHistoryOutcome(error=one_line(exc))
    if outcome.error:
        log.warning("price history stopped early: %s (the next run goes on)", outcome.error)
    log.info(
        "price history up to %s: %d coins, %d requests, weight %d, %d candles and %d funding "
        "rows landed in %.2fs%s",
        outcome.horizon, outcome.coins, outcome.requests, outcome.weight, outcome.candles,
        outcome.funding_rates, outcome.seconds,
        f"; {len(outcome.behind)} coin(s) left for the next run (weight per run)"
        if outcome.behind else "",
    )  # fmt: skip
    return outcome


# ---------------------------------------------------------------------------- warehouse


@task(name="load warehouse", **TASK_OPTS)
def load(settings: Settings) -> LoadResult:
    """Take the landed snapshots the warehouse does not have yet into ``lake.loads``."""
    result = load_lake(settings)
    if result.load_id is None:
        get_run_logger().info("nothing new in the lake to load")
    return result


def _dbt_build(settings: Settings, *, unit_tests: bool) -> DbtOutcome:
    """``dbt build``, each node's result logged and kept as a table artifact of the run."""
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
    return outcome


@task(name="dbt build", **TASK_OPTS)
def transform(settings: Settings, *, unit_tests: bool = False) -> DbtOutcome:
    """``dbt build``: seeds, models and data tests.

    A scheduled run builds the ``scheduled`` selector (dbt_project/selectors.yml: everything
    but dbt's unit tests, which check the models' logic on fixed rows, not the data); a
    rebuild runs the unit tests too.
    """
    return _dbt_build(settings, unit_tests=unit_tests)


def _failed(outcome: DbtOutcome) -> RuntimeError:
    names = ", ".join(f"{f['name']} ({f['status']})" for f in outcome.failures) or "see log"
    return RuntimeError(
        f"dbt build failed: {names}. Nothing was published: analysts keep the last good "
        "analytics database. Fix the cause, then run again (the load is kept)."
    )


@task(name="dbt build, holding back what fails", **TASK_OPTS)
def build_tested(settings: Settings, *, unit_tests: bool = False) -> tuple[DbtOutcome, list[str]]:
    """``dbt build``; if data tests fail, set the unpublished snapshots aside and build again.

    Returns the passing build and the snapshots held back. When the build without them
    fails too, the failure is not theirs (a model's error): they are taken back and the run
    fails, naming what failed.
    """
    outcome = _dbt_build(settings, unit_tests=unit_tests)
    if outcome.success:
        return outcome, []
    failed_tests = [f["name"] for f in outcome.failures if f["resource_type"] == "test"]
    if not failed_tests or len(failed_tests) < len(outcome.failures):
        raise _failed(outcome)
    log = get_run_logger()
    detail = "; ".join(f"{f['name']}: {f['message']}" for f in outcome.failures)
    with connect(settings.build_db_path) as con:
        held = hold_unpublished(con, failed_tests, detail)
        mart_files.roll_back(con)
    log.warning(
        "dbt tests failed (%s): %d unpublished snapshot(s) held back (%s); building without "
        "them. `ht status` lists them; `ht readmit` takes them back after a fix",
        ", ".join(failed_tests),
        len(held),
        ", ".join(held[:5]) + (" ..." if len(held) > 5 else ""),
    )
    retried = _dbt_build(settings, unit_tests=unit_tests)
    if not retried.success:
        with connect(settings.build_db_path) as con:
            readmit(con, held)
            load_lake(settings, con=con)
        raise _failed(retried)
    return retried, held


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
    """Price history -> lake -> DuckDB -> dbt build -> publish.

    For a warehouse wanted whole at once (the demo builds its history with it): the board's
    candles and funding come first, so that this publish holds them. The scheduled run
    (``elt_flow``) fetches them after its publish instead.
    """
    settings = get_settings()
    with run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="warehouse run"):
        prices = fetch_price_history(settings)
        loaded = load(settings)
        outcome, held = build_tested(settings)
        published = publish_task(settings)
    return {"prices": prices, "load": loaded, "dbt": outcome, "held": held, "publish": published}


@task(name="complete what earlier runs left", **TASK_OPTS)
def catch_up(settings: Settings) -> list[str]:
    """Set aside fetches a stopped run left, remove its temporary files, and land every
    archived snapshot the lake lacks; return the ids landed. Runs under the run lock."""
    log = get_run_logger()
    for folder in archive_for(settings).set_aside_interrupted():
        log.warning("an interrupted fetch was set aside in %s", folder)
    removed = sum(
        atomic.remove_stale_temporaries(root)
        for root in (settings.archive_dir, settings.lake_dir, settings.warehouse_dir)
    ) + atomic.remove_stale_temporaries(settings.state_dir, older_than_s=60)
    if removed:
        log.warning("removed %d temporary file(s) a stopped run left", removed)
    landed = from_archive.land_missing(settings)
    if price_history.land_unlanded(settings, archive_for(settings)):
        log.warning("landed archived price history a stopped run had not landed")
    return landed


def _nothing_to_publish(settings: Settings) -> bool:
    """True when every loaded snapshot is in the published analytics file."""
    if not settings.analytics_db_path.exists() or not settings.build_db_path.exists():
        return False
    with connect(settings.build_db_path) as con:
        newest, published = unpublished_loads(con)
    return newest == published


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
    """What the schedule runs: snapshot -> load -> dbt build -> publish, then price history,
    one writer at a time.

    Every run first completes what an earlier one left undone (a snapshot archived but not
    landed, a load not yet built, a build not yet published), whether or not the state has
    changed since. A run with nothing new and nothing pending skips the build and publish as
    "no new data"; one that would exceed the API quota, or finds another run still writing,
    does not start and says why. Snapshots whose rows fail a dbt test are held back, and the
    rest published.

    The price history (candles and funding up to the newest snapshot) comes last, in every
    run that started, so that a new state never waits for it: a first history, paced by
    ``HT_PRICE_HISTORY_WEIGHT_PER_RUN``, takes tens of seconds. What it lands is built and
    published by the next run that publishes (the next new state); until then the marts
    hold the candles up to the state before.
    """
    settings = get_settings()
    log = get_run_logger()
    summary = RunSummary(started_at=datetime.now(UTC))
    try:
        with run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="elt run"):
            with summary.step("quota"):
                check_quota(settings)
            with summary.step("catch up"):
                summary.caught_up = catch_up(settings)
            with summary.step("snapshot"):
                summary.snapshot = run_snapshot(settings, force=force)
            with summary.step("load"):
                summary.load = load(settings)
            if _nothing_to_publish(settings):
                summary.outcome = "no new data"
            else:
                with summary.step("dbt build"):
                    summary.dbt, summary.held = build_tested(settings)
                with summary.step("publish"):
                    summary.publish = publish_task(settings)
                summary.outcome = "published"
                summary.moves = largest_bias_moves(settings.analytics_db_path)
            # Alerts: the published events no channel has had yet, the new state's and those a
            # channel that was down missed; in every run, so a retry never waits for a new
            # state. Never fails the run.
            deliver_alerts(settings)
            with summary.step("price history"):
                summary.prices = fetch_price_history(settings)
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
        step = max(from_archive.BATCH, len(archive_for(settings).snapshot_ids()) // 20)
        count = from_archive.rebuild_lake(
            settings,
            progress=lambda i, n: (
                (i == n or i // step > (i - from_archive.BATCH) // step)
                and log.info("rebuilt %d of %d snapshots in the lake", i, n)
            ),
        )
        log.info("lake rebuilt from %d archived snapshots", count)
        # Backfilled states come from their own archive (archive/history): landed again
        # too, so a rebuild restores every layer `ht backfill` had filled. Imported here:
        # only a rebuild needs them, and every scheduled run imports this module.
        from flows.backfill.archive import HistoryArchive
        from flows.backfill.land import land_backfill

        history = HistoryArchive(settings.archive_dir, settings.quarantine_dir)
        if history.root.exists():
            landed = land_backfill(settings.lake_dir, history)
            log.info("lake: %d backfilled states landed again", landed.states)
        if lake_only:
            return {"snapshots": count}
        wipe_warehouse(settings)
        loaded = load(settings)
        outcome = transform(settings, unit_tests=True)
        if not outcome.success:
            raise _failed(outcome)
        published = publish_task(settings)
        return {"snapshots": count, "load": loaded, "dbt": outcome, "publish": published}


# ------------------------------------------------------------------------------ backfill


@flow(name="hypertracker-backfill-build")
def backfill_build_flow() -> dict[str, Any]:
    """After ``ht backfill`` landed states: warehouse and marts again, then publish.

    The warehouse is rebuilt, not loaded incrementally: backfilled states are older than
    the loads the incremental marts already hold, and their days must be recomputed whole.
    """
    settings = get_settings()
    with run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="backfill build"):
        wipe_warehouse(settings)
        loaded = load(settings)
        outcome = transform(settings)
        if not outcome.success:
            raise _failed(outcome)
        published = publish_task(settings)
        return {"load": loaded, "dbt": outcome, "publish": published}
