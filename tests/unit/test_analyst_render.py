"""Rendering without a warehouse: the HTML board, the page, the PNGs, the docs fix-ups."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flows.analyst import charts, report, server
from flows.analyst.data import Board, Cell, Divergence, History
from flows.analyst.docs import make_offline
from flows.analyst.scale import ABSENT_COLOUR, LADDER_ORDER, bias_colour

COINS = ["BTC", "xyz:GOLD", "<b>&"]  # a HIP-3 name and one that needs escaping


class Cells(HTMLParser):
    """Collects every <td class="cell"> with its attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str | None]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and "cell" in (a.get("class") or "").split():
            self._open = {**a, "text": ""}
            self.cells.append(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] = (self._open["text"] or "") + data + " "


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


def parse(table: str) -> list[dict[str, str | None]]:
    parser = Cells()
    parser.feed(table)
    return parser.cells


def test_board_table_has_one_cell_per_coin_and_cohort() -> None:
    cells = parse(report._board_table(bias_board()))
    assert len(cells) == len(COINS) * 16
    # Each row lists the cohorts in ladder order, the PnL ladder marked apart.
    first_row = [int(c["data-cohort"] or 0) for c in cells[:16]]
    assert first_row == list(LADDER_ORDER)
    starts = [c["data-cohort"] for c in cells if "ladder-start" in (c["class"] or "")]
    assert starts == ["8"] * len(COINS)
    assert [c["data-coin"] for c in cells[::16]] == COINS  # unescaped back by the parser


def test_board_cell_shows_bias_and_notional_in_its_colour() -> None:
    cells = parse(report._board_table(bias_board()))
    cell = cells[0]
    assert cell["text"].split() == ["0.61", "$31M"]
    assert cell["data-bias"] == "0.6100"
    assert bias_colour(0.61) in (cell["style"] or "")
    assert "color:#fff" not in (cell["style"] or "")  # light cell: the table's dark text


def test_dark_cells_get_light_text() -> None:
    board = bias_board()
    board.cells[("BTC", 16)] = Cell("BTC", 16, 0.02, 5e6, 1e5, 4.9e6, 40)
    cell = parse(report._board_table(board))[0]
    assert f"background:{bias_colour(0.02)};color:#fff" in (cell["style"] or "")


def test_absent_cohort_is_grey_not_neutral() -> None:
    cells = parse(report._board_table(bias_board()))
    (absent,) = [c for c in cells if "absent" in (c["class"] or "")]
    assert (absent["data-coin"], absent["data-cohort"]) == ("xyz:GOLD", "7")
    assert "data-bias" not in absent
    assert not absent.get("style")  # the grey comes from the CSS class, never a ramp colour
    assert "0.50" not in (absent["text"] or "")


def test_names_are_escaped() -> None:
    table = report._board_table(bias_board())
    assert "<b>&" not in table
    assert "&lt;b&gt;&amp;" in table


def test_change_board_cells() -> None:
    board = change_board()
    assert charts.cell_text(board, "BTC", 16)[1:] == ("+4.2pp", "+$200K")
    assert charts.cell_text(board, "BTC", 1)[0] == ABSENT_COLOUR  # no previous day: no colour
    assert charts.cell_text(board, "BTC", 1)[1] == "no D-1"
    assert charts.cell_text(board, "BTC", 2)[1] == "closed"
    assert charts.cell_text(board, "BTC", 3) == (ABSENT_COLOUR, "–", "")  # no row at all
    cells = parse(report._board_table(board))
    assert len(cells) == 16
    assert cells[0]["data-change-pp"] == "4.24"
    assert cells[1]["data-status"] == "gap"


WINDOWS = ["24h", "all"]
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def render_page(coins: list[str] = COINS, coin: str = "BTC") -> str:
    """A whole page from boards in memory, as ``render_report`` builds it."""
    png = b"\x89PNG\r\n\x1a\n-not-a-real-image"
    divergence = [Divergence(c, 0.7, 0.3, 40.0, 1e6) for c in coins]
    view = report._page_view(
        coin=coin,
        snapshot_id="20261124T153000000Z",
        as_of=dt.datetime(2026, 11, 24, 15, 30, tzinfo=dt.UTC),
        is_latest=False,
        published_at=dt.datetime(2026, 11, 24, 15, 31, tzinfo=dt.UTC),
        snapshot_count=12,
        coin_count=len(coins),
        default_window="all",
        boards={w: bias_board(coins, w) for w in WINDOWS},
        changes={w: change_board() for w in WINDOWS},
        history_pngs={w: png for w in WINDOWS},
        divergences={w: divergence for w in WINDOWS},
        png_kinds=["board", "history"],
        link_prefix="../",
    )
    return report._page(view).decode()


class Page(HTMLParser):
    """Every start tag's attributes, the CSP and the text, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def values(self, attr: str) -> set[str | None]:
        return {a[attr] for _, a in self.tags if attr in a}


def parse_page(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def test_page_is_self_contained() -> None:
    page = render_page()
    assert page.startswith("<!doctype html>")
    parsed = parse_page(page)
    (csp,) = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv")]
    assert csp["content"] == CSP
    assert "http://" not in page
    assert "https://" not in page
    assert "<script src" not in page
    assert page.count("<script>") == 1
    assert page.count("<style>") == 1
    assert report.SCRIPT in page  # the script and the style sheet go in verbatim
    assert report.CSS in page
    assert 'data-default-window="all"' in page
    assert page.count('class="panel"') == 4 * len(WINDOWS)  # board, change, history, spread
    buttons = [a for t, a in parsed.tags if t == "button"]
    assert [(b["data-show"], b["aria-selected"]) for b in buttons] == [
        ("24h", "false"),
        ("all", "true"),
    ]
    assert {a["src"][:22] for t, a in parsed.tags if t == "img"} == {"data:image/png;base64,"}
    hrefs = [a["href"] for t, a in parsed.tags if t == "a"]
    assert hrefs == [
        "../2026-11-24/20261124T153000000Z-board-all.png",
        "../2026-11-24/20261124T153000000Z-history-all.png",
        "../docs.html",
    ]
    text = " ".join("".join(parsed.text).split())
    assert "Snapshot 2026-11-24 15:30 UTC (20261124T153000000Z) · not the newest" in text
    assert "12 snapshots · top 3 coins by open interest (window all), 16 cohorts" in text
    assert "At the close of 2026-11-24" in text


def test_page_escapes_coin_names() -> None:
    evil = ["<script>alert(1)</script>", 'a"b', "x'y&z", "xyz:GOLD"]
    page = render_page(evil, coin=evil[0])
    assert "<script>alert" not in page
    assert 'a"b' not in page
    assert "x'y" not in page
    assert page.count("<script>") == 1  # the page's own
    parsed = parse_page(page)
    # Escaped, not mangled: the parser reads every name back as it was.
    assert parsed.values("data-coin") >= set(evil)
    cells = parse(page)
    assert [c["data-coin"] for c in cells if c["data-cohort"] == "16"][: len(evil)] == evil
    text = "".join(parsed.text)
    assert f"Cohort history: {evil[0]}" in text
    assert {a["alt"] for t, a in parsed.tags if t == "img"} == {
        f"{evil[0]} bias per cohort, window {w}" for w in WINDOWS
    }
    tips = {(c["title"] or "").split("\n")[0] for c in cells}
    assert f"{evil[1]} · Shrimp" in tips


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
