"""Backfilled states into the lake, from ``archive/history`` alone (re-runnable at will).

Every stored page of every finished series, and every complete export fetch, is parsed;
all rows are grouped into states at once (a refresh writes every coin, cohort and window
at one time, so grouping per page or per series would cut states apart:
flows/backfill/states.py), and each state is written as::

    lake/backfill_cohorts/date=YYYY-MM-DD/<snapshot_id>.parquet
    lake/backfill_coins/date=YYYY-MM-DD/<snapshot_id>.parquet
    lake/backfill_states/date=YYYY-MM-DD/<snapshot_id>.parquet   last: the commit mark

Landing rewrites what the archive now gives (a later backfill may add coins to a state) and
removes backfill files of states the archive no longer yields, so the tables are always a
function of the archive.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from flows.backfill.archive import HistoryArchive
from flows.backfill.states import GAP, HistoryState, UnfitRow, group_states, heatmap_rows
from flows.hypertracker.errors import PayloadError
from flows.hypertracker.history_payload import (
    MetricRow,
    parse_position_metrics,
    parse_segment_export,
)
from flows.lake.parquet import lake_path, write_table
from flows.lake.tables import BACKFILL_TABLES, TABLES

EXTRAS = ("total_size", "total_long_size", "total_funding", "total_unrealized_pnl")


@dataclass
class Landed:
    """What one landing wrote: states, their rows, what did not fit and what was unreadable."""

    states: int = 0
    cohort_rows: int = 0
    unfit: list[UnfitRow] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    removed: int = 0


def archived_rows(history: HistoryArchive) -> tuple[list[MetricRow], dict[int, str], list[str]]:
    """Every row the archive holds, the sha256 of the body each came from (by row id), and the
    bodies that no longer parse (should not happen: pages are parsed before they count)."""
    rows: list[MetricRow] = []
    shas: dict[int, str] = {}
    bad: list[str] = []

    def take(parsed: list[MetricRow], body: bytes) -> None:
        sha = hashlib.sha256(body).hexdigest()
        for row in parsed:
            shas[id(row)] = sha
        rows.extend(parsed)

    for coin, window, seg in history.series():
        for fetched in history.series_pages(coin, window, seg):
            try:
                page = parse_position_metrics(fetched, coin=coin, segment_id=seg, window=window)
            except PayloadError as exc:
                bad.append(f"{fetched.url}: {exc}")
                continue
            take(page.rows, fetched.body)
    for coin, window, fetched in history.exports():
        try:
            take(parse_segment_export(fetched, coin=coin, window=window), fetched.body)
        except PayloadError as exc:
            bad.append(f"{fetched.url}: {exc}")
    return rows, shas, bad


def state_tables(state: HistoryState, shas: dict[int, str], unfit_rows: int) -> dict[str, pa.Table]:
    """One state's three backfill tables."""
    mapped = heatmap_rows(state)
    by_key = {(r.window, r.coin, r.segment_id): r for r in state.rows}
    coin_sources: dict[tuple[str, str], set[str]] = {}
    for row in mapped.cohorts:
        source = by_key[(row["window"], row["coin"], row["segment_id"])]
        row["source"] = source.source
        row.update({name: getattr(source, name) for name in EXTRAS})
        coin_sources.setdefault((row["window"], row["coin"]), set()).add(source.source)
    for row in mapped.coins:
        # A coin is position-metrics only when all its cohorts are: an export row among them
        # means its totals are partly the export's.
        found = coin_sources[(row["window"], row["coin"])]
        row["source"] = (
            "position_metrics" if found == {"position_metrics"} else ("segment_metrics_export")
        )
    windows = sorted({r["window"] for r in mapped.cohorts})
    coin_counts = Counter(r["window"] for r in mapped.coins)
    cohort_counts = Counter(r["window"] for r in mapped.cohorts)
    sources = Counter(r.source for r in state.rows)
    source = "position_metrics" if sources["position_metrics"] else "segment_metrics_export"
    pages = sorted({shas[id(r)] for r in state.rows if id(r) in shas})
    states = [
        {
            "snapshot_id": state.snapshot_id,
            "last_update": state.last_update.replace(tzinfo=None),
            "window": w,
            "first_row_at": state.first_row_at.replace(tzinfo=None),
            "source": source,
            "coin_count": coin_counts[w],
            "cohort_rows": cohort_counts[w],
            "unfit_rows": unfit_rows,
            "pages_sha256": pages,
        }
        for w in windows
    ]
    return {
        "backfill_cohorts": pa.Table.from_pylist(mapped.cohorts, schema=TABLES["backfill_cohorts"]),
        "backfill_coins": pa.Table.from_pylist(mapped.coins, schema=TABLES["backfill_coins"]),
        "backfill_states": pa.Table.from_pylist(states, schema=TABLES["backfill_states"]),
    }


