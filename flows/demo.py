"""``make demo``: the whole product in one command, against the simulated HyperTracker API.

1. start the simulated API on 127.0.0.1 with a fresh random token (HyperTracker's API and
   Hyperliquid's info API, from one simulated market);
2. history as a new user gets it: a quick ``ht backfill`` (HyperTracker's segment-metrics
   exports, 12-hourly over the past week, through the production history client, archive
   and lake code), then the clock walked through the last hours of states, each snapshot
   taken as ``serve`` would have taken it (``--live-hours`` as long as ``--days``: every
   state live, no backfill);
3. load DuckDB, ``dbt build``, publish ``analytics.duckdb``: the Prefect warehouse flow;
4. one more state, taken by the scheduled ELT flow exactly as ``serve`` runs it;
5. the dbt docs site and the heatmap report; then a short tour of what was built.

The demo writes under ``data/demo/`` so that simulated history never mixes with real data.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.settings import get_settings


def demo_environment(base_url: str, token: str, data_dir: Path, info_url: str) -> None:
    """Point every flow of this process at the simulator and the demo's data folder."""
    os.environ.update(
        {
            "HT_BASE_URL": base_url,
            "HT_HYPERLIQUID_URL": info_url,
            # The simulated info API has no weight limit either: the first run takes the
            # whole price history of the board at once (a real one spreads it over runs).
            "HT_HYPERLIQUID_WEIGHT_PER_MINUTE": "100000000",
            "HT_PRICE_HISTORY_WEIGHT_PER_RUN": "100000000",
            "HT_API_TOKEN": token,
            "HT_DATA_DIR": str(data_dir),
            # The simulator has no rate limit and the backfill walks days of states in
            # seconds; a real installation keeps its plan's limits (see the README).
            "HT_REQUESTS_PER_MINUTE": "1000000",
            "HT_REQUESTS_PER_MONTH": "100000000",
            "HT_SEGMENTS_REFRESH_HOURS": "1000000",
        }
    )


# The quick backfill's exports reach this far back (../shared/reference/history-endpoints.md).
EXPORT_DAYS = 7


def backfill_history(console: Console) -> None:
    """A quick ``ht backfill`` of every coin on the heatmap, at the simulator's current time:
    the plan, the fetch with its progress bar, the landing and the summary, as printed to a
    user (the warehouse is built later, once the live states are in the lake too)."""
    from flows.backfill.run import Options, run_backfill, summary_lines

    options = Options(depth="quick", coins=(), top=100_000, windows=None, start=None)
    outcome = run_backfill(
        get_settings(),
        options,
        console=console,
        progress_console=console,
        confirm=None,
        force=False,
        build=lambda: None,
    )
    for line in summary_lines(outcome):
        console.print(line, soft_wrap=True, highlight=False)


