"""Heatmap bodies -> the lake's typed rows, in DuckDB, with every row-level check on the way.

DuckDB's JSON reader parses the stored bodies (zstd files, as archived) straight into typed
columns, several snapshots per call; one SQL pass then checks every invariant the API keeps
(``payload.py`` lists them) and, for a snapshot, the relations across its windows.

The reader converts where the API's contract does not: a number sent as the string
``"12.5"`` would silently become 12.5. :func:`structure_problems` closes that gap for live
fetches by comparing each body's JSON structure (``json_structure``: one more parse) with
the contract; anything it or the SQL checks reject goes to ``payload.parse_heatmap``, the
strict validator, for reasons with JSON paths. A body is accepted only when neither finds
a problem.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from flows.cohorts import PNL_LADDER, SEGMENT_IDS, SIZE_LADDER
from flows.hypertracker.payload import (
    BIAS_TOL,
    MAX_EXAMPLES,
    VALUE_ABS_TOL,
    VALUE_REL_TOL,
    WINDOW_ORDER,
)
from flows.lake.tables import TABLES

# Counts are read as DOUBLE and checked to be whole before the cast: read as BIGINT, DuckDB
# would round 2.5 to 3 without a word.
_MEASURES = (
    "totalValue DOUBLE, totalLongValue DOUBLE, totalShortValue DOUBLE, "
    "count DOUBLE, countLong DOUBLE, countShort DOUBLE"
)
_BODY_TYPE = (
    f"STRUCT(coin VARCHAR, {_MEASURES}, "
    f"segments STRUCT(segmentId DOUBLE, coin VARCHAR, {_MEASURES}, bias DOUBLE)[])[]"
)

# The JSON structure of a body that keeps the contract, as ``json_structure`` spells it.
# A number field may be all whole numbers in one body (UBIGINT) or not (DOUBLE).
_NUMBER = frozenset({"DOUBLE", "UBIGINT"})
_WHOLE = frozenset({"UBIGINT"})
_MEASURE_TYPES = {
    "totalValue": _NUMBER,
    "totalLongValue": _NUMBER,
    "totalShortValue": _NUMBER,
    "count": _WHOLE,
    "countLong": _WHOLE,
    "countShort": _WHOLE,
}
_SEGMENT_TYPES = {"segmentId": _WHOLE, "coin": frozenset({"VARCHAR"}), **_MEASURE_TYPES}
_SEGMENT_TYPES["bias"] = _NUMBER
_COIN_TYPES = {"coin": frozenset({"VARCHAR"}), **_MEASURE_TYPES}


@dataclass(frozen=True)
class BodyFile:
    """One stored heatmap body and the snapshot and window it belongs to."""

    snapshot_id: str
    last_update: datetime  # naive UTC, as the lake stores it
    window: str
    path: Path


@dataclass
class Normalised:
    """The typed rows of one or more snapshots, and what the checks found.

    ``problems`` maps (snapshot id, window) to reasons a body was rejected; when there are
    any, the tables are empty (nothing of such a batch may be landed). ``warnings`` are per
    snapshot (relations across windows that a fetch straddling a refresh may break).
    """

    coins: pa.Table
    cohorts: pa.Table
    problems: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    unknown_segment_ids: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def rows_of(self, snapshot_id: str) -> dict[str, pa.Table]:
        """The two tables' rows of one snapshot (rows are sorted by snapshot first)."""
        return {
            "heatmap_coins": _slice(self.coins, snapshot_id),
            "heatmap_cohorts": _slice(self.cohorts, snapshot_id),
        }


def _slice(table: pa.Table, snapshot_id: str) -> pa.Table:
    ids = table.column("snapshot_id")

    def as_str(value: pa.Scalar) -> str:
        return value.as_py()

    start = bisect.bisect_left(ids, snapshot_id, key=as_str)
    stop = bisect.bisect_right(ids, snapshot_id, lo=start, key=as_str)
    return table.slice(start, stop - start)


