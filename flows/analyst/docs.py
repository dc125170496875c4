"""The warehouse's docs site: dbt's static docs page, made safe to open offline.

``dbt docs generate --static`` writes ``static_index.html`` into the target folder: one file,
with the manifest and catalog inlined, no server needed. Two things in it would reach out or fail
offline, and are fixed in the copy:

- its favicon link is an unrendered template (``${require(...)}``) that the browser
  requests and gets a 404 for: it becomes an empty data URI;
- its navigation icons are ``<svg><use xlink:href="{{ getIcon(...) }}">`` templates: the
  browser requests the raw template text as a URL (404s, console errors) before Angular
  fills it in; ``ng-attr-href`` sets the same in-page reference without that request;
- its tracker script (Snowplow, from a CDN) loads only when the manifest says
  ``send_anonymous_usage_stats: true``; this project runs dbt with it off, and the copy
  forces it off too, so the page never asks for the script.

dbt documents the build database (``build.marts.x``); analysts open ``analytics.duckdb``,
which holds the same schemas, so the page names every relation as it is there
(``analytics.marts.x``): :func:`as_published`.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from flows import atomic
from flows.runlock import run_lock
from flows.settings import Settings

log = logging.getLogger(__name__)

DOCS_NAME = "docs.html"
_FAVICON = re.compile(rb'<link rel="shortcut icon" href="\$\{require\([^"]*\)\}"\s*/?>')
_ICON_TEMPLATE = re.compile(rb'<use xlink:href="(\{\{ getIcon\()')
_TRACKING_ON = re.compile(rb'"send_anonymous_usage_stats":\s*true')


class DocsError(RuntimeError):
    """dbt could not generate the docs."""


def make_offline(page: bytes) -> bytes:
    """dbt's static docs page with nothing left that asks the network for anything."""
    page = _FAVICON.sub(b'<link rel="icon" href="data:,">', page)
    page = _ICON_TEMPLATE.sub(rb'<use ng-attr-href="\1', page)
    return _TRACKING_ON.sub(b'"send_anonymous_usage_stats": false', page)


def as_published(page: bytes, build: str, published: str) -> bytes:
    """The docs page with the build database's name replaced by the published one's.

    ``build`` and ``published`` are the DuckDB database names (the files' stems): the
    manifest's and the catalog's ``"database"`` fields and the quoted relation names.
    """
    for old, new in (
        (f'"database": "{build}"', f'"database": "{published}"'),
        (f'\\"{build}\\".\\"', f'\\"{published}\\".\\"'),
    ):
        page = page.replace(old.encode(), new.encode())
    return page


def build_docs(settings: Settings, *, lock: bool = True, out_dir: Path | None = None) -> Path:
    """Run ``dbt docs generate --static`` and publish the page as ``reports/docs.html``.

    dbt reads the catalog from the build database, which only one process may open for
    writing: the run lock is held meanwhile (pass ``lock=False`` from code that already
    holds it, such as a flow inside the pipeline's lock). ``out_dir`` replaces
    ``settings.reports_dir`` as the destination.
    """
    from flows.transform import run_dbt

    if not settings.build_db_path.exists():
        raise DocsError(
            f"{settings.build_db_path} does not exist yet: build the warehouse first "
            "(`make demo`, then `make docs DATA=data/demo`; or `make run` with your token)"
        )
    started = time.perf_counter()
    if lock:
        with run_lock(settings.state_dir, timeout_s=settings.lock_timeout_s, what="docs build"):
            outcome = run_dbt(settings, ["docs", "generate", "--static"])
    else:
        outcome = run_dbt(settings, ["docs", "generate", "--static"])
    page = settings.dbt_target_dir / "static_index.html"
    if not outcome.success or not page.exists():
        raise DocsError(
            f"`dbt docs generate --static` failed (see {settings.dbt_project_dir / 'logs'}); "
            "the previous docs page, if any, was kept"
        )
    target = (out_dir or settings.reports_dir) / DOCS_NAME
    body = as_published(
        make_offline(page.read_bytes()),
        settings.build_db_path.stem,
        settings.analytics_db_path.stem,
    )

    def fill(tmp: Path) -> None:
        tmp.write_bytes(body)
        tmp.chmod(0o644)  # a web page: readable like the reports beside it

    atomic.write_with(target, fill)
    log.info("docs written to %s in %.1fs", target, time.perf_counter() - started)
    return target
