"""The analyst's view: the heatmap report (HTML + PNGs), the docs site and a local server.

- ``write_report(settings)``: the report from ``analytics.duckdb`` into ``reports/``;
- ``build_docs(settings)``: dbt's static docs page into ``reports/docs.html``;
- ``serve_site(settings, port)``: both, on 127.0.0.1;
- ``prune_reports(reports_dir, keep_days=...)``: drop old dated copies;
- ``connect_latest(path)``: a connection to the newest published state (notebooks).
"""

from flows.analyst.docs import build_docs
from flows.analyst.latest import connect_latest
from flows.analyst.report import prune_reports, render_report, write_report
from flows.analyst.server import running_site, serve_site

__all__ = [
    "build_docs",
    "connect_latest",
    "prune_reports",
    "render_report",
    "running_site",
    "serve_site",
    "write_report",
]