def normalise(files: Sequence[BodyFile], *, checks_across_windows: bool = True) -> Normalised:
    """Read, type and check the bodies of ``files`` in one DuckDB pass.

    Rows come out in the order of ``files`` (sorted by snapshot, then window) and, within a
    body, in the API's order, sorted explicitly by file and list position (a multi-file
    JSON scan runs in parallel and keeps no order): the same bytes always give the same
    lake file, live or rebuilt, and each snapshot's rows are one contiguous slice. Raises
    ``duckdb.Error`` when a body cannot be read as a heatmap at all (not JSON, not an
    object, a field of an impossible type); the caller finds out which with the strict
    validator.
    """
    files = sorted(files, key=lambda f: (f.snapshot_id, f.window))
    con = duckdb.connect()
    try:
        params = {
            "paths": [str(f.path) for f in files],
            "ids": [f.snapshot_id for f in files],
            "times": [f.last_update for f in files],
            "windows": [f.window for f in files],
        }
        con.execute(
            f"""
            CREATE TEMP TABLE _bodies AS
            SELECT list_position($paths, filename) AS i, unnest(heatmap) AS c,
                generate_subscripts(heatmap, 1) AS k
            FROM read_json(
                $paths, columns = {{'heatmap': '{_BODY_TYPE}'}}, records = true,
                filename = true, compression = 'auto'
            )
            """,
            {"paths": params["paths"]},
        )
        con.execute(
            """
            CREATE TEMP TABLE _coins AS
            SELECT i, k, $ids[i] AS snapshot_id, $times[i]::TIMESTAMP AS last_update,
                $windows[i] AS "window", unnest(c, recursive := false)
            FROM _bodies
            """,
            {k: params[k] for k in ("ids", "times", "windows")},
        )
        con.execute(
            """
            CREATE TEMP TABLE _segments AS
            SELECT i, k, generate_subscripts(segments, 1) AS j, snapshot_id, last_update,
                "window", coin AS parent_coin, unnest(segments, recursive := true)
            FROM _coins
            """
        )
        con.execute("DROP TABLE _bodies")
        problems = _problems(con, files)
        unknown = _unknown_segments(con)
        present = {f.window for f in files}
        windows = [w for w in WINDOW_ORDER if w in present]
        warnings = _checks_across_windows(con, windows) if checks_across_windows else {}
        if problems:  # rows of a rejected body are never landed: do not type them
            coins = TABLES["heatmap_coins"].empty_table()
            cohorts = TABLES["heatmap_cohorts"].empty_table()
        else:
            coins = con.sql(_COINS_SQL).to_arrow_table().cast(TABLES["heatmap_coins"])
            cohorts = con.sql(_COHORTS_SQL).to_arrow_table().cast(TABLES["heatmap_cohorts"])
    finally:
        con.close()
    return Normalised(coins, cohorts, problems, unknown, warnings)


_COINS_SQL = """
SELECT snapshot_id, last_update, "window", coin, totalValue AS total_value,
    totalLongValue AS total_long_value, totalShortValue AS total_short_value,
    count::BIGINT AS count, countLong::BIGINT AS count_long,
    countShort::BIGINT AS count_short, len(segments)::SMALLINT AS segment_count
FROM _coins
ORDER BY i, k
"""

_COHORTS_SQL = f"""
SELECT snapshot_id, last_update, "window", coin, segmentId::SMALLINT AS segment_id,
    totalValue AS total_value, totalLongValue AS total_long_value,
    totalShortValue AS total_short_value,
    count::BIGINT AS count, countLong::BIGINT AS count_long,
    countShort::BIGINT AS count_short, bias,
    segmentId IN {tuple(sorted(SEGMENT_IDS))} AS is_known_segment
FROM _segments
ORDER BY i, k, j
"""


def _close(a: str, b: str) -> str:
    return f"abs({a} - ({b})) <= {VALUE_ABS_TOL} + {VALUE_REL_TOL} * greatest(abs({a}), abs({b}))"


def _measure_checks(with_bias: bool) -> list[tuple[str, str]]:
    """(reason, SQL condition true for a bad row) for the measures of one row kind."""
    names = ["totalValue", "totalLongValue", "totalShortValue", "count", "countLong"]
    names += ["countShort", "bias"] if with_bias else ["countShort"]
    checks = [(f"{k} missing or null", f"{k} IS NULL") for k in names]
    checks += [(f"{k} negative", f"{k} < 0") for k in names]
    checks += [
        (f"{k} not a whole number", f"{k} <> trunc({k})")
        for k in ("count", "countLong", "countShort")
    ]
    checks.append(("count != countLong + countShort", "count <> countLong + countShort"))
    checks.append(
        (
            "totalValue != totalLongValue + totalShortValue",
            f"NOT ({_close('totalValue', 'totalLongValue + totalShortValue')})",
        )
    )
    if with_bias:
        checks.append(("bias above 1", "bias > 1"))
        checks.append(
            (
                "bias != totalLongValue / totalValue (to 3 decimals)",
                f"totalValue > 0 AND abs(bias - totalLongValue / totalValue) > {BIAS_TOL}",
            )
        )
    return checks


