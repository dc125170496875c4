"""The heatmap report and the docs site, built from a demo warehouse and opened in Chromium.

The report is written to a temporary folder (the shared demo warehouse is only read), served
on 127.0.0.1 and opened in headless Chromium (Debian's ``chromium``, never a downloaded
browser). The checks: the numbers are the warehouse's; the boards' headings and coin column
stay in view while they scroll; sorting, the coin filter, the minimum notional, the coin
picker and the day slider change what they should; with market data (tables made here in a
copy of the warehouse) the price line, open interest, funding and the flow/price split
appear, and without it a note says so; nothing logs an error and no request leaves 127.0.0.1.
Screenshots of every view at desktop (1400px) and phone (390px) widths are kept in the test's
folder (``HT_REPORT_SHOTS`` names another) to be looked at.

``HT_REPORT_DEMO=<data folder>`` reuses a demo already built (``ht demo --data-dir``) instead
of building the session's two-day one: the inner loop while working on the report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

from flows.analyst import build_docs, data, payload, running_site, write_report
from flows.analyst.data import (
    BUCKETS_MINUTES,
    ReportDataError,
    connect,
    load_history,
    load_history_grid,
)
from flows.analyst.scale import LADDER_ORDER, bias_colour, size_weight, weighted
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
def demo_data(request: pytest.FixtureRequest) -> Path:
    """The demo's data folder: ``HT_REPORT_DEMO`` if set, else the session's demo warehouse."""
    given = os.environ.get("HT_REPORT_DEMO")
    if given:
        return Path(given)
    return request.getfixturevalue("demo_warehouse")


@pytest.fixture(scope="module")
def settings(demo_data: Path) -> Settings:
    return get_settings(data_dir=demo_data)


@pytest.fixture(scope="module")
def site(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report, written to a fresh folder."""
    out = tmp_path_factory.mktemp("site") / "reports"
    latest = write_report(settings, out_dir=out)
    assert latest == out / "latest.html"
    return out


@pytest.fixture(scope="module")
def docs_site(site: Path, settings: Settings) -> Path:
    """The report's folder with the docs page beside it (apart: a docs build that fails
    says so in the tests that need it, not in every report test)."""
    docs = build_docs(settings, out_dir=site)
    assert docs == site / "docs.html"
    return site


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


def test_report_files_are_written(docs_site: Path, expected: dict[str, object]) -> None:
    site = docs_site
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


def page_data(page: str) -> dict:
    """The JSON document a report page holds."""
    pattern = r'<script type="application/json" id="report-data">(.*?)</script>'
    block = re.search(pattern, page, re.S)
    assert block
    return json.loads(block.group(1))


