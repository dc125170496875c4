"""The docs page names relations as analysts find them; the site's index lists every report."""

from __future__ import annotations

from pathlib import Path

from flows.analyst import docs, server


def test_docs_name_the_published_database() -> None:
    page = (
        b'{"database": "build", "schema": "marts", '
        b'"relation_name": "\\"build\\".\\"marts\\".\\"cohort_day_over_day\\""}'
    )
    fixed = docs.as_published(page, "build", "analytics")
    assert b"build" not in fixed
    assert b'"database": "analytics"' in fixed
    assert b'\\"analytics\\".\\"marts\\".\\"cohort_day_over_day\\"' in fixed


def test_index_lists_every_report_with_its_pngs(tmp_path: Path) -> None:
    for name in ("latest.html", "docs.html", "latest-board.png"):
        (tmp_path / name).write_text("x")
    for day in range(1, 251):  # more than a page's worth: all are listed
        folder = tmp_path / f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"2026{day:04d}T153000000Z.html").write_text("x")
    (tmp_path / "2026-01-02" / "20260001T153000000Z-board-all.png").write_text("x")
    page = server.index_page(tmp_path).decode()
    assert page.count("<tr><td") == 250
    assert "Every report (250 reports)" in page
    assert 'href="docs.html"' in page
    assert 'href="latest-board.png"' in page
    assert "20260001T153000000Z-board-all.png" in page
    assert "15:30:00 UTC" in page
    assert "<style>" in page
