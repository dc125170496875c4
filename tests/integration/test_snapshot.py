"""The snapshot flow against the simulated API over real HTTP: land, retry, quarantine, skip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.hypertracker.errors import AuthError, PayloadError, RequestFailed
from flows.lake.archive import read_zst, snapshot_id_for, write_zst
from flows.lake.from_archive import rebuild_lake
from flows.lake.parquet import read_lake_rows
from flows.lake.tables import BACKFILL_TABLES, PRICE_HISTORY_TABLES, TABLES
from flows.pipeline import snapshot_flow
from flows.settings import get_settings
from simulator.faults import Fault

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def lake_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "lake").rglob("*.parquet"))


def archived(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "archive").glob("date=*/snapshot_id=*"))


def test_clean_snapshot_lands_whole(env: Path, sim) -> None:
    outcome = snapshot_flow()
    assert outcome.stored
    assert outcome.snapshot_id == snapshot_id_for(sim.last_update)

    # The archive holds every window verbatim, with a manifest that accounts for each byte.
    (folder,) = archived(env)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest["bodies"]) == ["24h", "30d", "7d", "all"]
    for record in manifest["bodies"].values():
        assert record["http_status"] == 200
        assert record["url"].startswith(sim.base_url + "/positions/heatmap?openedWithin=")
        assert record["body_bytes"] > record["stored_bytes"] > 0

    # The lake has one file per table for the snapshot, typed as declared.
    day = folder.parent.name
    for table in ("snapshots", "heatmap_coins", "heatmap_cohorts"):
        path = env / "lake" / table / day / f"{outcome.snapshot_id}.parquet"
        assert pq.read_schema(path).remove_metadata() == TABLES[table].remove_metadata()
    coins = read_lake_rows(env / "lake", "heatmap_coins")
    cohorts = read_lake_rows(env / "lake", "heatmap_cohorts")
    assert set(coins.column("window").to_pylist()) == {"24h", "7d", "30d", "all"}
    assert coins.num_rows == outcome.rows["heatmap_coins"] > 4 * 250
    assert cohorts.num_rows == outcome.rows["heatmap_cohorts"] > coins.num_rows
    # The cohort ladder was fetched on the first run and landed as its own table.
    assert read_lake_rows(env / "lake", "segments").num_rows == 16


def test_same_state_is_skipped_and_force_refetches(env: Path, sim) -> None:
    first = snapshot_flow()
    files = {p: p.stat().st_mtime_ns for p in lake_files(env)}
    second = snapshot_flow()
    assert not second.stored
    assert second.snapshot_id == first.snapshot_id
    forced = snapshot_flow(force=True)
    assert forced.stored
    assert forced.snapshot_id == first.snapshot_id
    # Nothing in the lake changed: landing the same snapshot twice is a no-op.
    assert {p: p.stat().st_mtime_ns for p in lake_files(env)} == files
    assert len(archived(env)) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault("rate_limit", path="heatmap", window="7d", times=2, retry_after=0),
        Fault("rate_limit", path="heatmap", window="all", retry_after=0, retry_after_header=False),
        Fault("server_error", path="heatmap", status=503, times=2),
        Fault("server_error", path="status", status=502),
        Fault("drop", path="heatmap", window="24h"),
        Fault("truncate", path="heatmap", window="all"),
        Fault("slow", path="heatmap", window="30d", delay_s=3.0),  # beyond the 2 s read timeout
    ],
    ids=lambda f: f"{f.kind}-{f.path}-{f.window}",
)
def test_transport_faults_are_retried_to_success(env: Path, sim, fault: Fault) -> None:
    sim.inject(fault)
    outcome = snapshot_flow()
    assert outcome.stored
    assert fault.fired >= 1
    assert len(archived(env)) == 1
    assert not list((env / "quarantine").glob("*")) if (env / "quarantine").exists() else True


def test_retries_exhausted_fail_clearly_and_keep_nothing_partial(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HT_MAX_ATTEMPTS", "3")
    sim.inject(Fault("server_error", path="heatmap", window="7d", status=500, times=50))
    with pytest.raises(RequestFailed, match="500") as err:
        snapshot_flow()
    assert "7d" in str(err.value)
    assert archived(env) == []
    assert not (env / "lake" / "snapshots").exists()
    # What did arrive is kept aside, with a note, never lost and never loaded.
    partial = list((env / "archive" / "_partial").iterdir())
    assert len(partial) == 1
    assert (partial[0] / "note.json").exists()


@pytest.mark.parametrize(
    "kind",
    [
        "malformed_json",
        "missing_field",
        "string_numbers",
        "bias_out_of_range",
        "negative_count",
        "duplicate_coin",
        "empty_heatmap",
    ],
)
def test_bad_payloads_are_quarantined_and_earlier_data_kept(env: Path, sim, kind: str) -> None:
    good = snapshot_flow()
    before = {p: p.read_bytes() for p in lake_files(env)}
    sim.advance_to_next_state()
    sim.inject(Fault(kind, path="heatmap", window="30d"))
    with pytest.raises(PayloadError) as err:
        snapshot_flow()
    message = str(err.value)
    assert "30d" in message
    assert "quarantine" in message
    # Quarantined: the exact bytes the server sent plus a note that says why.
    (folder,) = list((env / "quarantine").iterdir())
    note = json.loads((folder / "note.json").read_text())
    assert note["errors"][0]["window"] == "30d"
    assert note["errors"][0]["reasons"]
    assert "?openedWithin=30d" in note["errors"][0]["url"]
    assert (folder / "30d.json.zst").exists()
    # Nothing of the bad snapshot reached the archive or the lake; the good one is intact.
    assert [p.name for p in archived(env)] == [f"snapshot_id={good.snapshot_id}"]
    assert {p: p.read_bytes() for p in lake_files(env)} == before


def test_schema_drift_that_is_harmless_is_kept(env: Path, sim) -> None:
    sim.inject(Fault("extra_field", path="heatmap", window="all"))
    sim.inject(Fault("unknown_segment", path="heatmap", window="7d"))
    outcome = snapshot_flow()
    assert outcome.stored
    cohorts = read_lake_rows(env / "lake", "heatmap_cohorts").to_pylist()
    unknown = [r for r in cohorts if not r["is_known_segment"]]
    assert unknown
    assert {r["segment_id"] for r in unknown} == {17}
    assert {r["window"] for r in unknown} == {"7d"}


def test_wrong_token_fails_fast(env: Path, sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HT_API_TOKEN", "not-the-token")
    sim.clear_request_log()
    with pytest.raises(AuthError, match="HT_API_TOKEN") as err:
        snapshot_flow()
    assert "not-the-token" not in str(err.value)
    assert len(sim.request_log) == 1  # no retry on 401


def test_state_change_mid_fetch_refetches_one_state(env: Path, sim) -> None:
    before = sim.last_update
    sim.inject(Fault("advance_state", path="heatmap", window="7d"))
    outcome = snapshot_flow()
    assert outcome.stored
    assert outcome.attempts == 2
    assert sim.last_update > before
    assert outcome.snapshot_id == snapshot_id_for(sim.last_update)
    snaps = read_lake_rows(env / "lake", "snapshots")
    assert set(snaps.column("snapshot_id").to_pylist()) == {outcome.snapshot_id}
    (aside,) = list((env / "archive" / "_partial").iterdir())
    assert json.loads((aside / "note.json").read_text())["reason"] == "state moved during fetch"


def test_interrupted_landing_leaves_lake_consistent_and_rerun_completes(
    env: Path, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls = {"n": 0}

    def crash_on_second_lake_rename(src, dst):
        if str(dst).endswith(".parquet"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("simulated crash between write and rename")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second_lake_rename)
    with pytest.raises(OSError, match="simulated crash"):
        snapshot_flow()
    monkeypatch.setattr(os, "replace", real_replace)

    # The archive has the snapshot (stored first); the lake has no half-written file and
    # no commit mark, so no reader counts the snapshot as landed.
    assert len(archived(env)) == 1
    assert not list((env / "lake").rglob(".tmp-*"))
    assert not (env / "lake" / "snapshots").exists()
    settings = get_settings()
    from flows.warehouse import complete_lake_snapshots

    assert complete_lake_snapshots(settings.lake_dir) == []

    # A forced re-run (the state is archived already) completes the landing.
    outcome = snapshot_flow(force=True)
    assert complete_lake_snapshots(settings.lake_dir) == [outcome.snapshot_id]


def test_rebuild_from_archive_gives_identical_rows(env: Path, sim) -> None:
    for _ in range(3):
        snapshot_flow()
        sim.advance_to_next_state()
    settings = get_settings()
    original = {t: read_lake_rows(settings.lake_dir, t) for t in TABLES}
    import shutil

    shutil.rmtree(settings.lake_dir)
    assert rebuild_lake(settings) == 3
    for table, rows in original.items():
        rebuilt = read_lake_rows(settings.lake_dir, table)
        # The price history is the ELT run's own step (tests/integration/test_market.py), and
        # backfilled states come from `ht backfill` (tests/integration/test_backfill.py).
        optional = PRICE_HISTORY_TABLES + BACKFILL_TABLES
        assert rebuilt.num_rows == rows.num_rows > (-1 if table in optional else 0)
        assert rebuilt.equals(rows), table


@pytest.mark.parametrize("damage", ["altered", "unreadable"])
def test_rebuild_refuses_a_damaged_archive_and_names_the_snapshot(
    env: Path, sim, damage: str
) -> None:
    import shutil

    for _ in range(2):
        snapshot_flow()
        sim.advance_to_next_state()
    settings = get_settings()
    shutil.rmtree(settings.lake_dir)
    folder = archived(env)[1]
    body = folder / "7d.json.zst"
    if damage == "altered":  # still a valid heatmap, but not the bytes the manifest hashed
        doc = json.loads(read_zst(body))
        doc["heatmap"][0]["count"] += 0  # same values, another serialisation
        write_zst(body, json.dumps(doc, indent=1).encode())
    else:
        write_zst(body, b'{"heatmap": [')
    with pytest.raises(ValueError, match=folder.name.split("=")[1]) as err:
        rebuild_lake(settings)
    assert "restore it from a backup" in str(err.value)
    # Nothing of the batch that held the damaged snapshot was landed.
    assert not (settings.lake_dir / "snapshots").exists()
