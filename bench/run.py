"""``python -m bench.run``: every benchmark, side by side in one run; writes the report.

Sections, in order (each prints its progress):

1. history    30 days of ``*/30`` snapshots into the production archive (2 processes)
2. rebuild    ``rebuild_flow`` over that archive in a child: wall time, peak memory
              (this also builds the 30-day lake and warehouse the next sections use)
3. storage    bytes per snapshot: JSON, archive, Parquet, DuckDB
4. scheduled  one new snapshot through fetch -> lake -> load -> dbt build -> publish, in
              two long-lived processes (1-day and 30-day history), runs alternating
5. loadpath   100 payloads: our load path (with and without validation, and the rebuild's)
              against DuckDB's own read_json + unnest
6. peer       dlt on the same 100 payloads (bench/.venv, installed here when missing)
7. production the scheduled run as production runs it: a fresh ``ht run`` process per
              state, a Prefect server already up (1-day and 30-day history), each part
8. freshness  serve's state watch on a compressed simulated clock (Pulse plan's budget),
              each run a fresh ``ht run``: published_at - lastUpdate, beside the */15 cron
9. backfill   ``ht backfill`` (deep, then quick) against the simulator holding the Pulse
              plan's 60 requests a minute: throughput against the limit, 429s, calls per
              day of history per coin, fetch / land / build (needs no history)

Results: ``bench/results/<YYYY-MM-DD>.md`` and ``.json``. Scratch: ``bench/work/``
(emptied at the start). ``--quick`` shrinks every size for a smoke run; ``--only a,b`` runs
just those sections (results in ``<YYYY-MM-DD>-a+b.*``, beside the full report).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import backfill, freshness, history, production, report, storage
from bench.common import (
    BENCH_DIR,
    DBT_PROJECT,
    FULL,
    MARKET_START,
    PEER_VENV,
    PROJECT_ROOT,
    QUICK,
    RESULTS,
    SEED,
    WORK,
    Sizes,
    child_env,
    median,
    run_child,
    say,
    write_json,
)
from bench.loadpath import VARIANTS, prepare_input
from bench.machine import describe
from bench.scheduled import ScheduledWorker

SECTIONS = (
    *("rebuild", "storage", "scheduled", "loadpath", "peer", "production", "freshness"),
    "backfill",
)
# Every section but these needs the generated history and its rebuild.
WITHOUT_HISTORY = frozenset({"backfill"})
PEER_REQUIREMENT = "dlt[duckdb,parquet]"


# ------------------------------------------------------------------------------ set-up


def prepare_work() -> None:
    """Empty bench/work and copy the dbt project into it.

    The copy keeps the bench's ``target/`` (manifest, partial parse) apart from the one a
    developer is using, and freezes the models for the length of the run.
    """
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    shutil.copytree(
        PROJECT_ROOT / "dbt_project",
        DBT_PROJECT,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"),
    )


def start_peer_install() -> subprocess.Popen[bytes] | None:
    """Create bench/.venv with dlt in the background, unless it is already there."""
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run([str(python), "-c", "import dlt, duckdb"], capture_output=True)
        if check.returncode == 0:
            return None
        shutil.rmtree(PEER_VENV)
    say("peer", f"installing {PEER_REQUIREMENT} into bench/.venv (background)")
    log = open(WORK / "peer-install.log", "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [
            "bash",
            "-c",
            f'python3.11 -m venv "{PEER_VENV}" && "{PEER_VENV}/bin/pip" install -q '
            f'--disable-pip-version-check --timeout 60 "{PEER_REQUIREMENT}"',
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


# ---------------------------------------------------------------------------- sections


def section_rebuild(long_dir: Path) -> dict[str, Any]:
    say("rebuild", "rebuild_flow(fresh_lake=True) in a child process: archive -> lake -> "
        "DuckDB -> dbt build -> publish")  # fmt: skip
    out = WORK / "rebuild.json"
    result = run_child(
        ["-m", "bench.rebuild", str(out)],
        env=child_env(HT_DATA_DIR=str(long_dir), PREFECT_HOME=str(WORK / "prefect-rebuild")),
        out_json=out,
    )
    if result.returncode != 0:
        raise SystemExit(f"the rebuild failed (exit {result.returncode}); see its output above")
    say("rebuild", f"done in {result.wall_s:.1f}s, peak RSS {result.peak_rss_bytes / 1e6:.0f} MB")
    return {
        "wall_seconds": round(result.wall_s, 2),
        "peak_rss_bytes": result.peak_rss_bytes,
        "tree_peak_rss_bytes": result.tree_peak_rss_bytes,
        **result.output,
    }


def run_states(sizes: Sizes, count: int) -> list[str]:
    """Publication times of the ``count`` states after the history, as ISO strings."""
    from simulator.market import Market

    market = Market(SEED, start=MARKET_START)
    k = market.state_index_at(sizes.history_end)
    return [market.state_time(k + i).isoformat() for i in range(1, count + 1)]


def _step_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    steps = list(runs[0]["timings"]) if runs else []
    out = {s: round(median(r["timings"].get(s, 0.0) for r in runs), 3) for s in steps}
    out["total (elt_flow call)"] = round(median(r["wall_s"] for r in runs), 3)
    out["total (RunSummary)"] = round(median(r["seconds"] for r in runs), 3)
    return out


def section_scheduled(sizes: Sizes, short_dir: Path, long_dir: Path) -> dict[str, Any]:
    homes = {"1 day": short_dir, f"{sizes.history_days:g} days": long_dir}
    workers = {
        name: ScheduledWorker(
            name,
            child_env(HT_DATA_DIR=str(path), PREFECT_HOME=str(WORK / f"prefect-{path.name}")),
        )
        for name, path in homes.items()
    }
    out: dict[str, Any] = {name: {"runs": [], "warmups": []} for name in workers}
    try:
        # Set-up is not measured: both processes start Prefect at once, then the 1-day one
        # loads its history while the 30-day one (built by the rebuild) has nothing to do.
        for step in ("boot", "setup"):
            for worker in workers.values():
                worker.send(step)
            for name, worker in workers.items():
                answer = worker.receive()
                if "error" in answer:
                    raise SystemExit(f"[{name}] {step} failed: {answer['error']}")
                out[name][step] = answer
                say("scheduled", f"[{name}] {step} done in {answer['wall_s']:.1f}s")
        states = run_states(sizes, sizes.warmups + sizes.runs)
        names = list(workers)
        for i, at in enumerate(states):
            kind = "warmups" if i < sizes.warmups else "runs"
            # Alternate who goes first: the second run finds the simulator's cache warm.
            for name in names if i % 2 == 0 else names[::-1]:
                answer = workers[name].ask("run", at=at)
                if answer.get("outcome") != "published":
                    raise SystemExit(f"[{name}] run at {at} did not publish: {answer}")
                out[name][kind].append(answer)
                steps = ", ".join(f"{k} {v:.2f}" for k, v in answer["timings"].items())
                say(
                    "scheduled",
                    f"[{name}] {kind[:-1]} {i + 1}/{len(states)} state {answer['snapshot_id']}: "
                    f"{answer['wall_s']:.2f}s ({steps})",
                )
    finally:
        for worker in workers.values():
            worker.quit()
    for name, worker in workers.items():
        out[name]["peak_rss_bytes"] = worker.peak_rss_bytes
        out[name]["median"] = _step_medians(out[name]["runs"])
    return out


def section_loadpath(sizes: Sizes, long_dir: Path) -> dict[str, Any]:
    inp = WORK / "loadpath" / "input"
    facts = prepare_input(long_dir / "archive", inp, sizes.load_snapshots)
    say(
        "loadpath",
        f"{facts['payloads']} payloads ({facts['snapshots']} snapshots x 4 windows), "
        f"{facts['json_bytes'] / 1e6:.1f} MB of JSON; {sizes.load_repeats} repeat(s) per variant",
    )
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for rep in range(sizes.load_repeats):
        order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            out = WORK / "loadpath" / f"{variant}-{rep}.json"
            res = run_child(
                [
                    "-m",
                    "bench.loadpath",
                    variant,
                    str(inp),
                    str(WORK / "loadpath" / "run"),
                    str(out),
                ],
                env=child_env(),
                out_json=out,
            )
            if res.returncode != 0:
                raise SystemExit(f"load path variant {variant} failed (exit {res.returncode})")
            runs[variant].append({**res.output, "peak_rss_bytes": res.peak_rss_bytes})
            say(
                "loadpath",
                f"{variant:<17} {res.output['seconds']:.2f}s  "
                f"peak RSS {res.peak_rss_bytes / 1e6:.0f} MB  {res.output['phases']}",
            )
    summary = {}
    for variant, rs in runs.items():
        phases = list(rs[0]["phases"])
        summary[variant] = {
            "seconds": round(median(r["seconds"] for r in rs), 3),
            "phases": {p: round(median(r["phases"][p] for r in rs), 3) for p in phases},
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs),
            "rows": rs[0]["rows"],
            "all_seconds": [r["seconds"] for r in rs],
        }
    return {"input": facts, "variants": summary}


def section_peer(install: subprocess.Popen[bytes] | None) -> dict[str, Any]:
    if install is not None:
        say("peer", "waiting for the dlt install to finish")
        if install.wait() != 0:
            log = (WORK / "peer-install.log").read_text(errors="replace")[-2000:]
            say("peer", "could not install dlt (is PyPI reachable?): peer skipped")
            return {"skipped": f"pip install {PEER_REQUIREMENT} failed: {log}"}
    inp = WORK / "loadpath" / "input"
    out = WORK / "peer.json"
    say("peer", "dlt: extract -> normalize (parquet) -> load into DuckDB")
    res = run_child(
        [str(BENCH_DIR / "peer_dlt.py"), str(inp), str(WORK / "peer"), str(out)],
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        out_json=out,
        python=str(PEER_VENV / "bin" / "python"),
    )
    if res.returncode != 0:
        return {"skipped": f"the dlt run failed (exit {res.returncode}); see the output above"}
    say(
        "peer", f"dlt {res.output['seconds']:.1f}s {res.output['phases']} rows {res.output['rows']}"
    )
    return {**res.output, "peak_rss_bytes": res.peak_rss_bytes}


def section_production(
    results: dict[str, Any], sizes: Sizes, skip: set[str], short_dir: Path, long_dir: Path
) -> None:
    """Sections 7 and 8, under one Prefect server (as ``serve`` keeps one up)."""
    if not short_dir.exists():
        history.copy_tail(long_dir, short_dir, sizes.history_end - timedelta(days=sizes.short_days))
    homes = {"1 day": short_dir, f"{sizes.history_days:g} days": long_dir}
    # The states after those the scheduled section takes (its processes share the folders).
    first = sizes.warmups + sizes.runs
    states = run_states(sizes, first + sizes.warmups + sizes.runs)[first:]
    with production.prefect_server(WORK / "prefect-production") as url:
        if "production" not in skip:
            results["production"] = production.section_production(sizes, homes, states, url)
        if "freshness" not in skip:
            # The next day's start: the watch then has the whole day's budget to share.
            day = datetime.fromisoformat(states[-1]).replace(hour=0, minute=5, second=0)
            results["freshness"] = freshness.section_freshness(
                short_dir, url, day + timedelta(days=1), states=sizes.freshness_states,
                speed=sizes.freshness_speed,
            )  # fmt: skip


# -------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--skip", default="", help=f"comma-separated sections to leave out: {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated sections to run, and no other (see --skip)"
    )
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := (skip | set(only)) - set(SECTIONS):
        parser.error(f"unknown section(s) {sorted(unknown)}; expected {SECTIONS}")
    if only:
        skip |= set(SECTIONS) - set(only)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    started_at = datetime.now(UTC)

    say("bench", f"{'quick' if args.quick else 'full'} run; scratch in {WORK}")
    prepare_work()
    machine = describe(PROJECT_ROOT)
    say("bench", f"{machine['cores']} cores, {machine['memory_bytes'] / 2**30:.1f} GiB, "
        f"{machine['cpu_model']}; load average {machine['load_average_at_start']}")  # fmt: skip
    install = start_peer_install() if "peer" not in skip else None

    results: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "mode": "quick" if args.quick else "full",
        "sizes": {**sizes.__dict__, "history_end": sizes.history_end.isoformat()},
        "machine": machine,
    }
    long_dir, short_dir = WORK / "long", WORK / "short"
    if set(SECTIONS) - WITHOUT_HISTORY - skip:
        results["history"] = history.generate_archive(
            long_dir, sizes.history_end - timedelta(days=sizes.history_days), sizes.history_end,
            workers=sizes.workers,
        )  # fmt: skip
        # The rebuild also builds the long history's lake and warehouse: the sections after
        # it need it, so it runs whenever one of them does.
        results["rebuild"] = section_rebuild(long_dir)
    if "storage" not in skip:
        results["storage"] = storage.measure(long_dir, results["rebuild"].get("raw_duckdb_bytes"))
        say("storage", f"{results['storage']['bytes_per_snapshot']}")
    if "scheduled" not in skip:
        n = history.copy_tail(
            long_dir, short_dir, sizes.history_end - timedelta(days=sizes.short_days)
        )
        say("scheduled", f"1-day history: the last {n} snapshots of the long one, copied")
        results["scheduled"] = section_scheduled(sizes, short_dir, long_dir)
    if {"production", "freshness"} - skip:
        section_production(results, sizes, skip, short_dir, long_dir)
    if "loadpath" not in skip or "peer" not in skip:
        results["loadpath"] = section_loadpath(sizes, long_dir)
    if "peer" not in skip:
        results["peer"] = section_peer(install)
    elif install is not None:
        install.wait()
    if "backfill" not in skip:
        results["backfill"] = backfill.section_backfill(args.quick)

    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    day = started_at.strftime("%Y-%m-%d")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = day if not args.quick else f"{day}-quick"
    if only:
        stem += "-" + "+".join(only)
    results["targets"] = (
        report.targets(results) + production.targets(results) + backfill.targets(results)
    )
    write_json(RESULTS / f"{stem}.json", results)
    (RESULTS / f"{stem}.md").write_text(
        report.markdown(results)
        + production.markdown(results)
        + freshness.markdown(results)
        + backfill.markdown(results)
    )
    say("bench", f"done in {results['bench_seconds']:.0f}s: {RESULTS / stem}.md and .json")
    for t in results["targets"]:
        say("target", f"{'MET ' if t['met'] else 'MISS' if t['met'] is False else '----'} "
            f"{t['name']}: {t['measured']} (target {t['target']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
