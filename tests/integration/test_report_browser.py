"""The heatmap report and the docs site, built from a demo warehouse and opened in Chromium.

The report is written to a temporary folder (the shared demo warehouse is only read), served
on 127.0.0.1 and opened in headless Chromium (Debian's ``chromium``, never a downloaded
browser). The checks: the board renders the expected cells for every window, the numbers
are the warehouse's, nothing logs an error, and no request leaves 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

from flows.analyst import build_docs, running_site, write_report
from flows.analyst.data import ReportDataError, connect, load_history
from flows.analyst.scale import LADDER_ORDER
from flows.settings import WINDOWS, Settings, get_settings

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("HT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def settings(demo_warehouse: Path) -> Settings:
    return get_settings(data_dir=demo_warehouse)


@pytest.fixture(scope="module")
def site(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report and the docs page, written to a fresh folder."""
    out = tmp_path_factory.mktemp("site") / "reports"
    latest = write_report(settings, out_dir=out)
    assert latest == out / "latest.html"
    docs = build_docs(settings, out_dir=out)
    assert docs == out / "docs.html"
    return out


@pytest.fixture(scope="module")
def expected(settings: Settings) -> dict[str, object]:
    """What the board should show, straight from the warehouse."""
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        snapshot_id, last_update = con.execute(
            "select snapshot_id, max(last_update) from marts.heatmap_board_latest "
            "group by snapshot_id order by snapshot_id desc limit 1"
        ).fetchone()  # type: ignore[misc]
        coins = [
            r[0]
            for r in con.execute(
                "select coin from marts.fct_coin_snapshots "
                "where snapshot_id = ? and \"window\" = 'all' and total_usd > 0 "
                "order by total_usd desc, coin limit ?",
                [snapshot_id, settings.top_coins],
            ).fetchall()
        ]
        windows = [
            r[0]
            for r in con.execute(
                'select distinct "window" from marts.heatmap_board_latest'
            ).fetchall()
        ]
        first_day = con.execute("select min(snapshot_date) from marts.coin_bias_daily").fetchone()
    finally:
        con.close()
    return {
        "snapshot_id": snapshot_id,
        "last_update": last_update,
        "coins": coins,
        "windows": [w for w in WINDOWS if w in windows],
        "first_day": first_day[0] if first_day else None,
    }


