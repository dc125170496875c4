"""The DuckDB normaliser: it flags every body the strict validator rejects, keeps the rows
exactly, and finds the relations across windows that a straddled fetch breaks."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.lake.archive import write_zst
from flows.lake.normalise import Normalised, body_files, normalise, structure_problems
from flows.lake.tables import TABLES
from tests.unit.test_payload import CASES, btc, edited, seed_doc, seg, synthetic_heatmap

SID = "20261124T150000000Z"
FIXTURE = HealthCheck.function_scoped_fixture
AT = datetime(2026, 11, 24, 15, 0)


def store(folder: Path, docs: dict[str, Any]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for window, doc in docs.items():
        paths[window] = folder / f"{window}.json.zst"
        write_zst(paths[window], doc if isinstance(doc, bytes) else orjson.dumps(doc))
    return paths


def check(folder: Path, docs: dict[str, Any]) -> tuple[dict[str, list[str]], Normalised | None]:
    """What the live path flags per window (JSON types, then row checks), and the rows."""
    paths = store(folder, docs)
    flagged: dict[str, list[str]] = {}
    try:
        for window, (problems, _) in structure_problems(paths).items():
            if problems:
                flagged[window] = problems
        checked = normalise(body_files(SID, AT, paths))
    except duckdb.Error as exc:
        return {w: [str(exc)] for w in paths}, None
    for (_, window), problems in checked.problems.items():
        flagged.setdefault(window, []).extend(problems)
    return flagged, checked


def total_values(table: pa.Table) -> list[float]:
    return table.column("total_value").to_pylist()


# --- a good body -----------------------------------------------------------------------------
def test_the_seed_example_passes_with_its_rows_exact(tmp_path: Path) -> None:
    flagged, checked = check(tmp_path, {"all": seed_doc()})
    assert flagged == {}
    assert checked is not None
    rows = checked.rows_of(SID)
    coins, cohorts = rows["heatmap_coins"], rows["heatmap_cohorts"]
    assert coins.schema == TABLES["heatmap_coins"]
    assert cohorts.schema == TABLES["heatmap_cohorts"]
    assert coins.column("segment_count").to_pylist() == [16]
    assert total_values(coins) == [1243320305.98032]
    doc = seed_doc()
    assert total_values(cohorts) == [s["totalValue"] for s in btc(doc)["segments"]]
    assert cohorts.column("segment_id").to_pylist() == list(range(1, 17))
    assert cohorts.column("bias").to_pylist()[0] == 0.614
    assert cohorts.column("count_short").to_pylist()[15] == 3895
    assert all(cohorts.column("is_known_segment").to_pylist())
    assert set(cohorts.column("snapshot_id").to_pylist()) == {SID}


def test_extra_fields_are_drift_not_problems(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["generatedAt"] = "2026-11-24T15:30:00Z"
        btc(d)["markPrice"] = 97000.5
        seg(d, 3)["avgLeverage"] = 4.2

    paths = store(tmp_path, {"all": edited(edit)})
    problems, extra = structure_problems(paths)["all"]
    assert problems == []
    assert set(extra) == {"generatedAt", "heatmap[].markPrice", "heatmap[].segments[].avgLeverage"}
    flagged, _ = check(tmp_path / "again", {"all": edited(edit)})
    assert flagged == {}


def test_unknown_segment_id_is_kept_and_flagged(tmp_path: Path) -> None:
    doc = seed_doc()
    extra = copy.deepcopy(seg(doc, 0))
    extra["segmentId"] = 17
    btc(doc)["segments"].append(extra)
    flagged, checked = check(tmp_path, {"7d": doc})
    assert flagged == {}
    assert checked is not None
    assert checked.unknown_segment_ids == {(SID, "7d"): [17]}
    cohorts = checked.rows_of(SID)["heatmap_cohorts"]
    assert cohorts.column("is_known_segment").to_pylist() == [True] * 16 + [False]


def test_values_within_tolerance_pass(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        seg(d, 0)["totalValue"] += 0.005
        seg(d, 0)["bias"] = 0.615

    flagged, _ = check(tmp_path, {"all": edited(edit)})
    assert flagged == {}


# --- every body the strict validator rejects is flagged ---------------------------------------
@pytest.mark.parametrize("edit", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_every_rejected_kind_of_drift_is_flagged(tmp_path: Path, edit: Any) -> None:
    flagged, _ = check(tmp_path, {"all": edited(edit), "24h": seed_doc()})
    assert "all" in flagged
    assert flagged["all"]


def test_reasons_name_the_check_a_count_and_an_example(tmp_path: Path) -> None:
    flagged, _ = check(tmp_path, {"all": edited(lambda d: seg(d, 2).update(count=457))})
    assert flagged["all"] == [
        "heatmap[].segments[]: count != countLong + countShort in 1 row(s), e.g. BTC segment 3"
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n_coins=st.integers(1, 6), n_segments=st.integers(0, 16), seed=st.integers(0, 10_000))
def test_generated_valid_payloads_pass_with_every_row(
    tmp_path_factory: pytest.TempPathFactory, n_coins: int, n_segments: int, seed: int
) -> None:
    doc = synthetic_heatmap(n_coins, n_segments, seed)
    flagged, checked = check(tmp_path_factory.mktemp("gen"), {"all": doc})
    assert flagged == {}
    assert checked is not None
    rows = checked.rows_of(SID)
    assert rows["heatmap_cohorts"].num_rows == n_coins * n_segments
    assert rows["heatmap_coins"].column("count").to_pylist() == [c["count"] for c in doc["heatmap"]]
    assert total_values(rows["heatmap_coins"]) == [c["totalValue"] for c in doc["heatmap"]]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    field=st.sampled_from(["count", "countLong", "countShort", "totalValue", "bias"]),
    delta=st.integers(1, 1000),
)
def test_any_broken_row_is_flagged(
    tmp_path_factory: pytest.TempPathFactory, seed: int, field: str, delta: int
) -> None:
    doc = synthetic_heatmap(3, 5, seed)
    row = doc["heatmap"][1]["segments"][2]
    row[field] += delta if field != "bias" else delta / 500 + 0.002
    flagged, _ = check(tmp_path_factory.mktemp("broken"), {"all": doc})
    assert flagged.get("all"), (field, delta)


# --- totalValue is kept exactly ----------------------------------------------------------------
def test_total_value_is_the_apis_double_bit_for_bit(tmp_path: Path) -> None:
    # A row of dust beside a bigger short (valid: within the one-cent tolerance): its
    # totalValue is not long + short, and the lake keeps the API's value, not a sum.
    doc = seed_doc()
    row = seg(doc, 0)
    total, long_v, short_v = 7.3e-10, 3.65e-10, 0.0023
    row.update(totalValue=total, totalLongValue=long_v, totalShortValue=short_v)
    row["bias"] = round(long_v / total, 3)
    flagged, checked = check(tmp_path, {"all": doc})
    assert flagged == {}
    assert checked is not None
    cohorts = checked.rows_of(SID)["heatmap_cohorts"]
    assert total_values(cohorts) == [s["totalValue"] for s in btc(doc)["segments"]]
    assert total_values(cohorts)[0] != long_v + short_v


# --- relations across windows: warnings --------------------------------------------------------
def warnings_for(folder: Path, docs: dict[str, Any]) -> list[str]:
    flagged, checked = check(folder, docs)
    assert flagged == {}
    assert checked is not None
    return checked.warnings.get(SID, [])


def test_window_nesting_violations_are_found(tmp_path: Path) -> None:
    doc = seed_doc()
    # A 24h window with more Fish positions in BTC than window "all": impossible at one instant.
    for row in (btc(doc), seg(doc, 0)):
        row["countLong"] += 100
        row["count"] += 100
    warnings = warnings_for(tmp_path, {"24h": doc, "all": seed_doc()})
    nesting = [w for w in warnings if w.startswith("window nesting: count in 24h > count in all")]
    assert len(nesting) == 1, warnings
    assert "BTC/segment 1 (10691 > 10591)" in nesting[0]
    assert "BTC (23855 > 23755)" in nesting[0]


def test_nested_windows_pass(tmp_path: Path) -> None:
    doc = seed_doc()
    for row in [btc(doc), *btc(doc)["segments"]]:
        row["countLong"] //= 2
        row["countShort"] //= 2
        row["count"] = row["countLong"] + row["countShort"]
    warnings = warnings_for(tmp_path, {"24h": doc, "all": seed_doc()})
    assert not [w for w in warnings if w.startswith("window nesting")], warnings


def test_a_coin_missing_from_a_larger_window_is_found(tmp_path: Path) -> None:
    doc = seed_doc()
    eth = copy.deepcopy(btc(doc))
    eth["coin"] = "ETH"
    for s in eth["segments"]:
        s["coin"] = "ETH"
    doc["heatmap"].append(eth)
    warnings = warnings_for(tmp_path, {"7d": doc, "30d": seed_doc()})
    assert any("count in 7d > count in 30d" in w and "ETH" in w for w in warnings), warnings


def test_ladder_and_long_short_breaks_are_found(tmp_path: Path) -> None:
    doc = seed_doc()
    for row in (btc(doc), seg(doc, 15)):  # one more Shrimp with no PnL-ladder counterpart
        row["countLong"] += 1
        row["count"] += 1
    coin = btc(doc)
    coin["totalLongValue"] += 1000.0
    coin["totalValue"] += 1000.0
    warnings = warnings_for(tmp_path, {"all": doc})
    assert any("size ladder != PnL ladder" in w and "BTC" in w for w in warnings), warnings
    assert any("coin long value != short value" in w for w in warnings), warnings
    assert warnings_for(tmp_path / "clean", {"all": seed_doc()}) == []


# --- several snapshots in one pass ---------------------------------------------------------------
def test_a_batch_keeps_each_snapshot_apart(tmp_path: Path) -> None:
    # Big enough that DuckDB reads the files in parallel and out of order (a rebuild's
    # batch): each snapshot's rows must still come out whole, apart, in the API's order.
    files = []
    docs = {}
    for i in range(12):
        sid = f"20261124T15{i:02d}00000Z"
        docs[sid] = synthetic_heatmap(300 + i, 16, seed=i)  # real-sized bodies
        paths = store(tmp_path / sid, {w: docs[sid] for w in ("24h", "7d", "30d", "all")})
        files += body_files(sid, datetime(2026, 11, 24, 15, i), paths)
    checked = normalise(files[::-1])
    assert checked.problems == {}
    for sid, doc in docs.items():
        rows = checked.rows_of(sid)
        coins, cohorts = rows["heatmap_coins"], rows["heatmap_cohorts"]
        assert set(coins.column("snapshot_id").to_pylist()) == {sid}
        assert set(cohorts.column("snapshot_id").to_pylist()) == {sid}
        names = [c["coin"] for c in doc["heatmap"]]
        assert coins.column("coin").to_pylist() == names * 4  # windows 24h, 30d, 7d, all
        assert cohorts.num_rows == 4 * len(names) * 16
    assert normalise(files).cohorts.equals(checked.cohorts)  # the same, whatever the order


def test_a_body_that_is_not_json_fails_the_pass(tmp_path: Path) -> None:
    paths = store(tmp_path, {"all": b'{"heatmap": [', "24h": seed_doc()})
    with pytest.raises(duckdb.Error):
        normalise(body_files(SID, AT, paths))