def land_backfill(lake_dir: Path, history: HistoryArchive) -> Landed:
    """Group every archived history row into states and write them (see the module)."""
    rows, shas, bad = archived_rows(history)
    grouping = group_states(rows)
    out = Landed(unfit=grouping.unfit, unreadable=bad)
    kept: set[str] = set()
    for state in grouping.states:
        near = [
            u
            for u in grouping.unfit
            if state.first_row_at - GAP <= u.row.created_at <= state.last_update + GAP
        ]
        tables = state_tables(state, shas, len(near))
        if not tables["backfill_cohorts"].num_rows:
            continue
        for name in BACKFILL_TABLES:  # backfill_states last: the commit mark
            write_table(lake_path(lake_dir, name, state.snapshot_id), tables[name])
        kept.add(state.snapshot_id)
        out.states += 1
        out.cohort_rows += tables["backfill_cohorts"].num_rows
    for name in reversed(BACKFILL_TABLES):  # the mark first: a state half removed is no state
        for path in (lake_dir / name).glob("date=*/*.parquet"):
            if path.stem not in kept:
                path.unlink()
                out.removed += name == "backfill_states"
    return out


def landed_states(lake_dir: Path) -> list[str]:
    """Ids of the backfilled states whose commit mark and two tables are in place."""
    ids = sorted(p.stem for p in (lake_dir / "backfill_states").glob("date=*/*.parquet"))
    return [
        sid for sid in ids if all(lake_path(lake_dir, t, sid).exists() for t in BACKFILL_TABLES[:2])
    ]


@dataclass(frozen=True, slots=True)
class Comparison:
    """Backfilled states that a live snapshot also holds, and the cohort rows that differ."""

    matched_states: int
    compared_rows: int
    mismatched_rows: int
    missing_rows: int


def compare_with_live(lake_dir: Path, *, within_s: float = GAP.total_seconds()) -> Comparison:
    """Match backfilled states to live snapshots by nearest time (within ``within_s``) and
    compare their cohort rows: counts equal, values within 1e-9 relative, bias to 3
    decimals (the same check as dbt's ``int_backfill_vs_live`` test)."""
    live = lake_dir / "heatmap_cohorts"
    back = lake_dir / "backfill_cohorts"
    if not any(live.glob("date=*/*.parquet")) or not any(back.glob("date=*/*.parquet")):
        return Comparison(0, 0, 0, 0)
    sql = f"""
        with live as (select * from read_parquet('{live}/date=*/*.parquet')),
        back as (select * from read_parquet('{back}/date=*/*.parquet')),
        live_states as (select distinct snapshot_id, last_update from live),
        back_states as (select distinct snapshot_id, last_update from back),
        matched as (
            select b.snapshot_id as back_id, l.snapshot_id as live_id
            from back_states as b
            join live_states as l
                on abs(epoch(l.last_update) - epoch(b.last_update)) <= {within_s}
            qualify row_number() over (
                partition by b.snapshot_id
                order by abs(epoch(l.last_update) - epoch(b.last_update))
            ) = 1
        ),
        pairs as (
            select b.*, l.count as l_count, l.count_long as l_count_long,
                l.total_value as l_value, l.total_long_value as l_long, l.bias as l_bias
            from matched as m
            join back as b on b.snapshot_id = m.back_id
            left join live as l
                on l.snapshot_id = m.live_id and l."window" = b."window"
                and l.coin = b.coin and l.segment_id = b.segment_id
        )
        select
            (select count(*) from matched),
            count(*),
            count(*) filter (where l_count is not null and (
                l_count <> count or l_count_long <> count_long
                or abs(l_value - total_value) > 1e-9 * greatest(abs(l_value), 1)
                or abs(l_long - total_long_value) > 1e-9 * greatest(abs(l_long), 1)
                or round(l_bias, 3) <> round(bias, 3))),
            count(*) filter (where l_count is null)
        from pairs
    """
    with duckdb.connect() as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return Comparison(*(int(v or 0) for v in row))
