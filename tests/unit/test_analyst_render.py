"""Rendering without a warehouse: the HTML board, the page, the PNGs, the docs fix-ups."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import Markup

from flows.analyst import charts, data, payload, report, server
from flows.analyst.data import Board, Cell, DayCell, History, HistoryGrid
from flows.analyst.docs import make_offline
from flows.analyst.scale import ABSENT_COLOUR, LADDER_ORDER, bias_colour, size_weight, weighted

COINS = ["BTC", "xyz:GOLD", "<b>&"]  # a HIP-3 name and one that needs escaping


def bias_board(coins: list[str] = COINS, window: str = "all") -> Board:
    cells = {}
    for coin in coins:
        for seg in LADDER_ORDER:
            if coin == "xyz:GOLD" and seg == 7:
                # Leviathan holds nothing: the cell exists with zeros and no bias.
                cells[(coin, seg)] = Cell(coin, seg, None, 0.0, 0.0, 0.0, 0)
                continue
            cells[(coin, seg)] = Cell(coin, seg, 0.61, 31e6, 18.91e6, 12.09e6, 120)
    oi = dict(zip(coins, (1.4e9, 13e6, 2e6, 1e6, 5e5), strict=False))
    return Board("bias", window, coins, oi, cells, snapshot_id="20261124T153000000Z")


def change_board() -> Board:
    cells = {
        ("BTC", 16): Cell("BTC", 16, 0.6, 1e6, 6e5, 4e5, 10, change_pp=4.24, usd_change=2e5),
        ("BTC", 1): Cell("BTC", 1, 0.6, 1e6, 6e5, 4e5, 10, change_pp=None, status="gap"),
        ("BTC", 2): Cell("BTC", 2, None, 0, 0, 0, 0, change_pp=None, status="closed"),
    }
    return Board("change", "24h", ["BTC"], {"BTC": 1.0}, cells, day=dt.date(2026, 11, 24))


WINDOWS = ["24h", "all"]


def held(coins: list[str] = COINS, coin: str = "BTC") -> payload.Held:
    """What a page holds, in memory: two windows, two days (the second the snapshot's)."""
    days = [dt.date(2026, 11, 23), dt.date(2026, 11, 24)]
    cells = {}
    for day in days:
        for w in WINDOWS:
            for c in coins:
                for seg in LADDER_ORDER:
                    cells[(day, w, c, seg)] = DayCell(0.6, 31e6, 120, 4.24, 2e5, None)
    cells[(days[0], "all", "BTC", 16)] = DayCell(0.6, 31e6, 120, None, None, "gap")
    grid = HistoryGrid(
        start=dt.datetime(2026, 11, 23),
        bucket_minutes=60,
        points=3,
        first_at=dt.datetime(2026, 11, 23, 0, 30),
        last_at=dt.datetime(2026, 11, 23, 2, 30),
        bias={(w, c): {s: [0.4, None, 0.6] for s in LADDER_ORDER} for w in WINDOWS for c in coins},
        spread_pp={(w, c): [10.0, None, -5.0] for w in WINDOWS for c in coins},
        closes={},
    )
    return payload.Held(
        windows=WINDOWS,
        default_window="all",
        default_coin=coin,
        coins=coins,
        snapshot_id="20261124T153000000Z",
        as_of=dt.datetime(2026, 11, 24, 15, 30),
        is_latest=False,
        days=days,
        snapshot_boards={w: bias_board(coins, w) for w in WINDOWS},
        day_cells=cells,
        day_oi={(d, c): 1e6 for d in days for c in coins},
        divergence={},
        history=grid,
        market=None,
        flow_price=None,
        notes={"market": payload.MARKET_NOTE},
    )


def render_page(
    coins: list[str] = COINS, coin: str = "BTC", signals: list[data.SignalRow] | None = None
) -> str:
    """A whole page from data in memory, as ``render_report`` builds it."""
    document = payload.to_json(payload.document(held(coins, coin)))
    view = report.PageView(
        title=report.TITLE,
        snapshot_id="20261124T153000000Z",
        when="2026-11-24 15:30 UTC",
        is_latest=False,
        published="2026-11-24 15:31 UTC",
        snapshot_count="12",
        coin_count=len(coins),
        cohort_count=16,
        day_count=2,
        csp=report.CSP,
        data_json=Markup(document),  # noqa: S704
        png_links=[report.LinkView("../2026-11-24/x-board-all.png", "board.png")],
        docs_href="../docs.html",
        signals=signals,
    )
    return report._page(view).decode()


class Page(HTMLParser):
    """Every start tag's attributes, the text, and the JSON data block, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        else:
            self.text.append(data)

    def values(self, attr: str) -> set[str | None]:
        return {a[attr] for _, a in self.tags if attr in a}


def parse_page(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_page_is_self_contained_under_a_strict_csp() -> None:
    page = render_page()
    assert page.startswith("<!doctype html>")
    parsed = parse_page(page)
    (csp,) = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv")]
    policy = dict(
        (part.split()[0], part.split()[1:]) for part in (csp["content"] or "").split("; ")
    )
    assert policy["default-src"] == ["'none'"]
    assert policy["img-src"] == ["data:"]
    # No 'unsafe-inline': the one script and the one style sheet are allowed by their hashes.
    assert policy["script-src"] == [sha256(report.SCRIPT)]
    assert policy["style-src"] == [sha256(report.CSS)]
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "<script src" not in page
    assert " style=" not in page  # the CSP would block an inline style attribute
    executable = [text for attrs, text in parsed.scripts if "type" not in attrs]
    assert executable == [str(report.SCRIPT)]
    (data_block,) = [text for attrs, text in parsed.scripts if attrs.get("type")]
    assert json.loads(data_block)["coins"] == COINS
    assert page.count("<style>") == 1
    assert report.CSS in page
    assert '<meta name="ht-snapshot" content="20261124T153000000Z">' in page
    hrefs = [a["href"] for t, a in parsed.tags if t == "a"]
    assert hrefs == ["../2026-11-24/x-board-all.png", "../docs.html"]
    text = " ".join("".join(parsed.text).split())
    assert "Snapshot 2026-11-24 15:30 UTC (20261124T153000000Z) · not the newest" in text
    assert "12 snapshots · top 3 coins by open interest (window all), 16 cohorts" in text


def test_page_escapes_coin_names() -> None:
    evil = ["</script><script>alert(1)</script>", 'a"b', "x'y&z", "xyz:GOLD", "<!--"]
    page = render_page(evil, coin=evil[0])
    assert "<script>alert" not in page
    assert "<!--" not in page
    assert page.count("<script") == 2  # the data block and the page's own script
    parsed = parse_page(page)
    (data_block,) = [text for attrs, text in parsed.scripts if attrs.get("type")]
    document = json.loads(data_block)
    # Escaped, not mangled: the names read back as they were.
    assert document["coins"] == evil
    assert document["coin"] == evil[0]
    assert set(document["history"]["series"]["all"]) == set(evil)


def test_the_signals_section_lists_events_escaped_or_says_why_there_are_none() -> None:
    event = data.SignalRow(
        at=dt.datetime(2026, 11, 24, 15, 0), signal_type="flip", window="all",
        coin="<b>x</b>", subject="Smart Money", direction="long",
        headline="Smart Money flipped long on <b>x</b> (all): bias 0.42 -> 0.61",
    )  # fmt: skip
    page = render_page(signals=[event])
    assert "<b>x</b>" not in page  # coin names come from outside: escaped like all text
    text = " ".join(" ".join(parse_page(page).text).split())
    assert "2026-11-24 15:00 flip <b>x</b> all Smart Money long Smart Money flipped long" in text
    assert "no signal marts yet" in " ".join(parse_page(render_page()).text)
    assert "No signal has fired yet" in " ".join(parse_page(render_page(signals=[])).text)


def test_document_holds_every_day_window_and_coin() -> None:
    document = payload.document(held())
    assert [d["day"] for d in document["days"]] == ["2026-11-23", "2026-11-24"]
    assert document["days"][1]["board"] == "snapshot 2026-11-24 15:30 UTC"
    assert document["days"][0]["change"] == "close of 2026-11-23 vs close of 2026-11-22"
    for w in WINDOWS:
        assert len(document["boards"][w]) == 2
        day = document["boards"][w][0]
        assert len(day["b"].split(",")) == len(COINS) * 16
        assert len(day["s"]) == len(COINS) * 16
    first = document["boards"]["all"][0]
    assert first["s"][0] == "g"  # BTC x Shrimp: no previous day
    assert first["c"].split(",")[:2] == ["", "42"]  # 4.24pp to 0.1pp: 42 tenths
    assert first["b"].split(",")[1] == "6000"
    # The snapshot's own day shows the snapshot's board: xyz:GOLD x Leviathan holds nothing.
    last = document["boards"]["all"][1]
    leviathan = 16 + LADDER_ORDER.index(7)
    assert last["b"].split(",")[leviathan] == ""
    assert last["v"].split(",")[leviathan] == "0"
    series = document["history"]["series"]["all"]["BTC"]
    assert len(series) == 2 * 3 * 17  # 16 cohorts and the spread, three points, 2 chars each
    shrimp = payload.unpack(series[:6])
    assert shrimp == [pytest.approx(0.4, abs=3e-4), None, pytest.approx(0.6, abs=3e-4)]
    assert document["market"] is None
    assert document["notes"] == {"market": payload.MARKET_NOTE}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (228_400_000, "228e6"),
        (823.4, "823"),
        (0.0000125, "125e-7"),
        (-5_712_345, "-571e4"),
        (99_960, "1e5"),
        (1234, "1230"),
        (0, "0"),
        (None, ""),
        (math.nan, ""),
        (97_123.456, "97123"),
    ],
)
def test_compact_numbers(value: float | None, text: str) -> None:
    digits = 5 if value == 97_123.456 else 3
    assert payload.compact(value, digits) == text
    if text:
        assert float(text) == pytest.approx(value, rel=5e-3)


def test_pack_round_trips_to_a_4096th() -> None:
    values = [0.0, 1.0, 0.5, None, 0.123456, 1.7, -0.1]
    back = payload.unpack(payload.pack(values))
    assert back[3] is None
    assert back[5] == 1.0  # clipped
    assert back[6] == 0.0
    for i in (0, 1, 2, 4):
        assert back[i] == pytest.approx(values[i], abs=1 / 8000)
    spread = payload.unpack(payload.pack([-100.0, 42.0], -100, 100), -100, 100)
    assert spread == [pytest.approx(-100.0), pytest.approx(42.0, abs=0.03)]


def test_change_board_cells() -> None:
    board = change_board()
    assert charts.cell_text(board, "BTC", 16)[1:] == ("+4.2pp", "+$200K")
    assert charts.cell_text(board, "BTC", 1)[0] == ABSENT_COLOUR  # no previous day: no colour
    assert charts.cell_text(board, "BTC", 1)[1] == "no D-1"
    assert charts.cell_text(board, "BTC", 2)[1] == "closed"
    assert charts.cell_text(board, "BTC", 3) == (ABSENT_COLOUR, "–", "")  # no row at all


def test_png_cell_colour_fades_with_notional() -> None:
    board = bias_board()
    board.cells[("BTC", 16)] = Cell("BTC", 16, 1.0, 823, 823, 0, 1)
    board.cells[("BTC", 1)] = Cell("BTC", 1, 1.0, 228e6, 228e6, 0, 900)
    small = charts.cell_text(board, "BTC", 16)[0]
    big = charts.cell_text(board, "BTC", 1)[0]
    assert big == bias_colour(1.0)
    assert small == weighted(bias_colour(1.0), size_weight(823)) != big


def test_board_png_is_a_png() -> None:
    png = charts.board_png(bias_board(), "test board")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000


def test_history_png_draws_gaps_and_empty_histories() -> None:
    times = [dt.datetime(2026, 11, 24, h) for h in range(4)]
    bias = {s: [0.4, None, 0.6, 0.55] for s in LADDER_ORDER}
    history = History("BTC", "all", times, bias, [10.0, None, -5.0, 2.0], [(times[-1], 2.0)])
    assert charts.history_png(history, "h")[:4] == b"\x89PNG"
    empty = History("BTC", "all", [], {s: [] for s in LADDER_ORDER}, [], [])
    assert charts.history_png(empty, "h")[:4] == b"\x89PNG"


def test_dbt_docs_page_is_made_offline() -> None:
    page = (
        b'<head><link rel="shortcut icon" href="${require(\'./assets/favicons/favicon.ico\')}"/>'
        b'</head><script>var t=\'<svg class="icn"><use xlink:href="{{ getIcon(item.type, '
        b"\\'on\\') }}\"></use></svg>';"
        b'var m={"metadata": {"send_anonymous_usage_stats": true, "project_id": "x"}}</script>'
    )
    fixed = make_offline(page)
    assert b"${require" not in fixed
    assert b'<link rel="icon" href="data:,">' in fixed
    assert b'xlink:href="{{' not in fixed
    assert b'ng-attr-href="{{ getIcon(item.type' in fixed
    assert b'"send_anonymous_usage_stats": false' in fixed


def test_index_page_lists_reports(tmp_path: Path) -> None:
    (tmp_path / "latest.html").write_text("x")
    (tmp_path / "2026-11-24").mkdir()
    (tmp_path / "2026-11-24" / "20261124T153000000Z.html").write_text("x")
    page = server.index_page(tmp_path).decode()
    assert 'href="latest.html"' in page
    assert 'href="2026-11-24/20261124T153000000Z.html"' in page
    assert "docs.html" not in page  # not built yet: not linked


def test_prune_reports_keeps_recent_days_and_latest(tmp_path: Path) -> None:
    for name in ("2026-11-01", "2026-11-20", "2026-11-24", "not-a-date"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.html").write_text("x")
    (tmp_path / "latest.html").write_text("x")
    removed = report.prune_reports(tmp_path, keep_days=7, today=dt.date(2026, 11, 24))
    assert removed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-11-20",
        "2026-11-24",
        "latest.html",
        "not-a-date",
    ]
    with pytest.raises(ValueError, match="at least 1"):
        report.prune_reports(tmp_path, keep_days=0)


def test_coin_files_never_collide() -> None:
    assert report._png_prefix("20261124T153000000Z", "BTC") == "20261124T153000000Z"
    gold = report._png_prefix("20261124T153000000Z", "xyz:GOLD")
    assert gold == "20261124T153000000Z-coin-xyz~3aGOLD"
    assert report._png_prefix("20261124T153000000Z", "xyz_GOLD") != gold
    assert "/" not in report._coin_slug("a/b")


def test_latest_names_the_snapshot_it_shows(tmp_path: Path) -> None:
    assert report._shown_by_latest(tmp_path) == ""
    (tmp_path / "latest.html").write_text(render_page())
    assert report._shown_by_latest(tmp_path) == "20261124T153000000Z"


def test_the_day_keeps_its_close_and_every_file_of_it(tmp_path: Path) -> None:
    """After each run the report flow keeps, per dated folder, the newest snapshot's files
    (its page, its coin pages and PNGs): the day's close so far; latest.html is never touched."""
    day = tmp_path / "2026-11-24"
    day.mkdir()
    older, close = "20261124T100000000Z", "20261124T153000000Z"
    names = [
        f"{older}.html",
        f"{older}-board-all.png",
        f"{older}-coin-ETH.html",
        f"{close}.html",
        f"{close}-board-all.png",
        f"{close}-history-all.png",
        f"{close}-coin-xyz~3aGOLD.html",
        f"{close}-coin-FOOZ.html",  # ends in Z.html like a snapshot's own page
    ]
    for name in names:
        (day / name).write_text("x")
    (tmp_path / "latest.html").write_text("x")
    other = tmp_path / "2026-11-23"
    other.mkdir()
    (other / "20261123T235500000Z.html").write_text("x")
    assert report.keep_day_close(tmp_path) == 3
    assert sorted(p.name for p in day.iterdir()) == sorted(n for n in names if n.startswith(close))
    assert (tmp_path / "latest.html").exists()
    assert (other / "20261123T235500000Z.html").exists()
    assert report.keep_day_close(tmp_path) == 0
