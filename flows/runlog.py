"""The run report: what a run fetched, loaded, tested and published, and what moved most.

Every run writes one, succeed or fail: ``data/state/last_run.json`` (the CLI's ``status``
reads it), a line in ``data/state/runs.jsonl``, and, inside Prefect, a markdown artifact
and a table artifact on the flow run. A failed run's report says which step failed, why,
and what was kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from flows import atomic
from flows.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str = "running"
    error: str | None = None
    failed_step: str | None = None
    snapshot: Any = None
    prices: Any = None  # the price-history step (candles, funding)
    load: Any = None
    dbt: Any = None
    publish: Any = None
    caught_up: list[str] = field(default_factory=list)  # archived snapshots landed late
    held: list[str] = field(default_factory=list)  # snapshots set aside: their tests failed
    moves: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a step; if it raises, remember it as the step that failed."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.failed_step = name
            raise
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if is_dataclass(value) and not isinstance(value, type):
                return {k: plain(v) for k, v in asdict(value).items() if k != "results"}
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            if isinstance(value, datetime):
                return value.isoformat()
            if hasattr(value, "__fspath__"):
                return str(value)
            return value

        out = {k: plain(v) for k, v in self.__dict__.items()}
        out["seconds"] = self.seconds
        if self.dbt is not None:
            out["dbt"] = {
                "success": self.dbt.success,
                "models": self.dbt.count("model"),
                "tests": self.dbt.count("test") + self.dbt.count("unit_test"),
                "warnings": [w["name"] for w in self.dbt.warnings],
                "failures": [f["name"] for f in self.dbt.failures],
            }
        return out

    def to_markdown(self) -> str:
        d = self.to_dict()
        lines = [f"# HyperTracker ELT run: {self.outcome}", ""]
        lines.append(f"- started {d['started_at']}, took {d['seconds'] or 0:.1f}s")
        if self.timings:
            steps = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
            lines.append(f"- steps: {steps}")
        if self.error:
            lines.append(f"- **failed at {self.failed_step or 'an unknown step'}**: {self.error}")
            lines.append(
                "- kept: everything archived before this run; quarantined payloads are in "
                "`data/quarantine/`; analysts still see the last good publish"
            )
        snap = d.get("snapshot") or {}
        if snap:
            lines.append(
                f"- snapshot `{snap.get('snapshot_id')}`: "
                f"{'stored' if snap.get('stored') else 'already stored (no new state)'}, "
                f"{snap.get('bytes_fetched', 0):,} bytes fetched, rows {snap.get('rows')}"
            )
        market = (snap.get("market") or {}).get("statuses") or {}
        if market:
            gaps = {d or "main": s for d, s in market.items() if s != "ok"}
            lines.append(
                f"- market: {len(market) - len(gaps)} of {len(market)} dex(es) captured"
                + (f"; **gaps**: {', '.join(f'{d} {s}' for d, s in gaps.items())}" if gaps else "")
            )
        prices = d.get("prices") or {}
        if prices.get("error"):
            lines.append(f"- **price history failed** (the run went on): {prices['error']}")
        elif prices.get("horizon"):
            lines.append(
                f"- price history: {prices['candles']:,} candles, {prices['funding_rates']:,} "
                f"funding rows for {prices['coins']} coins ({prices['requests']} requests, "
                f"weight {prices['weight']})"
                + (
                    f"; {len(prices['behind'])} coins left for later runs"
                    if prices["behind"]
                    else ""
                )
            )
        if self.caught_up:
            lines.append(
                f"- completed an earlier run: {len(self.caught_up)} archived snapshot(s) landed "
                "in the lake"
            )
        if self.held:
            lines.append(
                f"- **held back** {len(self.held)} snapshot(s) whose rows failed dbt tests "
                f"({', '.join(self.held[:3])}{' ...' if len(self.held) > 3 else ''}): "
                "`ht status` lists them, `ht readmit` takes them back"
            )
        load = d.get("load") or {}
        if load.get("load_id"):
            lines.append(
                f"- load {load['load_id']}: {len(load.get('snapshot_ids') or [])} snapshot(s)"
            )
        dbt = d.get("dbt") or {}
        if dbt:
            lines.append(
                f"- dbt build: {dbt['models']} models, {dbt['tests']} tests, "
                f"{len(dbt['warnings'])} warnings, {len(dbt['failures'])} failures"
            )
            for name in dbt["warnings"]:
                lines.append(f"  - warning: `{name}`")
            for name in dbt["failures"]:
                lines.append(f"  - **failed**: `{name}`")
        pub = d.get("publish") or {}
        if pub:
            lines.append(f"- published `{pub.get('path')}` in {pub.get('seconds', 0):.2f}s")
        if self.moves:
            lines += ["", "## Largest day-over-day cohort bias moves", ""]
            lines.append("| coin | window | cohort | bias | change (pp) |")
            lines.append("|---|---|---|---|---|")
            for m in self.moves:
                lines.append(
                    f"| {m['coin']} | {m['window']} | {m['cohort']} | {m['bias']:.3f} | "
                    f"{m['bias_change_pp']:+.1f} |"
                )
        return "\n".join(lines) + "\n"


# Moves are only worth a headline where the cohort holds real money on both days.
MIN_MOVE_USD = 1_000_000


def largest_bias_moves(analytics_db: Path, limit: int = 10) -> list[dict[str, Any]]:
    """The largest day-over-day cohort bias moves of the newest day (window ``all``)."""
    if not analytics_db.exists():
        return []
    con = duckdb.connect(str(analytics_db), read_only=True)
    try:
        cur = con.execute(
            """
            select d.coin, d."window", c.cohort_name as cohort, d.bias, d.previous_bias,
                   d.bias_change_pp, d.total_usd
            from marts.cohort_day_over_day as d
            inner join marts.dim_cohorts as c on d.segment_id = c.segment_id
            where d.snapshot_date = (select max(snapshot_date) from marts.cohort_day_over_day)
              and d."window" = 'all' and d.has_previous_day and d.bias_change_pp is not null
              and d.total_usd >= ? and d.previous_total_usd >= ?
            order by abs(d.bias_change_pp) desc, d.coin, d.segment_id
            limit ?
            """,
            [MIN_MOVE_USD, MIN_MOVE_USD, limit],
        )
        cols = [c[0] for c in cur.description or []]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    except duckdb.Error as exc:
        log.warning("could not read the largest bias moves: %s", exc)
        return []
    finally:
        con.close()


def record_run(settings: Settings, summary: RunSummary) -> None:
    """Write the run report to the state folder and, inside Prefect, as artifacts."""
    data = summary.to_dict()
    text = json.dumps(data, indent=2, default=str)
    atomic.write_bytes(settings.state_dir / "last_run.json", text.encode())
    with open(settings.state_dir / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(data, default=str) + "\n")
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is None:
            return
        create_markdown_artifact(
            key="elt-run-report", markdown=summary.to_markdown(), description="ELT run report"
        )
        if summary.moves:
            create_table_artifact(
                key="bias-moves", table=summary.moves, description="Largest bias moves"
            )
    except Exception as exc:  # a report that cannot be published must not fail the run
        log.warning("could not publish the run report as a Prefect artifact: %s", exc)
