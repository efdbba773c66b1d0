"""DuckDB side of the views benchmark (bench/suite.sh): runs one governance view over the
Parquet files of the lake's Delta tables (the files each table's current version references,
read through the `deltalake` package) and writes the result to Parquet, like
`govlake sql -o parquet`.

Usage: duckdb_views.py LAKE QUERIES_DIR VIEW OUT.parquet [AS_OF]
The view SQL is queries/VIEW.sql with the few DataFusion spellings DuckDB lacks rewritten
(approx_percentile_cont -> approx_quantile); views that read other views are created first.
Prints the result's row count on stdout."""
import pathlib
import sys

import deltalake
import duckdb


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
    sources = {
        p.stem: p.read_text().replace("approx_percentile_cont(", "approx_quantile(")
        for p in pathlib.Path(queries).glob("*.sql")
    }
    # The benchmark's own fixed value, not user input.
    sources = {k: v.replace("$as_of", f"'{as_of}'") for k, v in sources.items()}
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