# A segment id as the API wrote it: 3 rather than DuckDB's 3.0 (it is read as a DOUBLE).
_ID = (
    "CASE WHEN segmentId = trunc(segmentId) THEN segmentId::BIGINT::VARCHAR "
    "ELSE segmentId::VARCHAR END"
)

_COIN_CHECKS = [
    ("coin missing or empty", "coin IS NULL OR coin = ''"),
    ("segments missing or null", "segments IS NULL"),
    *_measure_checks(with_bias=False),
]
_SEGMENT_CHECKS = [
    ("segmentId missing or null", "segmentId IS NULL"),
    ("segmentId not a whole number", "segmentId <> trunc(segmentId)"),
    ("coin missing", "coin IS NULL"),
    ("coin differs from the coin it is listed under", "coin <> parent_coin"),
    *_measure_checks(with_bias=True),
]
_ROW_KINDS = (
    ("_coins", "heatmap[]", "coin", _COIN_CHECKS),
    (
        "_segments",
        "heatmap[].segments[]",
        f"parent_coin || ' segment ' || {_ID}",
        _SEGMENT_CHECKS,
    ),
)


def _any_bad(checks: list[tuple[str, str]]) -> str:
    return " OR ".join(f"coalesce({cond}, false)" for _, cond in checks)


def _problems(
    con: duckdb.DuckDBPyConnection, files: Sequence[BodyFile]
) -> dict[tuple[str, str], list[str]]:
    """Reasons per (snapshot, window), each with a count and an example.

    The common case is a clean batch: one scan per row kind with every condition OR-ed
    says so; only a batch with a bad row pays for the per-check breakdown.
    """
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for table, label, key, checks in _ROW_KINDS:
        bad = con.execute(f"SELECT count(*) FROM {table} WHERE {_any_bad(checks)}").fetchone()
        if not bad or not bad[0]:
            continue
        breakdown = ", ".join(
            f"count(*) FILTER (WHERE coalesce({cond}, false)), "
            f"min({key}) FILTER (WHERE coalesce({cond}, false))"
            for _, cond in checks
        )
        for sid, window, *rest in con.execute(
            f'SELECT snapshot_id, "window", {breakdown} FROM {table} '
            f"WHERE {_any_bad(checks)} GROUP BY ALL"
        ).fetchall():
            for i, (reason, _) in enumerate(checks):
                n, example = rest[2 * i], rest[2 * i + 1]
                if n:
                    found[(sid, window)].append(f"{label}: {reason} in {n} row(s), e.g. {example}")
    for sid, window, what, n, example in con.execute(
        """
        SELECT snapshot_id, "window", 'coin', count(*), min(coin) FROM (
            SELECT snapshot_id, "window", coin FROM _coins GROUP BY ALL HAVING count(*) > 1)
        GROUP BY ALL
        UNION ALL
        SELECT snapshot_id, "window", 'segment id within a coin', count(*),
            min(parent_coin || ' segment ' || segmentId::BIGINT) FROM (
            SELECT snapshot_id, "window", parent_coin, segmentId
            FROM _segments GROUP BY ALL HAVING count(*) > 1)
        GROUP BY ALL
        """
    ).fetchall():
        found[(sid, window)].append(f"duplicate {what}: {n} case(s), e.g. {example}")
    seen = set(con.execute('SELECT DISTINCT snapshot_id, "window" FROM _coins').fetchall())
    for f in files:
        if (f.snapshot_id, f.window) not in seen:
            found[(f.snapshot_id, f.window)].append("heatmap: empty or missing: no coins")
    return dict(found)


def _unknown_segments(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[int]]:
    known = tuple(sorted(SEGMENT_IDS))
    rows = con.execute(
        'SELECT snapshot_id, "window", list(DISTINCT segmentId::BIGINT ORDER BY segmentId::BIGINT) '
        f"FROM _segments WHERE segmentId NOT IN {known} GROUP BY ALL"
    ).fetchall()
    return {(sid, w): ids for sid, w, ids in rows}


