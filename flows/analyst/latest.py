"""A connection to the newest published state, for long-lived Python processes (notebooks).

``duckdb.connect(path, read_only=True)`` hands back the database the process already has
open under that path while any connection to it is still open (DuckDB's instance cache),
so a notebook that keeps one connection goes on reading the file it first opened, even
after a publish renamed a new file into place. :func:`connect_latest` opens the file at
the path as it is now: a fresh in-memory DuckDB that attaches it read-only.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

ALIAS = "analytics"


def connect_latest(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A new connection to the analytics database as published now (read-only).

    ``path``: the ``analytics.duckdb`` to open; default: the one the settings name
    (``HT_DATA_DIR``). Queries read ``marts.<table>`` as with ``duckdb.connect``; the
    marts are also on the search path. Close it (or let it go) when done.
    """
    if path is None:
        from flows.settings import get_settings

        path = get_settings().analytics_db_path
    db = Path(path).expanduser()
    if not db.is_file():
        raise FileNotFoundError(f"{db} does not exist: nothing has been published there yet")
    con = duckdb.connect()  # in memory: never one the instance cache hands back
    try:
        quoted = str(db).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS {ALIAS} (READ_ONLY)")
        con.execute(f"USE {ALIAS}")
        con.execute(f"SET search_path = '{ALIAS}.marts,{ALIAS}.main'")
    except BaseException:
        con.close()
        raise
    return con
