"""DuckDB side of the views benchmark (bench/suite.sh): runs one governance view over the
Parquet files of the lake's Delta tables (the files each table's current version references,
read through the `deltalake` package) and writes the result to Parquet, like
`govlake sql -o parquet`.

Usage: duckdb_views.py LAKE QUERIES_DIR VIEW OUT.parquet [AS_OF]
The view SQL is queries/VIEW.sql with the few DataFusion spellings DuckDB lacks rewritten
(`for_duckdb`); views that read other views are created first. Parameters: `$as_of` is AS_OF,
`$from` and `$to` the bounds of 2026Q3 (as bench/suite.sh passes them to govlake).
Prints the result's row count on stdout."""
import pathlib
import re
import sys

import deltalake
import duckdb


PERIOD = {"$from": "2026-07-01T00:00:00Z", "$to": "2026-10-01T00:00:00Z"}
# DataFusion's ordered aggregates `first_value(x ORDER BY …)` / `last_value(…)` (no OVER):
# DuckDB's `first(x ORDER BY …)` / `last(…)`.
ORDERED_AGG = re.compile(r"\b(first|last)_value\(([^()]*\bORDER BY\b[^()]*)\)(?!\s*OVER)", re.I)
# Names that are keywords to DuckDB, quoted: `at` as a column (`AT TIME ZONE`), `overlaps` as
# a CTE.
KEYWORD_NAMES = re.compile(r"(?<=\.)at\b|(?<=,\s)at\b|(?<=\bAS\s)at\b|\boverlaps\b", re.I)
# DataFusion's regexp_match(s, p) returns the groups as a list (NULL without a match); every
# view takes [1] of it.
# arrow_cast(x, 'Timestamp(…, Some("UTC"))') only fixes the unit of a timestamp: DuckDB's
# timestamps are microseconds already.
MACROS = [
    "CREATE MACRO regexp_match(s, p) AS "
    "CASE WHEN regexp_matches(s, p) THEN [regexp_extract(s, p, 1)] END",
    "CREATE MACRO arrow_cast(x, t) AS x",
]


def for_duckdb(sql: str, as_of: str) -> str:
    """A view's SQL in DuckDB's spelling, with the benchmark's fixed parameter values."""
    sql = sql.replace("approx_percentile_cont(", "approx_quantile(")
    # "strictly after" on microsecond timestamps (DuckDB has no nanosecond interval)
    sql = sql.replace("INTERVAL '1 nanosecond'", "INTERVAL '1 microsecond'")
    sql = ORDERED_AGG.sub(lambda m: f"{m.group(1)}({m.group(2)})", sql)
    lines = []
    for line in sql.splitlines():
        code, dash, comment = line.partition("--")
        lines.append(KEYWORD_NAMES.sub(lambda m: f'"{m.group(0)}"', code) + dash + comment)
    sql = "\n".join(lines).replace("$as_of", f"'{as_of}'")  # the benchmark's own values
    for name, value in PERIOD.items():
        sql = sql.replace(name, f"'{value}'")
    return sql


def main() -> None:
    lake, queries, view, out = sys.argv[1:5]
    as_of = sys.argv[5] if len(sys.argv) > 5 else "2026-09-30T23:59:59Z"
    con = duckdb.connect()
    for table in sorted(pathlib.Path(lake).iterdir()):
        if not (table / "_delta_log").is_dir():
            continue
        dt = deltalake.DeltaTable(str(table))
        files = [u.removeprefix("file://") for u in dt.file_uris()]
        if not files:
            continue
        hive = bool(dt.metadata().partition_columns)
        con.execute(
            f'CREATE VIEW "{table.name}" AS SELECT * FROM read_parquet({files!r}, '
            f"hive_partitioning = {str(hive).lower()}, hive_types_autocast = false)"
        )
    for macro in MACROS:
        con.execute(macro)
    sources = {p.stem: for_duckdb(p.read_text(), as_of) for p in pathlib.Path(queries).glob("*.sql")}
    pending = {k: v for k, v in sources.items() if k != view}
    progress = True
    while pending and progress:
        progress = False
        for name, sql in list(pending.items()):
            try:
                con.execute(f'CREATE VIEW "{name}" AS {sql}')
                del pending[name]
                progress = True
            except duckdb.Error:
                pass
    con.execute(f"COPY ({sources[view]}) TO '{out}' (FORMAT parquet)")
    print(con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0])


if __name__ == "__main__":
    main()
