"""The report: targets met or missed (by how much, and where the time went), as Markdown."""

from __future__ import annotations

from typing import Any

from bench.common import median

LATENCY_TARGET_S = 10.0
FLATNESS_TARGET = 1.3
LOADPATH_TARGET = 1.5
LOADPATH_MEMORY_TARGET = 0.5e9
PEER_TARGET = 20.0
PARQUET_TARGET = 8.0


def _long_name(results: dict[str, Any]) -> str:
    return f"{results['sizes']['history_days']:g} days"


def _target(
    name: str, target: str, measured: str, met: bool | None, why: str = ""
) -> dict[str, Any]:
    return {"name": name, "target": target, "measured": measured, "met": met, "why": why}


def _slowest_step(medians: dict[str, float]) -> tuple[str, float]:
    steps = {k: v for k, v in medians.items() if not k.startswith("total")}
    name = max(steps, key=lambda k: steps[k])
    return name, steps[name]


def _dbt_why(runs: list[dict[str, Any]]) -> str:
    """Where a dbt build's time went: the nodes' own time vs the rest (Prefect, dbt)."""
    if not runs:
        return ""
    step = median(r["timings"].get("dbt build", 0.0) for r in runs)
    nodes = median(r["dbt_node_seconds"] for r in runs)
    count = runs[0]["dbt_nodes"]
    slow: dict[str, list[float]] = {}
    for r in runs:
        for node in r["dbt_slowest"]:
            slow.setdefault(node["name"], []).append(node["seconds"])
    top = sorted(slow.items(), key=lambda kv: -median(kv[1]))[:3]
    tops = ", ".join(f"{n} {median(v):.2f}s" for n, v in top)
    return (
        f"dbt build {step:.2f}s for {count} nodes whose own SQL time adds up to {nodes:.2f}s "
        f"(2 threads: at best {nodes / 2:.2f}s of wall; the rest is dbt's and Prefect's per-node "
        f"work); slowest nodes: {tops}"
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: what was measured, met or not, and why when not."""
    out = []
    sched = results.get("scheduled")
    long_name = _long_name(results)
    if sched:
        long = sched[long_name]["median"]
        short = sched["1 day"]["median"]
        total = long["total (elt_flow call)"]
        step, secs = _slowest_step(long)
        why = f"slowest step: {step} {secs:.2f}s of {total:.2f}s"
        if step == "dbt build":
            why += "; " + _dbt_why(sched[long_name]["runs"])
        out.append(
            _target(
                f"scheduled-run latency ({long_name} of history, median of "
                f"{len(sched[long_name]['runs'])})",
                f"< {LATENCY_TARGET_S:g} s",
                f"{total:.2f} s (1-day history: {short['total (elt_flow call)']:.2f} s)",
                total < LATENCY_TARGET_S,
                why,
            )
        )
        ratio = total / short["total (elt_flow call)"]
        per_step = ", ".join(
            f"{k} {long[k] / short[k]:.2f}x"
            for k in long
            if not k.startswith("total") and short.get(k)
        )
        out.append(
            _target(
                f"history flatness ({long_name} / 1 day)",
                f"<= {FLATNESS_TARGET}",
                f"{ratio:.2f}",
                ratio <= FLATNESS_TARGET,
                f"per step: {per_step}",
            )
        )
    lp = results.get("loadpath")
    if lp:
        v = lp["variants"]
        floor = v["floor"]["seconds"]
        for variant, label in (
            ("bulk", "load path (JSON -> checked, typed -> lake -> DuckDB)"),
            ("rebuild", "load path as the rebuild runs it (+ sha256 of every body)"),
            ("live", "load path one snapshot at a time, as the live run checks it"),
        ):
            ratio = v[variant]["seconds"] / floor
            phases = v[variant]["phases"]
            top = max(phases, key=lambda p: phases[p])
            out.append(
                _target(
                    f"{label} vs DuckDB read_json floor",
                    f"<= {LOADPATH_TARGET}x",
                    f"{ratio:.2f}x ({v[variant]['seconds']:.2f} s vs {floor:.2f} s)",
                    ratio <= LOADPATH_TARGET,
                    f"largest phase: {top} {phases[top]:.2f}s; phases {phases}",
                )
            )
        worst = max(x["peak_rss_bytes"] for k, x in v.items() if k != "floor")
        out.append(
            _target(
                "load path peak memory (our variants, whole process)",
                "< 0.5 GB",
                f"{worst / 1e9:.2f} GB (floor {v['floor']['peak_rss_bytes'] / 1e9:.2f} GB)",
                worst < LOADPATH_MEMORY_TARGET,
            )
        )
    peer = results.get("peer")
    if peer and lp:
        if "skipped" in peer:
            out.append(_target("ours vs dlt", f">= {PEER_TARGET:g}x faster", "skipped", None))
        else:
            ours = lp["variants"]["bulk"]["seconds"]
            ratio = peer["seconds"] / ours
            out.append(
                _target(
                    "ours (load path, every row checked) vs dlt (parquet)",
                    f">= {PEER_TARGET:g}x faster",
                    f"{ratio:.1f}x ({ours:.2f} s vs {peer['seconds']:.2f} s)",
                    ratio >= PEER_TARGET,
                    f"dlt phases {peer['phases']}",
                )
            )
    st = results.get("storage")
    if st and st.get("snapshots"):
        b = st["bytes_per_snapshot"]
        ratio = b["raw_json"] / b["parquet_lake"]
        cols = st.get("cohort_file_columns", {}).get("bytes_per_row", {})
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(cols.items())[:5])
        out.append(
            _target(
                "Parquet lake vs raw JSON",
                f"<= 1/{PARQUET_TARGET:g} of the JSON",
                f"1/{ratio:.1f}",
                ratio >= PARQUET_TARGET,
                f"the cohort table is {st['parquet_per_table']['heatmap_cohorts'] / 1e3:.0f} kB of "
                f"{b['parquet_lake'] / 1e3:.0f} kB per snapshot; its bytes per row by column: "
                f"{top} (the USD doubles carry full-precision noise that zstd cannot squeeze)",
            )
        )
    return out


def _gb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def _kb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e3:,.0f} kB"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def _section_machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return [
        f"- machine: {m['cores']} cores, {m['memory_bytes'] / 2**30:.1f} GiB, {m['cpu_model']}, "
        f"{m['os']}; load average at start {m['load_average_at_start']}",
        f"- versions: {versions}",
        f"- tree: {m.get('git_commit') or 'unknown'}; mode {results['mode']}; the whole bench "
        f"took {results['bench_seconds']:.0f} s",
    ]


def _section_scheduled(results: dict[str, Any]) -> list[str]:
    sched = results.get("scheduled")
    if not sched:
        return []
    long_name = _long_name(results)
    short, long = sched["1 day"], sched[long_name]
    lines = [
        "## 1-2. Scheduled-run latency and history flatness",
        "",
        "One new snapshot (a state after the history) through `elt_flow()`: fetch over HTTP "
        "from the in-process simulator -> validate -> archive -> lake -> load -> dbt build -> "
        "publish. Two long-lived processes (Prefect started once in each, like `serve`), one "
        f"per history, take the same states in alternation; {results['sizes']['warmups']} "
        f"warm-up run(s) each, then the median of {len(long['runs'])} runs. Seconds:",
        "",
        f"| step | 1 day | {long_name} | ratio |",
        "|---|---:|---:|---:|",
    ]
    for step, value in long["median"].items():
        base = short["median"].get(step)
        ratio = f"{value / base:.2f}" if base else "-"
        lines.append(f"| {step} | {base if base is not None else '-'} | {value} | {ratio} |")
    lines += [
        "",
        f"- every run ({long_name}, elt_flow call): "
        + ", ".join(f"{r['wall_s']:.2f}" for r in long["runs"])
        + "; 1 day: "
        + ", ".join(f"{r['wall_s']:.2f}" for r in short["runs"]),
        f"- {_dbt_why(long['runs'])}",
        f"- dbt node time by kind is in the JSON (`scheduled.*.runs[].dbt_slowest`); peak RSS "
        f"of the long-lived process: 1 day {_gb(short.get('peak_rss_bytes'))}, {long_name} "
        f"{_gb(long.get('peak_rss_bytes'))}",
        "",
    ]
    return lines


def _section_rebuild(results: dict[str, Any]) -> list[str]:
    rb = results.get("rebuild")
    if not rb:
        return []
    lines = [
        "## 3. Full rebuild from the raw archive",
        "",
        f"`rebuild_flow(fresh_lake=True)` in a fresh process over {rb.get('snapshots')} archived "
        f"snapshots ({results['sizes']['history_days']:g} days, every 30 min): "
        f"**{rb['wall_seconds']:.1f} s** wall, peak RSS **{_gb(rb['peak_rss_bytes'])}** "
        f"(process tree, Prefect's API server included: {_gb(rb['tree_peak_rss_bytes'])}).",
        "",
        "| step | seconds |",
        "|---|---:|",
    ]
    for step, secs in rb.get("steps", {}).items():
        lines.append(f"| {step} | {secs:.1f} |")
    lines += [
        f"| Prefect (API server start, flow run) | {rb.get('prefect_overhead_seconds', 0):.1f} |",
        f"| imports and interpreter | {rb.get('import_seconds', 0):.1f} |",
        "",
        f"- dbt: {rb.get('dbt_nodes')} nodes, own SQL time {rb.get('dbt_node_seconds')} s; "
        "slowest: "
        + ", ".join(f"{n['name']} {n['seconds']:.1f}s" for n in rb.get("dbt_slowest", [])[:5]),
        "",
    ]
    return lines


def _section_loadpath(results: dict[str, Any]) -> list[str]:
    lp = results.get("loadpath")
    if not lp:
        return []
    inp, v = lp["input"], lp["variants"]
    floor = v["floor"]["seconds"]
    lines = [
        "## 4. Load path against the floor",
        "",
        f"{inp['payloads']} payloads = {inp['snapshots']} snapshots x 4 windows "
        f"({inp['json_bytes'] / 1e6:.1f} MB of JSON), raw JSON to typed coin and cohort tables "
        f"in a DuckDB file; each variant in a fresh process, median of "
        f"{results['sizes']['load_repeats']}, imports excluded.",
        "",
        "| variant | seconds | x floor | peak RSS | coin rows | cohort rows | phases (s) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    labels = {
        "floor": "DuckDB read_json + unnest (floor)",
        "bulk": "ours: archived JSON -> DuckDB checks + types -> lake -> DuckDB",
        "rebuild": "ours, rebuild: the same + sha256 of every body",
        "live": "ours, one snapshot at a time: + JSON types, + checks across windows",
    }
    for name, x in v.items():
        phases = ", ".join(f"{k} {val:.2f}" for k, val in x["phases"].items())
        lines.append(
            f"| {labels.get(name, name)} | {x['seconds']:.2f} | {x['seconds'] / floor:.2f} | "
            f"{_gb(x['peak_rss_bytes'])} | {x['rows'].get('heatmap_coins', 0):,} | "
            f"{x['rows'].get('heatmap_cohorts', 0):,} | {phases} |"
        )
    lines += [
        "",
        "The floor reads plain JSON; ours reads the bodies as the archive keeps them (zstd), "
        "checks every row invariant (counts, sums, bias, ranges, duplicates), keeps a Parquet "
        "lake and loads from it. The live run also compares each body's JSON types with the "
        "contract (one more parse) and checks the relations across a snapshot's windows, one "
        "snapshot per pass; it is reported for its cost, the bulk path is the like-for-like.",
        "",
    ]
    return lines


def _section_peer(results: dict[str, Any]) -> list[str]:
    peer = results.get("peer")
    lp = results.get("loadpath")
    if not peer or not lp:
        return []
    if "skipped" in peer:
        return ["## 5. Peer: dlt", "", f"Skipped: {peer['skipped'][:500]}", ""]
    ours = lp["variants"]["bulk"]
    match = all(peer["rows"].get(t) == ours["rows"].get(t) for t in peer["rows"])
    return [
        "## 5. Peer: dlt",
        "",
        f"dlt {peer['versions'].get('dlt')} (bench/.venv only; duckdb "
        f"{peer['versions'].get('duckdb')}, pyarrow {peer['versions'].get('pyarrow')}), "
        "`loader_file_format='parquet'`, the same JSON files, each coin yielded with its "
        "snapshot id and window, `segments` unnested by dlt into a child table:",
        "",
        f"- dlt: **{peer['seconds']:.2f} s** ({', '.join(f'{k} {x:.2f}' for k, x in peer['phases'].items())}), "  # noqa: E501
        f"peak RSS {_gb(peer['peak_rss_bytes'])}, rows {peer['rows']}",
        f"- ours (load path, every row checked): {ours['seconds']:.2f} s, rows "
        f"{ {k: ours['rows'][k] for k in peer['rows']} }: "
        f"**{peer['seconds'] / ours['seconds']:.1f}x faster**; row counts "
        f"{'match' if match else '**differ**'}",
        "",
    ]


def _section_storage(results: dict[str, Any]) -> list[str]:
    st = results.get("storage")
    if not st or not st.get("snapshots"):
        return []
    b = st["bytes_per_snapshot"]
    labels = {
        "raw_json": "raw JSON (4 bodies as received)",
        "archive_zstd": "archive (zstd bodies + manifest)",
        "parquet_lake": "Parquet lake (3 tables)",
        "duckdb_raw": "DuckDB raw tables (build.duckdb after load)",
        "duckdb_build_with_marts": "build.duckdb with every dbt model",
        "analytics_db_plus_marts": "analytics.duckdb + daily marts Parquet",
    }
    lines = [
        "## 6. Storage",
        "",
        f"Mean bytes per snapshot over the {st['snapshots']} snapshots of the rebuilt history:",
        "",
        "| stage | per snapshot | JSON / stage |",
        "|---|---:|---:|",
    ]
    for key, value in b.items():
        ratio = f"{b['raw_json'] / value:.1f}" if value else "-"
        lines.append(f"| {labels.get(key, key)} | {_kb(value)} | {ratio} |")
    lines += ["", f"- Parquet per table: {st['parquet_per_table']}"]
    if "cohort_file_columns" in st:
        c = st["cohort_file_columns"]
        lines.append(
            f"- one cohort file ({c['rows']:,} rows), bytes per row by column: "
            + ", ".join(f"{k} {v}" for k, v in c["bytes_per_row"].items())
        )
    lines.append("")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The whole report: targets first, then each section with what it measured."""
    lines = [f"# Benchmarks, {results['started_at'][:10]}", ""]
    lines += _section_machine(results)
    lines += [
        "",
        "## Targets",
        "",
        "| what | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['name']} | {t['target']} | {t['measured']} | {_verdict(t['met'])} |")
    missed = [t for t in results["targets"] if t["met"] is False]
    if missed:
        lines += ["", "Missed, and why:", ""]
        lines += [f"- **{t['name']}**: {t['measured']} against {t['target']}. {t.get('why', '')}"
                  for t in missed]  # fmt: skip
    lines.append("")
    for part in (
        _section_scheduled,
        _section_rebuild,
        _section_loadpath,
        _section_peer,
        _section_storage,
    ):
        lines += part(results)
    h = results.get("history")
    if not h:  # a run of --only sections that need no history
        return "\n".join(lines)
    lines += [
        "## How the history was made",
        "",
        f"{h.get('snapshots')} snapshots ({h.get('ticks')} ticks of a `*/30` schedule) were "
        "written from the simulator's market straight into the production archive "
        f"(`RawArchive.begin().store()` + `commit_snapshot`) by 2 processes in "
        f"{h.get('seconds')} s; the rebuild above made the lake and the warehouse from that "
        "archive. The 1-day history is the last day of it, copied. `bench/README.md` says more.",
        "",
    ]
    return "\n".join(lines)
