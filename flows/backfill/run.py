"""``ht backfill``: plan, confirm, fetch into the history archive, land, then build.

The steps, in order: the coins (named, or the top N by open interest in the newest live
heatmap), the plan (flows/backfill/plan.py) printed and confirmed, the fetch under the run
lock (every request in the quota ledger; the budget of the scheduled runs kept), landing
from the archive, and the usual load + dbt build + publish. The plan's ``end`` is chosen
once, the API's newest state (one ``/state/status`` request, deep only), and kept in
``state/backfill.json``, so a resume asks the same queries and its checkpoints hold (a
cursor is only valid for the query that produced it). The progress bar's ETA counts the
calls left at the rate limit (``plan.eta_s``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from flows import atomic
from flows.backfill.archive import HistoryArchive
from flows.backfill.fetch import Budget, fetch_deep, fetch_quick
from flows.backfill.land import Comparison, Landed, compare_with_live, land_backfill
from flows.backfill.plan import Depth, Plan, eta_s, plan_backfill
from flows.hypertracker.client import HyperTrackerClient
from flows.hypertracker.history import HISTORY_START, MAX_LIMIT, HistoryClient
from flows.hypertracker.payload import parse_heatmap
from flows.lake.archive import iso, parse_iso
from flows.quota import Ledger
from flows.runlock import run_lock
from flows.settings import Settings

STATE_FILE = "backfill.json"


class BackfillRefused(RuntimeError):
    """The plan does not fit, or the user said no: nothing was fetched."""


@dataclass(frozen=True, slots=True)
class Options:
    depth: Depth
    coins: tuple[str, ...]
    top: int | None
    windows: tuple[str, ...] | None
    start: datetime | None
    page_limit: int = MAX_LIMIT


@dataclass
class Outcome:
    plan: Plan
    pages: int
    landed: Landed
    comparison: Comparison
    paused: str | None
    problems: list[str]


def top_coins(settings: Settings, n: int, client: HyperTrackerClient | None) -> list[str]:
    """The ``n`` coins of largest open interest (window all) in the newest live heatmap of
    the lake; with none landed yet, from one heatmap request."""
    files = str(settings.lake_dir / "heatmap_coins" / "date=*" / "*.parquet")
    if any((settings.lake_dir / "heatmap_coins").glob("date=*/*.parquet")):
        with duckdb.connect() as con:
            rows = con.execute(
                f"""select coin from read_parquet('{files}')
                where "window" = 'all'
                qualify snapshot_id = max(snapshot_id) over ()
                order by total_value desc, coin limit ?""",
                [n],
            ).fetchall()
        if rows:
            return [r[0] for r in rows]
    if client is None:
        raise BackfillRefused("no live heatmap yet to rank the coins: name them with --coins")
    fetched = client.heatmap("all")
    payload = parse_heatmap(fetched.body, "all", fetched.url)
    ranked = sorted(payload.coins, key=lambda c: (-c["totalValue"], c["coin"]))
    return [c["coin"] for c in ranked[:n]]


def _end(settings: Settings, plan_key: dict, newest: Callable[[], datetime]) -> datetime:
    """The end of the queries: the unfinished backfill's of the same options, else
    ``newest()`` (asked only then)."""
    path = settings.state_dir / STATE_FILE
    if path.exists():
        held = json.loads(path.read_bytes())
        if held.get("key") == plan_key and not held.get("done"):
            end = parse_iso(held["end"])
            assert end is not None
            return end
    end = newest()
    atomic.write_bytes(path, json.dumps({"key": plan_key, "end": iso(end), "done": False}).encode())
    return end


class _EtaColumn(TimeRemainingColumn):
    """The time left at the rate limit (or at the pace so far when slower): :func:`eta_s`."""

    def __init__(self, requests_per_minute: int) -> None:
        super().__init__()
        self._per_minute = requests_per_minute

    def render(self, task: Task) -> Text:
        if task.finished or task.remaining is None:
            return super().render(task)
        left = int(eta_s(task.remaining, self._per_minute, task.time_remaining))
        hours, rest = divmod(left, 3600)
        return Text(f"{hours:d}:{rest // 60:02d}:{rest % 60:02d}", style="progress.remaining")


def _finish(settings: Settings) -> None:
    path = settings.state_dir / STATE_FILE
    if path.exists():
        held = json.loads(path.read_bytes())
        atomic.write_bytes(path, json.dumps({**held, "done": True}).encode())


def run_backfill(
    settings: Settings,
    options: Options,
    *,
    console: Console,
    progress_console: Console,
    confirm: Callable[[], bool] | None,
    force: bool,
    build: Callable[[], None],
) -> Outcome:
    """The whole command (see the module). ``confirm`` None: --yes."""
    ledger = Ledger.open(settings)
    with HyperTrackerClient(settings, on_request=ledger.record) as client:
        coins = list(options.coins) or top_coins(settings, options.top or 5, client)
        start = options.start or min(HISTORY_START.values())
        windows = options.windows
        key = {
            "depth": options.depth,
            "coins": coins,
            "windows": list(windows or settings.windows),
            "start": iso(start),
            "limit": options.page_limit,
        }
        now = datetime.now(UTC).replace(microsecond=0)
        # Deep queries end at the API's newest state, on the API's clock (a simulator's may be
        # weeks from ours); the quota's day and month are ours. Quick needs no end.
        newest = (lambda: client.status().last_update) if options.depth == "deep" else lambda: now
        end = _end(settings, key, newest)
        plan = plan_backfill(
            settings,
            ledger,
            depth=options.depth,
            coins=coins,
            windows=windows,
            start=start,
            now=now,
            end=end,
            page_limit=options.page_limit,
        )
        for line in plan.lines():
            console.print(line, soft_wrap=True, highlight=False)
        if not plan.fits and not force:
            raise BackfillRefused(
                "the plan does not fit the quota the scheduled runs need; choose less, or "
                "pass --force to spend their share"
            )
        if confirm is not None and not confirm():
            raise BackfillRefused("not confirmed: nothing was fetched")
        archive = HistoryArchive(settings.archive_dir, settings.quarantine_dir)
        budget = Budget(settings, ledger, plan)
        with (
            run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="backfill"),
            HistoryClient(client) as history,
            Progress(
                TextColumn("backfill {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                _EtaColumn(settings.requests_per_minute),
                console=progress_console,
                transient=False,
            ) as bar,
        ):
            task = bar.add_task(options.depth, total=max(plan.calls, 1))

            def advance(n: int) -> None:
                bar.advance(task, n)

            if options.depth == "quick":
                fetched = fetch_quick(history, archive, plan, budget=budget, advance=advance)
            else:
                fetched = fetch_deep(
                    history,
                    archive,
                    plan,
                    end=end,
                    limit=options.page_limit,
                    budget=budget,
                    advance=advance,
                )
            bar.update(task, total=max(bar.tasks[0].completed, 1))
            landed = land_backfill(settings.lake_dir, archive)
    problems = fetched.failed + fetched.quarantined + landed.unreadable
    if fetched.paused is None and not problems:
        _finish(settings)
    build()
    comparison = compare_with_live(settings.lake_dir)
    return Outcome(plan, fetched.pages, landed, comparison, fetched.paused, problems)


def summary_lines(outcome: Outcome) -> list[str]:
    """What ``ht backfill`` says at the end."""
    landed, cmp = outcome.landed, outcome.comparison
    lines = [
        f"states landed: {landed.states} ({landed.cohort_rows} cohort rows) from "
        f"{outcome.pages} new page(s)",
        f"unfit rows: {len(landed.unfit)}"
        + (f" (e.g. {landed.unfit[0].reason})" if landed.unfit else ""),
        f"live vs backfill: {cmp.matched_states} state(s) held by both, {cmp.compared_rows} "
        f"cohort rows compared, {cmp.mismatched_rows} differ beyond rounding, "
        f"{cmp.missing_rows} missing live",
    ]
    if cmp.compared_rows and (cmp.mismatched_rows + cmp.missing_rows) / cmp.compared_rows > 0.01:
        lines.append(
            "more than 1% of matched rows differ: the history mapping (or createdAt) is not what "
            "the reference says; the live heatmap wins in the marts"
        )
    lines += [f"problem: {p}" for p in outcome.problems[:10]]
    if outcome.paused:
        lines.append(outcome.paused)
    return lines


def parse_start(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BackfillRefused(f"--start {text!r}: expected YYYY-MM-DD") from None