def collect_history(api, since: datetime, end: datetime, console: Console) -> int:
    """Take every simulated state from ``since`` until ``end``, with a progress bar."""
    from flows.hyperliquid.client import HyperliquidClient
    from flows.hypertracker.client import HyperTrackerClient
    from flows.lake.from_archive import archive_for
    from flows.snapshot import refresh_segments, take_snapshot

    settings = get_settings()
    archive = archive_for(settings)
    api.set_time(since)
    total = int((end - since).total_seconds() / 60 / 22.5)  # states come every 15-30 minutes
    taken = 0
    # A line per snapshot would bury the progress bar: only warnings while collecting.
    flows_log = logging.getLogger("flows")
    level = flows_log.level
    flows_log.setLevel(logging.WARNING)
    with (
        HyperTrackerClient(settings) as client,
        HyperliquidClient(settings) as info,
        Progress(
            TextColumn("[bold]collecting simulated history"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar,
    ):
        task = bar.add_task("history", total=total, state="")
        refresh_segments(client, archive, settings, now=end)
        while api.now < end:
            outcome = take_snapshot(client, archive, settings, info=info)
            taken += int(outcome.stored)
            bar.update(task, completed=min(taken, total), state=outcome.snapshot_id)
            api.advance_to_next_state()
        bar.update(task, total=taken, completed=taken)
    flows_log.setLevel(level)
    return taken


def build_demo_warehouse(
    *, days: float, seed: int, data_dir: Path, console: Console, live_hours: float | None = None
) -> None:
    """Steps 1-4: simulated API, N days of history, warehouse, one scheduled run.

    The history is a quick backfill plus the last ``live_hours`` of live snapshots; with
    ``live_hours`` None (or at least ``days`` long) every state of the N days is taken live.
    """
    from flows.pipeline import elt_flow, warehouse_flow
    from simulator.server import SimulatedApi

    live = days * 24 if live_hours is None else min(live_hours, days * 24)
    backfilled = days * 24 - live
    if backfilled > 0 and days > EXPORT_DAYS:
        raise ValueError(
            f"--days {days:g}: a quick backfill reaches {EXPORT_DAYS} days back; choose "
            f"--days {EXPORT_DAYS} or less, or --live-hours {days * 24:g} to collect every day live"
        )

    token = secrets.token_urlsafe(24)
    # The market's history begins a little before the demo's window so that its first
    # state is already a day into the simulation (listings and biases have moved).
    # On a whole UTC hour: the simulated market's hourly candles and funding times count
    # from its start, and Hyperliquid's fall on the hour.
    market_start = (datetime.now(UTC) - timedelta(days=days + 1)).replace(
        minute=0, second=0, microsecond=0
    )
    with SimulatedApi(seed=seed, token=token, start=market_start) as api:
        demo_environment(api.base_url, token, data_dir, api.info_url)
        console.rule("[bold]1. simulated HyperTracker API")
        console.print(f"listening on {api.base_url} (seed {seed}); token kept in memory only")

        # Stop half an hour short of now: the scheduled run that follows takes the next
        # state, which then still lies in the past, as a real state would.
        end = datetime.now(UTC) - timedelta(minutes=35)
        since = end - timedelta(hours=live)
        if backfilled > 0:
            console.rule(f"[bold]2a. {days:g} days of history: a quick backfill (`ht backfill`)")
            console.print(
                "HyperTracker's segment-metrics exports: every coin's 16 cohorts and 4 "
                f"windows, 12-hourly over the past week (this market began {days + 1:g} days "
                "ago), marked source = 'segment_metrics_export' in the marts",
                soft_wrap=True,
            )
            t0 = time.perf_counter()
            api.set_time(since)
            backfill_history(console)
            console.print(f"backfilled in {time.perf_counter() - t0:.1f}s", soft_wrap=True)
        console.rule(f"[bold]2{'b' if backfilled > 0 else ''}. {live:g} hours of live snapshots")
        t0 = time.perf_counter()
        taken = collect_history(api, since, end, console)
        console.print(f"{taken} snapshots archived and landed in {time.perf_counter() - t0:.1f}s")

        console.rule("[bold]3. warehouse: load -> dbt build -> publish (Prefect)")
        warehouse_flow()

        console.rule("[bold]4. one scheduled run, as `make serve` does it")
        api.advance_to_next_state()
        summary = elt_flow()
        console.print(summary.to_markdown())


def run_demo(
    *, days: float, live_hours: float, seed: int, data_dir: Path, console: Console
) -> None:
    """The whole demo: the warehouse, then the docs site and the report, then a tour."""
    started = time.perf_counter()
    build_demo_warehouse(
        days=days, seed=seed, data_dir=data_dir, console=console, live_hours=live_hours
    )
    console.rule("[bold]5. docs site and report")
    from flows.analyst import build_docs, write_report

    settings = get_settings()
    docs = build_docs(settings)
    report = write_report(settings)
    tour(data_dir, docs, report, time.perf_counter() - started, console)


def tour_commands(data_dir: Path) -> list[tuple[str, str]]:
    """What to try next, as (what, command): each command works exactly as printed.

    Paths are shown relative to the current folder when under it; the make targets only
    when the current folder holds the project's Makefile.
    """
    import shlex
    import sys

    from flows.settings import PROJECT_ROOT

    def shown(path: Path) -> str:
        try:
            return path.resolve().relative_to(Path.cwd()).as_posix() or "."
        except ValueError:
            return path.resolve().as_posix()

    ht_path = Path(sys.executable).parent / "ht"
    local = Path(".venv/bin/ht")  # as the README writes it, when it is this one
    ht = str(local) if local.exists() and local.resolve() == ht_path.resolve() else shown(ht_path)
    data = shlex.quote(shown(data_dir))
    sql = '"select coin, oi_rank, total_usd from marts.heatmap_board_latest where oi_rank <= 3"'
    commands = [
        ("the state of things", f"{ht} status --data-dir {data}"),
        ("a question in SQL", f"{ht} query --data-dir {data} {sql}"),
        ("the same, as CSV", f"{ht} query --data-dir {data} --format csv {sql}"),
        ("the DuckDB CLI, read-only", f"{ht} shell --data-dir {data}"),
    ]
    if Path("Makefile").is_file() and Path("Makefile").resolve() == PROJECT_ROOT / "Makefile":
        commands += [
            ("the report again", f"make report DATA={data}"),
            ("docs and reports on localhost", f"make docs DATA={data}"),
        ]
    else:
        commands += [
            ("the report again", f"{ht} report --data-dir {data}"),
            ("docs and reports on localhost", f"{ht} docs --serve --data-dir {data}"),
        ]
    return commands


def tour(data_dir: Path, docs: Path, report: Path, seconds: float, console: Console) -> None:
    console.rule(f"[bold green]demo complete in {seconds:.0f}s")
    console.print(
        f"""
[bold]What was built[/] (all under {data_dir}):
  archive/    every API body, verbatim (zstd) with a manifest per snapshot; market/ holds
              each snapshot's Hyperliquid prices, prices/ the board's candles and funding,
              history/ the backfill's exports
  lake/       the same as typed Parquet, one file per snapshot per table (prices: per day)
  warehouse/  build.duckdb (the pipeline's) and [bold]analytics.duckdb[/] (yours)
  reports/    [bold]{report}[/]
  docs        [bold]{docs}[/] (dbt docs: every model and column)

[bold]Next[/] (every command works as printed; --data-dir points it at the demo's data)""",
        soft_wrap=True,
    )
    for what, command in tour_commands(data_dir):
        console.print(f"  # {what}", style="dim", highlight=False, soft_wrap=True)
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        "\n[bold]Real data[/]: put HT_API_TOKEN in .env (see .env.example), then `make run` "
        "or `make serve` (they write data/, never data/demo/)",
        soft_wrap=True,
    )