def chromium_or_skip() -> Path:
    """Chromium's path; a clear failure in CI when it is missing, a skip elsewhere."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the Python package playwright is not installed (uv sync)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need a browser: {problem}")
        pytest.skip(problem)
    return CHROMIUM


class Recorder:
    """Every request, console error and page error a browser context produced."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []

    def attach(self, context) -> None:  # context: playwright BrowserContext
        context.on("request", lambda r: self.requests.append(r.url))
        context.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

    def watch(self, page) -> None:  # page: playwright Page
        # Errors only (a blocked load, a CSP violation, a 404, a script error): Chromium's
        # warnings include deprecation notes about dbt's bundled libraries.
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def outside(self, *, allow_file: bool = False) -> list[str]:
        bad = []
        for url in self.requests:
            parsed = urlparse(url)
            if parsed.scheme in ("data", "blob") or (allow_file and parsed.scheme == "file"):
                continue
            if parsed.scheme in ("http", "https") and parsed.hostname in LOCAL_HOSTS:
                continue
            bad.append(url)
        return bad


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[object, Recorder]]:
    """A fresh headless Chromium (new profile) whose every request is recorded."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    recorder = Recorder()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(executable),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1500, "height": 1000},
            service_workers="block",
        )
        context.set_default_timeout(60_000)
        recorder.attach(context)
        try:
            yield context, recorder
        finally:
            context.close()


def shot(page, tmp_path: Path, name: str, *, full_page: bool = False) -> Path:  # page: Page
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


# --------------------------------------------------------------------------- files and numbers


def test_report_files_are_written(site: Path, expected: dict[str, object]) -> None:
    snapshot_id = str(expected["snapshot_id"])
    day = f"{expected['last_update']:%Y-%m-%d}"
    dated = site / day / f"{snapshot_id}.html"
    assert dated.exists()
    for kind in ("board", "history"):
        png = site / day / f"{snapshot_id}-{kind}-all.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert (site / f"latest-{kind}.png").read_bytes() == png.read_bytes()
    latest = (site / "latest.html").read_text(encoding="utf-8")
    assert snapshot_id in latest
    # A web page for any reader of the folder, and no temporary file left behind.
    assert stat.S_IMODE((site / "latest.html").stat().st_mode) == 0o644
    assert not [p for p in site.rglob(".tmp-*")]
    # Self-contained: nothing but data URIs, in-page anchors and our own files is referenced.
    refs = re.findall(r'(?:src|href)="([^"]*)"', latest)
    assert refs
    for ref in refs:
        assert ref.startswith(("data:", "#")) or not urlparse(ref).scheme, ref
        if not ref.startswith(("data:", "#")):
            assert (site / ref).exists(), f"broken link {ref}"


def test_board_holds_the_warehouse_numbers(
    site: Path, settings: Settings, expected: dict[str, object]
) -> None:
    page = (site / "latest.html").read_text(encoding="utf-8")
    table = re.search(
        r'<table class="board" data-kind="bias" data-window="all">(.*?)</table>', page, re.S
    )
    assert table
    cells = re.findall(r'<td class="([^"]*)" ([^>]*)>', table.group(1))
    coins = list(expected["coins"])  # type: ignore[call-overload]
    assert len(cells) == len(coins) * 16
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        truth = {
            (coin, seg): (bias, total)
            for coin, seg, bias, total in con.execute(
                "select coin, segment_id, bias, total_usd from marts.fct_cohort_snapshots "
                "where snapshot_id = ? and \"window\" = 'all'",
                [expected["snapshot_id"]],
            ).fetchall()
        }
    finally:
        con.close()
    seen_coins = []
    for i, (classes, attrs) in enumerate(cells):
        a = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        coin = a["data-coin"].replace("&amp;", "&")
        seg = int(a["data-cohort"])
        assert seg == LADDER_ORDER[i % 16]
        if i % 16 == 0:
            seen_coins.append(coin)
        bias, total = truth[(coin, seg)]
        if "absent" in classes.split():
            # Absent = no positions, and no bias at all: never a made-up 0.5.
            assert not total
            assert "data-bias" not in a
        else:
            assert float(a["data-bias"]) == pytest.approx(bias, abs=5e-5)
            assert float(a["data-usd"]) == pytest.approx(total, abs=1)
    assert seen_coins == coins


def test_smart_retail_spread_matches_the_daily_mart(
    settings: Settings, expected: dict[str, object]
) -> None:
    with connect(settings.analytics_db_path) as con:
        history = load_history(
            con,
            "BTC",
            "all",
            until=expected["last_update"],
            days=30,  # type: ignore[arg-type]
        )
    assert len(history.times) > 50
    assert history.daily_spread, "the mart has day closes for BTC"
    by_time = dict(zip(history.times, history.spread_pp, strict=True))
    for close_at, mart_pp in history.daily_spread:
        assert by_time[close_at] == pytest.approx(mart_pp, abs=1e-9)


def test_report_for_an_older_day_leaves_latest_alone(
    site: Path, settings: Settings, expected: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    shutil.copytree(site, out)
    before = (out / "latest.html").read_bytes()
    day = expected["first_day"]
    assert isinstance(day, dt.date)
    path = write_report(settings, day=day, out_dir=out)
    assert path.parent == out / f"{day:%Y-%m-%d}"
    assert path.name != "latest.html"
    assert "not the newest" in path.read_text(encoding="utf-8")
    assert (out / "latest.html").read_bytes() == before
    # The day-over-day board as a PNG too, on request.
    snapshot_id = path.stem
    assert (path.parent / f"{snapshot_id}-day-over-day-all.png").exists() is False
    write_report(settings, day=day, out_dir=out, day_over_day_png=True)
    png = path.parent / f"{snapshot_id}-day-over-day-all.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_coin_says_what_to_do(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ReportDataError, match=r"'btc'.*did you mean .*BTC"):
        write_report(settings, coin="btc", out_dir=tmp_path)


def test_missing_warehouse_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ReportDataError, match="make demo"):
        write_report(get_settings(data_dir=tmp_path / "nothing"))


# --------------------------------------------------------------------------- in the browser


@pytest.mark.browser
def test_report_renders_every_window(
    site: Path, expected: dict[str, object], browser, tmp_path: Path
) -> None:
    context, recorder = browser
    n = len(expected["coins"])  # type: ignore[arg-type]
    assert n == 30  # the simulated market lists far more than 30 coins
    with running_site(site) as url:
        page = context.new_page()
        recorder.watch(page)
        page.goto(url + "latest.html", wait_until="load")
        # The newest window shown first is `all`, HyperTracker's default.
        assert page.get_attribute("body", "data-window") == "all"
        for window in expected["windows"]:  # type: ignore[attr-defined]
            page.click(f'nav.windows button[data-show="{window}"]')
            board = page.locator(f'table.board[data-kind="bias"][data-window="{window}"]')
            assert board.is_visible()
            assert page.locator('table.board[data-kind="bias"]:visible').count() == 1
            cells = page.locator('table.board[data-kind="bias"] td.cell:visible')
            assert cells.count() == n * 16, f"window {window}"
            changes = page.locator('table.board[data-kind="change"] td.cell:visible')
            assert changes.count() == n * 16, f"day over day, window {window}"
            rows = board.locator("tbody tr")
            assert rows.count() == n
            first_row = rows.first.locator("td.cell")
            assert [
                int(first_row.nth(i).get_attribute("data-cohort") or 0) for i in range(16)
            ] == list(LADDER_ORDER)
            # Every visible chart decoded (a broken data URI has no natural width).
            widths = page.eval_on_selector_all(
                "img:not([hidden])",
                "els => els.filter(e => e.offsetParent).map(e => e.naturalWidth)",
            )
            assert widths
            assert all(w > 100 for w in widths), widths
            shot(page, tmp_path, f"report-{window}")
            page.locator("#history").scroll_into_view_if_needed()
            shot(page, tmp_path, f"report-{window}-history")
        # The grey cells are there where a cohort holds nothing (short windows have some).
        page.click('nav.windows button[data-show="24h"]')
        absent = page.locator('table.board[data-kind="bias"] td.cell.absent:visible')
        assert absent.count() > 0
        assert absent.first.get_attribute("data-bias") is None
        # The window is linkable.
        assert page.evaluate("location.hash") == "#window=24h"
        page.goto(url + "latest.html#window=7d", wait_until="load")
        page.wait_for_function("document.body.getAttribute('data-window') === '7d'")
        page.reload(wait_until="load")  # a fresh load honours the hash too
        assert page.get_attribute("body", "data-window") == "7d"
        shot(page, tmp_path, "report-full", full_page=True)
        page.goto(url, wait_until="load")  # the index lists what there is
        assert page.locator('a[href="latest.html"]').count() == 1
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(), recorder.outside()
    assert any(u.endswith("/latest.html") for u in recorder.requests)


@pytest.mark.browser
def test_report_works_from_disk(site: Path, expected: dict[str, object], browser, tmp_path) -> None:
    context, recorder = browser
    page = context.new_page()
    recorder.watch(page)
    page.goto((site / "latest.html").as_uri(), wait_until="load")
    n = len(expected["coins"])  # type: ignore[arg-type]
    assert page.locator('table.board[data-kind="bias"] td.cell:visible').count() == n * 16
    shot(page, tmp_path, "report-from-disk")
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(allow_file=True), recorder.outside(allow_file=True)


@pytest.mark.browser
def test_docs_site_works_offline(site: Path, browser, tmp_path: Path) -> None:
    context, recorder = browser
    with running_site(site) as url:
        page = context.new_page()
        recorder.watch(page)
        page.goto(url + "docs.html", wait_until="load")
        # The Angular app rendered the overview from the manifest inlined in the page.
        page.locator("h1").filter(visible=True).first.wait_for()
        page.wait_for_load_state("networkidle")
        shot(page, tmp_path, "docs-overview")
        page.goto(url + "docs.html#!/model/model.hyperliquid_cohorts.cohort_day_over_day")
        heading = page.locator("h1").filter(has_text="cohort_day_over_day").filter(visible=True)
        heading.first.wait_for()
        # Columns come from the catalog: proof that the inlined catalog loaded too.
        column = page.get_by_text("bias_change_pp", exact=True).filter(visible=True)
        column.first.wait_for()
        page.wait_for_load_state("networkidle")
        shot(page, tmp_path, "docs-model")
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(), recorder.outside()


def test_the_report_flow_draws_each_published_snapshot_once(
    demo_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.pipeline import report_flow

    # A data folder of its own holding the demo's analytics file (its views point at the
    # demo's published Parquet by absolute path), so the demo folder stays read-only.
    data = tmp_path / "data"
    target = get_settings(data_dir=data).analytics_db_path
    target.parent.mkdir(parents=True)
    shutil.copy(get_settings(data_dir=demo_warehouse).analytics_db_path, target)
    monkeypatch.setenv("HT_DATA_DIR", str(data))

    first = Path(report_flow())
    assert first.name == "latest.html"
    assert first.parent == data / "reports"
    dated = list((data / "reports").glob("*/*.html"))
    assert len(dated) == 1
    assert report_flow() == "up to date"
    assert list((data / "reports").glob("*/*.html")) == dated


def test_the_report_flow_waits_for_a_first_publish(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.pipeline import report_flow

    monkeypatch.setenv("HT_DATA_DIR", str(tmp_path / "empty"))
    assert report_flow() == "nothing published yet"
    assert not (tmp_path / "empty" / "reports").exists()