def test_board_holds_the_warehouse_numbers(
    site: Path, settings: Settings, expected: dict[str, object]
) -> None:
    document = page_data((site / "latest.html").read_text(encoding="utf-8"))
    coins = list(expected["coins"])  # type: ignore[call-overload]
    assert document["coins"] == coins
    assert [c[0] for c in document["cohorts"]] == list(LADDER_ORDER)
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        truth = {
            (w, coin, seg): (bias, total)
            for w, coin, seg, bias, total in con.execute(
                'select "window", coin, segment_id, bias, total_usd '
                "from marts.fct_cohort_snapshots where snapshot_id = ?",
                [expected["snapshot_id"]],
            ).fetchall()
        }
        closes = {
            (str(d), w, coin, seg): (bias, total, pp)
            for d, w, coin, seg, bias, total, pp in con.execute(
                'select snapshot_date, "window", coin, segment_id, bias, total_usd, '
                "bias_change_pp from marts.cohort_day_over_day"
            ).fetchall()
        }
    finally:
        con.close()
    for window in expected["windows"]:  # type: ignore[attr-defined]
        # The newest day shows the snapshot itself.
        day = document["boards"][window][-1]
        biases, totals = day["b"].split(","), day["v"].split(",")
        assert len(biases) == len(coins) * 16
        for i, (b, v) in enumerate(zip(biases, totals, strict=True)):
            coin, seg = coins[i // 16], LADDER_ORDER[i % 16]
            bias, total = truth.get((window, coin, seg), (None, None))
            if not total:
                # No positions: no bias at all, never a made-up 0.5.
                assert b == "", (window, coin, seg)
            else:
                assert int(b) / 1e4 == pytest.approx(bias, abs=5e-5)
                assert float(v) == pytest.approx(total, rel=5e-3)
        # An earlier day shows the mart's close and its day-over-day change.
        first = document["days"][0]["day"]
        day = document["boards"][window][0]
        biases, changes = day["b"].split(","), day["c"].split(",")
        for i, (b, c) in enumerate(zip(biases, changes, strict=True)):
            coin, seg = coins[i // 16], LADDER_ORDER[i % 16]
            bias, total, pp = closes.get((first, window, coin, seg), (None, None, None))
            assert (b == "") == (bias is None or not total)
            if b:
                assert int(b) / 1e4 == pytest.approx(bias, abs=5e-5)
            assert (c == "") == (pp is None)
            if c:
                assert int(c) / 10 == pytest.approx(pp, abs=0.05)


def test_report_is_small_enough_to_keep_daily(site: Path) -> None:
    size = (site / "latest.html").stat().st_size
    print(f"report size: {size / 1e6:.2f} MB")
    assert size < 3_000_000


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


def test_history_grid_closes_are_the_marts(settings: Settings, expected: dict[str, object]) -> None:
    """Each hourly point is the bucket's last snapshot: at a day's close, the mart's value."""
    coins = list(expected["coins"])[:5]  # type: ignore[call-overload]
    with connect(settings.analytics_db_path) as con:
        grid = load_history_grid(
            con,
            coins,
            ["all", "24h"],
            until=expected["last_update"],  # type: ignore[arg-type]
            days=30,
            max_points=180,
            market=False,
        )
    # The narrowest bucket within the budget: 30 minutes over two days, hourly over a week.
    assert grid.bucket_minutes in BUCKETS_MINUTES
    assert grid.points <= 180
    if grid.bucket_minutes > BUCKETS_MINUTES[0]:
        narrower = BUCKETS_MINUTES[BUCKETS_MINUTES.index(grid.bucket_minutes) - 1]
        assert (grid.last_at - grid.first_at).total_seconds() / 60 / narrower > 180
    checked = 0
    for key, closes in grid.closes.items():
        for point, pp in closes:
            if pp is not None:
                assert grid.spread_pp[key][point] == pytest.approx(pp, abs=1e-9), key
                checked += 1
    assert checked >= len(coins)


def test_divergence_table_is_the_marts(
    site: Path, settings: Settings, expected: dict[str, object]
) -> None:
    document = page_data((site / "latest.html").read_text(encoding="utf-8"))
    day = document["days"][-1]["day"]
    con = duckdb.connect(str(settings.analytics_db_path), read_only=True)
    try:
        truth = dict(
            con.execute(
                "select coin, smart_minus_retail_pp from marts.smart_retail_divergence_daily "
                "where snapshot_date = ? and \"window\" = 'all'",
                [day],
            ).fetchall()
        )
    finally:
        con.close()
    spreads = document["divergence"]["all"][-1]["sp"].split(",")
    for coin, sp in zip(document["coins"], spreads, strict=True):
        want = truth.get(coin)
        assert (sp == "") == (want is None)
        if sp:
            assert int(sp) / 10 == pytest.approx(want, abs=0.05)


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

DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``HT_REPORT_SHOTS`` when set (to look at them), else the test's."""
    folder = Path(os.environ.get("HT_REPORT_SHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_report(context, recorder: Recorder, url: str, viewport: dict[str, int]):
    page = context.new_page()
    page.set_viewport_size(viewport)
    recorder.watch(page)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#bias-board tbody tr")
    return page


def rows(page, board: str = "bias") -> list[str]:
    return page.eval_on_selector_all(
        f"#{board}-board tbody tr[data-coin]", "rs => rs.map(r => r.dataset.coin)"
    )


def view_shots(page, shots: Path, label: str) -> None:
    """One screenshot per section of the page, each scrolled to the top of the screen."""
    for section in ("board", "day-over-day", "history", "divergence"):
        page.evaluate(
            "id => window.scrollTo(0, document.getElementById(id).offsetTop - "
            "document.getElementById('controls').offsetHeight)",
            section,
        )
        shot(page, shots, f"{label}-{section}")


@pytest.mark.browser
def test_report_is_interactive(
    site: Path, expected: dict[str, object], browser, shots: Path
) -> None:
    context, recorder = browser
    coins = list(expected["coins"])  # type: ignore[call-overload]
    assert len(coins) == 30  # the simulated market lists far more than 30 coins
    with running_site(site) as url:
        page = open_report(context, recorder, url + "latest.html", DESKTOP)
        # HyperTracker's default window first, the newest day, BTC's history.
        assert page.get_attribute("body", "data-window") == "all"
        assert page.get_attribute("body", "data-coin") == "BTC"
        # Open interest order, as the warehouse ranks the coins.
        assert rows(page) == coins
        for window in expected["windows"]:  # type: ignore[attr-defined]
            page.click(f'#window-buttons button[data-show="{window}"]')
            assert page.get_attribute("#bias-board", "data-window") == window
            assert page.locator("#bias-board td.cell").count() == len(coins) * 16
            assert page.locator("#change-board td.cell").count() == len(coins) * 16
            first = page.locator("#bias-board tbody tr").first.locator("td.cell")
            cohorts = [int(first.nth(i).get_attribute("data-cohort") or 0) for i in range(16)]
            assert cohorts == list(LADDER_ORDER)
        page.click('#window-buttons button[data-show="all"]')

        # Sorting: by Money Printer's bias, then the other way round.
        sort = page.locator('#bias-board th.cohort[data-cohort="8"] button.sort')
        sort.click()
        by_bias = rows(page)
        assert by_bias != coins
        values = page.eval_on_selector_all(
            '#bias-board td.cell[data-cohort="8"]',
            "cs => cs.map(c => c.dataset.bias === undefined ? null : +c.dataset.bias)",
        )
        present = [v for v in values if v is not None]
        assert present == sorted(present, reverse=True)
        assert values[: len(present)] == present  # no bias (no positions): last
        assert page.get_attribute('#bias-board th.cohort[data-cohort="8"]', "aria-sort") == (
            "descending"
        )
        sort.click()
        assert rows(page) != by_bias
        page.locator("#bias-board th.corner button.sort", has_text="open interest").click()
        assert rows(page) == coins

        # The coin filter hides the other rows, on every board and in the divergence table.
        page.fill("#filter", "bt")
        shown = rows(page)
        assert shown
        assert len(shown) < len(coins)
        assert all("bt" in c.lower() for c in shown)
        assert all("bt" in c.lower() for c in rows(page, "change"))
        divergent = page.eval_on_selector_all(
            "#divergence-table tbody tr[data-coin]", "rs => rs.map(r => r.dataset.coin)"
        )
        assert all("bt" in c.lower() for c in divergent)
        page.fill("#filter", "")
        assert rows(page) == coins

        # The minimum notional mutes (never hides) the smaller cells.
        page.select_option("#min-usd", "1000000")
        muted = page.eval_on_selector_all(
            "#bias-board td.cell.muted", "cs => cs.map(c => +c.dataset.usd)"
        )
        assert muted
        assert all(v < 1e6 for v in muted)
        assert page.locator("#bias-board td.cell").count() == len(coins) * 16
        big = page.eval_on_selector_all(
            "#bias-board td.cell[data-usd]:not(.muted)", "cs => cs.map(c => +c.dataset.usd)"
        )
        assert big
        assert all(v >= 1e6 for v in big)
        page.select_option("#min-usd", "0")

        # The colours are scale.py's: the bias ramp, faded by notional.
        cell = page.locator("#bias-board td.cell[data-bias]").first
        bias = float(cell.get_attribute("data-bias") or 0)
        usd = float(cell.get_attribute("data-usd") or 0)
        painted = cell.evaluate("c => getComputedStyle(c).backgroundColor")
        want = _rgb(weighted(bias_colour(bias), size_weight(usd)))
        got = tuple(int(x) for x in re.findall(r"\d+", painted)[:3])
        assert all(abs(a - b) <= 1 for a, b in zip(got, want, strict=True)), (got, want)

        # Sticky: after scrolling the page past row 15, the headings sit under the controls.
        assert_sticky(page, shots, "desktop")

        # The coin picker shows another coin's history; the title says the span held.
        title = page.text_content("#history-title") or ""
        assert title.startswith("BTC · window all · ")
        assert "days held" in title
        own = page.get_attribute("#multiples .own", "d")
        other = coins[3]
        page.select_option("#coin", other)
        assert (page.text_content("#history-title") or "").startswith(f"{other} · window all")
        assert page.get_attribute("#multiples .own", "d") != own
        assert page.locator("#multiples figure.multiple").count() == 16
        # ... and so does a click on a coin of the board.
        page.locator("#bias-board th.coin button.pick").nth(1).click()
        assert page.get_attribute("body", "data-coin") == coins[1]
        # Hovering a chart reads the values out at that time.
        page.locator("#overview svg").hover(position={"x": 300, "y": 80})
        assert "UTC" in (page.text_content("#readout") or "")

        # The day slider shows an earlier close on both boards.
        days = page.eval_on_selector("#day", "d => +d.max") + 1
        assert days >= 2
        newest = page.get_attribute("#bias-board", "data-day")
        before = page.eval_on_selector_all("#bias-board td.cell", "cs => cs.map(c => c.title)")
        page.eval_on_selector(
            "#day", "d => { d.value = '0'; d.dispatchEvent(new Event('input')); }"
        )
        first_day = page.get_attribute("#bias-board", "data-day")
        assert first_day != newest
        assert first_day == f"{expected['first_day']:%Y-%m-%d}"
        assert page.get_attribute("#change-board", "data-day") == first_day
        after = page.eval_on_selector_all("#bias-board td.cell", "cs => cs.map(c => c.title)")
        assert after != before
        assert "close of" in (page.text_content("#board-title") or "")
        # The view is in the address: a reload keeps it.
        page.click('#window-buttons button[data-show="7d"]')
        assert "day=" + str(first_day) in page.evaluate("location.hash")
        page.reload(wait_until="load")
        page.wait_for_selector("#bias-board tbody tr")
        assert page.get_attribute("body", "data-window") == "7d"
        assert page.get_attribute("#bias-board", "data-day") == first_day
        assert page.get_attribute("body", "data-coin") == coins[1]

        page.goto(url + "latest.html", wait_until="load")
        page.wait_for_selector("#bias-board tbody tr")
        view_shots(page, shots, "desktop")
        phone = open_report(context, recorder, url + "latest.html", PHONE)
        view_shots(phone, shots, "phone")
        # On a phone too, and the coin column stays while the board scrolls sideways.
        assert_sticky(phone, shots, "phone")
        page.goto(url, wait_until="load")  # the index lists what there is
        assert page.locator('a[href="latest.html"]').count() == 1
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(), recorder.outside()
    assert any(u.endswith("/latest.html") for u in recorder.requests)


def assert_sticky(page, shots: Path, label: str) -> None:
    """Scroll the page (as a reader does) to row 20 and the board sideways: the headings are
    just under the controls, on top of the rows, and the coin column at the board's left."""
    page.evaluate(
        "() => { const row = document.querySelectorAll('#bias-board tbody tr')[20];"
        " window.scrollTo(0, window.scrollY + row.getBoundingClientRect().top - 80); }"
    )
    box = page.locator("#bias-scroll")
    box.evaluate("b => { b.scrollLeft = 600; }")
    page.wait_for_timeout(200)  # the headings follow on the next animation frame
    bar = page.locator("#controls").bounding_box()
    # A cohort heading in view after the sideways scroll: right of the sticky coin column.
    cohort = page.evaluate(
        "() => { const left = document.querySelector('#bias-board th.corner')"
        ".getBoundingClientRect().right;"
        " const th = [...document.querySelectorAll('#bias-board th.cohort')].find(t => {"
        " const r = t.getBoundingClientRect(); return r.left > left && r.right < innerWidth; });"
        " return th.dataset.cohort; }"
    )
    head = page.locator(f'#bias-board th.cohort[data-cohort="{cohort}"]').bounding_box()
    row = page.locator("#bias-board tbody tr").nth(20).bounding_box()
    assert bar is not None
    assert head is not None
    assert row is not None
    bottom = bar["y"] + bar["height"]
    assert row["y"] < 200  # the page did scroll past the first rows
    assert bottom - 1 <= head["y"] <= bottom + 40, (bar, head)
    hit = page.evaluate(
        "([x, y]) => { const e = document.elementFromPoint(x, y); "
        "return e && e.closest('th') ? e.closest('th').dataset.cohort : null; }",
        [head["x"] + head["width"] / 2, head["y"] + head["height"] / 2],
    )
    assert hit == cohort  # on top, not under the rows
    scroll = box.bounding_box()
    coin_cell = page.locator("#bias-board th.coin").nth(22).bounding_box()
    assert scroll is not None
    assert coin_cell is not None
    assert abs(coin_cell["x"] - scroll["x"]) <= 2, (scroll, coin_cell)
    shot(page, shots, f"{label}-board-scrolled")
    box.evaluate("b => { b.scrollLeft = 0; }")


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.mark.browser
def test_report_works_from_disk(site: Path, expected: dict[str, object], browser, tmp_path) -> None:
    context, recorder = browser
    page = open_report(context, recorder, (site / "latest.html").as_uri(), DESKTOP)
    n = len(expected["coins"])  # type: ignore[arg-type]
    assert page.locator("#bias-board td.cell").count() == n * 16
    assert page.locator("#multiples figure.multiple").count() == 16
    shot(page, tmp_path, "report-from-disk")
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(allow_file=True), recorder.outside(allow_file=True)


# --------------------------------------------------------------------------- with market data


MARKET_RELATIONS = ("fct_market_snapshots", "cohort_flow_price_daily")


def _copy_warehouse(settings: Settings, folder: Path) -> tuple[Settings, duckdb.DuckDBPyConnection]:
    """A data folder of its own holding a writable copy of the demo's analytics file (its
    views read the demo's lake and marts by absolute path: the demo stays untouched)."""
    copy = get_settings(data_dir=folder / "data")
    copy.analytics_db_path.parent.mkdir(parents=True)
    shutil.copy(settings.analytics_db_path, copy.analytics_db_path)
    return copy, duckdb.connect(str(copy.analytics_db_path))


def _drop(con: duckdb.DuckDBPyConnection, name: str) -> None:
    kind = con.execute(
        "select table_type from information_schema.tables "
        "where table_schema = 'marts' and table_name = ?",
        [name],
    ).fetchone()
    if kind:
        con.execute(f"drop {'view' if kind[0] == 'VIEW' else 'table'} marts.{name}")


def _has_market_data(settings: Settings) -> bool:
    """Both relations with rows: prices, and a flow/price split (one that fetched no
    candles, or none near its backfilled closes, has prices but no split yet)."""
    with connect(settings.analytics_db_path) as con:
        return (
            data.has_relation(con, data.MARKET, payload.MARKET_COLUMNS)
            and data.has_rows(con, data.MARKET, "has_market and mark_price is not null")
            and data.has_relation(con, data.FLOW_PRICE, payload.FLOW_COLUMNS)
            and data.has_rows(con, data.FLOW_PRICE, "net_flow_usd is not null")
        )


@pytest.fixture(scope="module")
def plain_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the warehouse as it was before market data: neither market relation."""
    plain, con = _copy_warehouse(settings, tmp_path_factory.mktemp("plain"))
    try:
        for name in MARKET_RELATIONS:
            _drop(con, name)
    finally:
        con.close()
    return plain


@pytest.fixture(scope="module")
def market_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A warehouse with the market relations the report can use.

    The demo's own when it holds both; else a copy with the two relations made here
    as the contract names them: a price walk per coin, open interest and funding per
    snapshot, and each cohort's daily net notional change split into flow and price effect.
    """
    if _has_market_data(settings):
        return settings
    market, con = _copy_warehouse(settings, tmp_path_factory.mktemp("market"))
    try:
        for name in MARKET_RELATIONS:
            _drop(con, name)
        con.execute(
            """
            create table marts.fct_market_snapshots as
            select
                snapshot_id, last_update as snapshot_at, coin,
                (100 + 10 * sin(epoch(last_update) / 40000 + length(coin)))
                    * (1 + length(coin)) as mark_price,
                total_usd as open_interest_usd,
                0.0000125 * cos(epoch(last_update) / 90000) as funding_rate_hourly,
                true as has_market
            from marts.fct_coin_snapshots where "window" = 'all'
            """
        )
        con.execute(
            """
            create table marts.cohort_flow_price_daily as
            select
                snapshot_date, "window", coin, segment_id,
                (long_usd - short_usd) - (previous_long_usd - previous_short_usd)
                    as net_usd_change,
                0.7 * ((long_usd - short_usd) - (previous_long_usd - previous_short_usd))
                    as net_flow_usd,
                0.3 * ((long_usd - short_usd) - (previous_long_usd - previous_short_usd))
                    as net_price_effect_usd
            from marts.cohort_day_over_day
            """
        )
    finally:
        con.close()
    return market


@pytest.mark.browser
def test_without_market_data_a_note_says_so(
    plain_settings: Settings, expected: dict[str, object], browser, shots: Path
) -> None:
    out = plain_settings.reports_dir
    write_report(plain_settings, out_dir=out)
    context, recorder = browser
    with running_site(out) as url:
        page = open_report(context, recorder, url + "latest.html", DESKTOP)
        notes = page.locator("#notes .note-line")
        assert notes.count() == 2  # one line each
        text = page.text_content("#notes") or ""
        assert "fct_market_snapshots" in text
        assert "cohort_flow_price_daily" in text
        assert page.locator("#bias-board td.market").count() == 0
        assert page.locator("#bias-board th.market").count() == 0
        assert page.locator("#overview .price").count() == 0
        assert page.locator("#split-control").is_hidden()
        page.locator("#overview svg").hover(position={"x": 400, "y": 80})
        assert "price" not in (page.text_content("#readout") or "")
        n = len(expected["coins"])  # type: ignore[arg-type]
        assert page.locator("#bias-board td.cell").count() == n * 16
        view_shots(page, shots, "desktop-plain")
        phone = open_report(context, recorder, url + "latest.html", PHONE)
        view_shots(phone, shots, "phone-plain")
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(), recorder.outside()


@pytest.mark.browser
def test_market_data_when_the_warehouse_has_it(
    market_settings: Settings, expected: dict[str, object], browser, shots: Path, tmp_path: Path
) -> None:
    out = tmp_path / "market-reports"
    write_report(market_settings, out_dir=out)
    context, recorder = browser
    with running_site(out) as url:
        page = open_report(context, recorder, url + "latest.html", DESKTOP)
        assert (page.text_content("#notes") or "").strip() == ""
        # Price, open interest and funding beside the board, sortable.
        n = len(expected["coins"])  # type: ignore[arg-type]
        assert page.locator("#bias-board td.market").count() == 3 * n
        assert page.locator("#bias-board th.market").count() == 3
        page.locator("#bias-board th.market button.sort", has_text="funding").click()
        assert page.get_attribute("#bias-board th.market >> nth=2", "aria-sort") == "descending"
        first_price = page.text_content("#bias-board tbody tr >> nth=0 >> td.market >> nth=0")
        assert (first_price or "").startswith("$")
        # A price line on the history chart.
        assert page.locator("#overview path.price").count() == 1
        assert len(page.get_attribute("#overview path.price", "d") or "") > 100
        page.locator("#overview svg").hover(position={"x": 400, "y": 80})
        assert "price $" in (page.text_content("#readout") or "")
        # The flow/price split on the day-over-day board.
        assert page.locator("#split-control").is_visible()
        tips = page.eval_on_selector_all("#change-board td.cell", "cs => cs.map(c => c.title)")
        assert any("= flow " in tip for tip in tips)
        page.select_option("#second-line", "f")
        view_shots(page, shots, "desktop-market")
        phone = open_report(context, recorder, url + "latest.html", PHONE)
        view_shots(phone, shots, "phone-market")
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(), recorder.outside()


# --------------------------------------------------------------------------- backfilled history

EXPORT_LABEL = "backfilled: 12-hourly export"  # payload.BACKFILL_LABELS["e"]


@pytest.fixture(scope="module")
def backfilled_settings(request: pytest.FixtureRequest) -> Settings:
    """A demo whose history is a quick backfill (12-hourly export states) and 6 live hours:
    ``HT_REPORT_BACKFILLED_DEMO=<data folder>`` if set, else the session's."""
    given = os.environ.get("HT_REPORT_BACKFILLED_DEMO")
    folder = Path(given) if given else request.getfixturevalue("demo_backfilled_warehouse")
    return get_settings(data_dir=folder)


@pytest.fixture(scope="module")
def backfilled_site(
    backfilled_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("backfilled") / "reports"
    write_report(backfilled_settings, out_dir=out)
    return out


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace(" UTC", ""))


@pytest.mark.browser
def test_backfilled_periods_are_marked(
    backfilled_site: Path, backfilled_settings: Settings, browser, shots: Path
) -> None:
    con = duckdb.connect(str(backfilled_settings.analytics_db_path), read_only=True)
    try:
        exported, first_live = con.execute(
            "select max(last_update) filter (where source = 'segment_metrics_export'), "
            "min(last_update) filter (where source = 'heatmap') "
            "from marts.fct_coin_snapshots where coin = 'BTC' and \"window\" = 'all'"
        ).fetchone()  # type: ignore[misc]
        backfilled_days = [
            f"{r[0]:%Y-%m-%d}"
            for r in con.execute(
                "select distinct snapshot_date from marts.coin_day_over_day "
                "where \"window\" = 'all' and close_source = 'segment_metrics_export' "
                "order by 1"
            ).fetchall()
        ]
        # The newest day's D-1 closes on the backfill's state unless the demo's six live
        # hours reach back past midnight UTC (a demo started before ~06:35).
        (newest_against_backfill,) = con.execute(
            "select bool_or(previous_close_source = 'segment_metrics_export') "
            "from marts.coin_day_over_day where \"window\" = 'all' "
            "and snapshot_date = (select max(snapshot_date) from marts.coin_day_over_day)"
        ).fetchone()  # type: ignore[misc]
    finally:
        con.close()
    assert exported is not None
    assert first_live is not None
    assert exported < first_live  # the history: backfilled, then live
    assert backfilled_days
    document = page_data((backfilled_site / "latest.html").read_text(encoding="utf-8"))
    assert document["backfill"]["e"] == EXPORT_LABEL
    assert document["history"]["bands"]["all"]["BTC"]  # the payload holds the period
    context, recorder = browser
    with running_site(backfilled_site) as url:
        page = open_report(context, recorder, url + "latest.html", DESKTOP)
        assert page.get_attribute("body", "data-coin") == "BTC"
        # The history: a band over the backfilled period, labelled, with a legend entry.
        band = page.locator('#overview rect.band[data-source="e"]')
        assert band.count() == 1
        tip = band.locator("title").text_content() or ""
        assert tip.startswith(EXPORT_LABEL + ": ")
        since, until = (_utc(t) for t in tip.removeprefix(EXPORT_LABEL + ": ").split(" to "))
        assert since <= exported < until <= first_live  # its span, and never over live states
        assert EXPORT_LABEL in page.locator("#overview .band-label").all_text_contents()
        assert page.locator("#multiples rect.band").count() == 16  # every cohort's panel
        legend = page.locator("#history-legend")
        assert legend.is_visible()
        assert EXPORT_LABEL in (legend.text_content() or "")
        assert legend.locator(".swatch.band").count() == 1
        # The export's states are 12 hours apart: dots for the states, dashed joins.
        assert page.locator("#overview .spread-dot").count() >= 2
        assert len(page.get_attribute("#overview path.spread.bridge", "d") or "") > 10
        band_box = band.bounding_box()
        chart = page.locator("#overview svg")
        chart_box = chart.bounding_box()
        assert band_box is not None
        assert chart_box is not None
        chart.hover(position={"x": band_box["x"] - chart_box["x"] + band_box["width"] / 2, "y": 80})
        assert EXPORT_LABEL in (page.text_content("#readout") or "")

        # The newest day is live; compared with a backfilled close, D-1 is marked.
        assert page.locator("#board-source").is_hidden()
        badge = page.locator("#change-source")
        marked = page.locator("#change-board td.cell.from-backfill")
        previous = backfilled_days[-1]
        if newest_against_backfill:
            assert badge.is_visible()
            assert (badge.text_content() or "").startswith("D-1 backfilled")
            assert page.get_attribute("#change-board", "data-backfilled") == "D-1"
            assert marked.count() > 0
            assert marked.count() == page.locator("#change-board td.cell:not(.absent)").count()
            assert f"the close of {previous} is {EXPORT_LABEL}" in (
                marked.first.get_attribute("title") or ""
            )
        else:
            assert badge.is_hidden()
            assert marked.count() == 0
        view_shots(page, shots, "desktop-backfilled")

        # A backfilled day on the slider: its board and its change are marked too.
        index = [d["day"] for d in document["days"]].index(previous)
        page.eval_on_selector(
            "#day", f"d => {{ d.value = '{index}'; d.dispatchEvent(new Event('input')); }}"
        )
        assert (page.text_content("#day-label") or "").endswith("· backfilled")
        assert page.text_content("#board-source") == EXPORT_LABEL
        assert page.get_attribute("#bias-board", "data-backfilled") == "D"
        assert "this state is " + EXPORT_LABEL in (
            page.locator("#bias-board td.cell").first.get_attribute("title") or ""
        )
        assert "D" in (page.get_attribute("#change-board", "data-backfilled") or "").split()
        view_shots(page, shots, "desktop-backfilled-day")
        phone = open_report(context, recorder, url + "latest.html", PHONE)
        assert phone.locator("#overview rect.band").count() == 1
        view_shots(phone, shots, "phone-backfilled")
    assert not recorder.errors, recorder.errors
    assert not recorder.outside(), recorder.outside()


@pytest.mark.browser
def test_live_only_history_has_no_backfill_marks(site: Path, browser) -> None:
    document = page_data((site / "latest.html").read_text(encoding="utf-8"))
    if os.environ.get("HT_REPORT_DEMO") and any(document["history"]["bands"].values()):
        pytest.skip("HT_REPORT_DEMO names a backfilled demo: this test needs a live-only one")
    assert document["history"]["bands"] == {w: {} for w in document["windows"]}
    for boards in document["boards"].values():
        assert {(b["cs"], b["ps"]) for b in boards} <= {("h", "h"), ("h", ".")}
    context, recorder = browser
    with running_site(site) as url:
        page = open_report(context, recorder, url + "latest.html", DESKTOP)
        for index in range(len(document["days"])):
            page.eval_on_selector(
                "#day", f"d => {{ d.value = '{index}'; d.dispatchEvent(new Event('input')); }}"
            )
            assert "backfilled" not in (page.text_content("#day-label") or "")
            assert page.locator("#board-source").is_hidden()
            assert page.locator("#change-source").is_hidden()
            assert page.locator("td.from-backfill").count() == 0
            assert page.locator("table[data-backfilled]").count() == 0
        assert page.locator("svg rect.band").count() == 0
        assert page.locator("#history-legend").is_hidden()
        page.locator("#overview svg").hover(position={"x": 300, "y": 80})
        assert "backfilled" not in (page.text_content("#readout") or "")
    assert not recorder.errors, recorder.errors


def test_latest_is_never_replaced_by_an_older_snapshot(
    site: Path, settings: Settings, expected: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    shutil.copytree(site, out)
    page = (out / "latest.html").read_bytes()
    newer = page.replace(
        f'content="{expected["snapshot_id"]}"'.encode(), b'content="29991231T000000000Z"'
    )
    (out / "latest.html").write_bytes(newer)
    path = write_report(settings, out_dir=out)
    assert path.name != "latest.html"
    assert (out / "latest.html").read_bytes() == newer


def test_reports_for_other_coins_never_overwrite(
    site: Path, settings: Settings, expected: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    shutil.copytree(site, out)
    snapshot_id = str(expected["snapshot_id"])
    folder = out / f"{expected['last_update']:%Y-%m-%d}"
    btc = (folder / f"{snapshot_id}.html").read_bytes()
    coin = str(list(expected["coins"])[2])  # type: ignore[call-overload]
    path = write_report(settings, coin=coin, out_dir=out)
    assert path.name == "latest.html"
    assert (folder / f"{snapshot_id}.html").read_bytes() == btc
    dated = sorted(p.name for p in folder.glob(f"{snapshot_id}-coin-*.html"))
    assert len(dated) == 1
    assert f'"coin":"{coin}"' in (folder / dated[0]).read_text(encoding="utf-8")


@pytest.mark.browser
def test_docs_site_works_offline(docs_site: Path, browser, tmp_path: Path) -> None:
    site = docs_site
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
    prefect_harness: None, demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.pipeline import report_flow

    # A data folder of its own holding the demo's analytics file (its views point at the
    # demo's published Parquet by absolute path), so the demo folder stays read-only.
    data = tmp_path / "data"
    target = get_settings(data_dir=data).analytics_db_path
    target.parent.mkdir(parents=True)
    shutil.copy(get_settings(data_dir=demo_data).analytics_db_path, target)
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
