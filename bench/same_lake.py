"""The check bench/suite.sh makes before measuring an export layout other than the generated
one: that govlake's ingest of it holds what the generated layout's does.

Usage: same_lake.py REF_INGEST.json REF_TABLES.json INGEST.json TABLES.json [DUCKDB_RECORDS]
  (the `--format json` output of `govlake ingest` and `govlake tables` for each lake)

Checks: the same number of records read, nothing rejected, no snapshot gap (every list's page
chain was whole, so no version was kept open for want of a page), the same rows in every
table, and DuckDB's count of records read (if given) equal to govlake's. Prints every
difference and exits 1 if there is one; exits 0 silently otherwise.
"""
import json
import sys


def summary(path: str) -> dict:
    with open(path) as f:
        return json.load(f)["summary"]


def main() -> int:
    ref_ingest, ref_tables, ingest, tables = (summary(p) for p in sys.argv[1:5])
    problems = []
    if ingest["records"] != ref_ingest["records"]:
        problems.append(f"records read: {ingest['records']} (generated layout: {ref_ingest['records']})")
    if ingest["rejected"]:
        problems.append(f"{ingest['rejected']} records rejected")
    for gap in ingest["snapshot_gaps"]:
        problems.append(f"snapshot gap in {gap['table']} {gap['scope'] or '(whole table)'}: {gap['reason']}")
    rows = {t["table"]: t["rows"] for t in tables["tables"]}
    ref_rows = {t["table"]: t["rows"] for t in ref_tables["tables"]}
    for table in sorted(set(rows) | set(ref_rows)):
        if rows.get(table) != ref_rows.get(table):
            problems.append(f"table {table}: {rows.get(table)} rows (generated layout: {ref_rows.get(table)})")
    if len(sys.argv) > 5 and sys.argv[5] != str(ingest["records"]):
        problems.append(f"DuckDB read {sys.argv[5]} records, govlake {ingest['records']}")
    for p in problems:
        print(f"same_lake.py: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