def _checks_across_windows(
    con: duckdb.DuckDBPyConnection, windows: Sequence[str]
) -> dict[str, list[str]]:
    """Relations that hold at one instant but may break when fetches straddle a refresh.

    - window nesting: 24h <= 7d <= 30d <= all, per coin and per (coin, segment): a position
      opened within 24h is also within 7d (a (coin, segment) absent from the bigger window
      counts as zero there);
    - the size ladder (16, 1-7) and the PnL ladder (8-15) add up to the same positions, and
      to no more than the coin's;
    - at coin level in window ``all``, long value == short value (every long has a short).
    """
    if len(windows) < 2:
        pairs = "(NULL, NULL)"
    else:
        pairs = ", ".join(f"('{a}', '{b}')" for a, b in itertools.pairwise(windows))
    keyed_label = "coin || coalesce('/segment ' || segment_id, '')"
    rows = con.execute(
        f"""
        WITH keyed AS (
            SELECT snapshot_id, "window", coin, NULL::BIGINT AS segment_id,
                count::BIGINT AS n, totalValue AS v
            FROM _coins
            UNION ALL
            SELECT snapshot_id, "window", parent_coin, segmentId::BIGINT, count::BIGINT,
                totalValue
            FROM _segments
        ),
        pairs (small, big) AS (VALUES {pairs}),
        compared AS (
            SELECT a.snapshot_id, p.small, p.big, a.coin, a.segment_id, a.n, a.v,
                coalesce(b.n, 0) AS big_n, coalesce(b.v, 0) AS big_v
            FROM keyed AS a
            JOIN pairs AS p ON a."window" = p.small
            JOIN (SELECT DISTINCT snapshot_id, "window" FROM keyed) AS w
                ON w.snapshot_id = a.snapshot_id AND w."window" = p.big
            LEFT JOIN keyed AS b
                ON b.snapshot_id = a.snapshot_id AND b."window" = p.big AND b.coin = a.coin
                AND b.segment_id IS NOT DISTINCT FROM a.segment_id
        ),
        nesting AS (
            SELECT snapshot_id, 'window nesting: count in ' || small || ' > count in ' || big,
                {keyed_label} || ' (' || n || ' > ' || big_n || ')'
            FROM compared WHERE n > big_n
            UNION ALL
            SELECT snapshot_id, 'window nesting: value in ' || small || ' > value in ' || big,
                {keyed_label} || ' (' || round(v, 2) || ' > ' || round(big_v, 2) || ')'
            FROM compared WHERE v > big_v AND NOT ({_close("v", "big_v")})
        ),
        ladders AS (
            SELECT s.snapshot_id, s."window", s.parent_coin AS coin,
                any_value(c.count)::BIGINT AS coin_n, any_value(c.totalValue) AS coin_v,
                coalesce(sum(s.count) FILTER (WHERE s.segmentId IN {SIZE_LADDER}), 0)::BIGINT
                    AS n_size,
                coalesce(sum(s.count) FILTER (WHERE s.segmentId IN {PNL_LADDER}), 0)::BIGINT
                    AS n_pnl,
                coalesce(sum(s.totalValue) FILTER (WHERE s.segmentId IN {SIZE_LADDER}), 0)
                    AS v_size,
                coalesce(sum(s.totalValue) FILTER (WHERE s.segmentId IN {PNL_LADDER}), 0)
                    AS v_pnl
            FROM _segments AS s
            JOIN _coins AS c ON c.snapshot_id = s.snapshot_id AND c."window" = s."window"
                AND c.coin = s.parent_coin
            GROUP BY ALL
        ),
        ladder_problems AS (
            SELECT snapshot_id, 'window ' || "window" || ': size ladder != PnL ladder',
                coin || ' (size ' || n_size || ' / ' || round(v_size, 2) || ', pnl ' || n_pnl
                    || ' / ' || round(v_pnl, 2) || ')'
            FROM ladders
            WHERE n_size <> n_pnl OR NOT ({_close("v_size", "v_pnl")})
            UNION ALL
            SELECT snapshot_id, 'window ' || "window" || ': a ladder adds up to more than the coin',
                coin || ' (ladder ' || greatest(n_size, n_pnl) || ' / '
                    || round(greatest(v_size, v_pnl), 2) || ', coin ' || coin_n || ' / '
                    || round(coin_v, 2) || ')'
            FROM ladders
            WHERE greatest(n_size, n_pnl) > coin_n OR (greatest(v_size, v_pnl) > coin_v
                AND NOT ({_close("greatest(v_size, v_pnl)", "coin_v")}))
        ),
        long_short AS (
            SELECT snapshot_id, 'window all: coin long value != short value',
                coin || ' (long ' || round(totalLongValue, 2) || ', short '
                    || round(totalShortValue, 2) || ')'
            FROM _coins
            WHERE "window" = 'all' AND NOT ({_close("totalLongValue", "totalShortValue")})
        ),
        everything (snapshot_id, what, example) AS (
            SELECT * FROM nesting
            UNION ALL SELECT * FROM ladder_problems
            UNION ALL SELECT * FROM long_short
        )
        SELECT snapshot_id, what, count(*), list(example ORDER BY example)[1:{MAX_EXAMPLES}]
        FROM everything GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    out: dict[str, list[str]] = defaultdict(list)
    for sid, what, n, examples in rows:
        more = f" and {n - len(examples)} more" if n > len(examples) else ""
        out[sid].append(f"{what}: {n} case(s): {', '.join(examples)}{more}")
    return dict(out)


# --------------------------------------------------------------------- strict JSON types


def structure_problems(paths: Mapping[str, Path]) -> dict[str, tuple[list[str], list[str]]]:
    """Per window: (type problems, unknown field paths) from each body's JSON structure.

    Unknown fields are harmless drift (reported, kept in the archive); a type problem (a
    number sent as a string, a count with a fraction, a missing list) rejects the body.
    """
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT filename, json_structure(json)::VARCHAR FROM read_json_objects("
            "$paths, format = 'auto', filename = true, compression = 'auto')",
            {"paths": [str(p) for p in paths.values()]},
        ).fetchall()
    finally:
        con.close()
    window_of = {str(p): w for w, p in paths.items()}
    out: dict[str, tuple[list[str], list[str]]] = {}
    for filename, structure in rows:
        problems: list[str] = []
        extra: list[str] = []
        _compare(json.loads(structure), problems, extra)
        out[window_of[filename]] = (problems, extra)
    return out


def _compare(doc: Any, problems: list[str], extra: list[str]) -> None:
    # json_structure merges every element of a list into one structure; an empty list is
    # ["NULL"] and a missing or null value "NULL".
    if not isinstance(doc, dict) or "heatmap" not in doc:
        problems.append("$: not an object with a heatmap list")
        return
    extra.extend(k for k in doc if k != "heatmap")
    coins = doc["heatmap"]
    if coins in ("NULL", ["NULL"]):
        return  # no coins: the row checks say so
    if not isinstance(coins, list) or not isinstance(coins[0], dict):
        problems.append(f"heatmap: expected a list of coin objects, got {coins!r:.60}")
        return
    coin = coins[0]
    _fields(coin, _COIN_TYPES, "heatmap[]", problems, extra, skip={"segments"})
    segments = coin.get("segments", "NULL")
    if segments in ("NULL", ["NULL"]):
        return  # none anywhere, or missing: the row checks tell which
    if not isinstance(segments, list) or not isinstance(segments[0], dict):
        problems.append(f"heatmap[].segments: expected a list of objects, got {segments!r:.60}")
        return
    _fields(segments[0], _SEGMENT_TYPES, "heatmap[].segments[]", problems, extra, skip=set())


def _fields(
    obj: dict[str, Any],
    expected: Mapping[str, frozenset[str]],
    path: str,
    problems: list[str],
    extra: list[str],
    *,
    skip: set[str],
) -> None:
    for key, kind in obj.items():
        if key in skip:
            continue
        if key not in expected:
            extra.append(f"{path}.{key}")
        elif kind not in expected[key] and kind != "NULL":
            # NULL merges away in json_structure; a null value is caught by the SQL checks.
            problems.append(
                f"{path}.{key}: expected {' or '.join(sorted(expected[key]))}, got {kind!r:.60}"
            )


def body_files(
    snapshot_id: str, last_update: datetime, paths: Mapping[str, Path]
) -> list[BodyFile]:
    """The BodyFiles of one snapshot's windows."""
    naive = last_update.replace(tzinfo=None)
    return [BodyFile(snapshot_id, naive, w, p) for w, p in sorted(paths.items())]
