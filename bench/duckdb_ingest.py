"""DuckDB side of the ingest benchmark (bench/suite.sh): reads the same export directory
govlake ingests (Graph list pages and diagnostic-settings archives) into Parquet, one file
per entity, deduplicated by id, with the types DuckDB infers from the JSON.

Usage: duckdb_ingest.py EXPORT_DIR OUT_DIR
Prints the number of records read and the number stored (after dedupe) on stdout.

The entity of a file is told as govlake tells it: by the `@odata.context` at the head of its
page first (so the neutral layout of bench/relayout.py, `export-000001.json`, … reads the same
as the generated one), else by its name (`assignments-0001.json`, `PT1H.json`). Every file is
told the same way in both layouts, so DuckDB does the same work on either. Audit events come
from both directoryAudits pages and the archives' `properties`; one event in both is stored
once.
"""
import pathlib
import re
import sys

import duckdb

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
import export_pages  # noqa: E402

ENTITIES = [
    "directoryAudits", "assignmentRequests", "assignmentPolicies", "assignments",
    "accessPackages", "catalogs", "connectedOrganizations", "internalSponsors",
    "externalSponsors", "definitions", "instances", "decisions", "members",
]
OPTIONS = "maximum_object_size = 1073741824, sample_size = -1, union_by_name = true"


def entity_of(path: pathlib.Path) -> str | None:
    if path.name == "PT1H.json":
        return "archive"
    context = export_pages.context_of(path)
    if context is not None:
        named = export_pages.entity_of_context(context).lower()
        return next((e for e in ENTITIES if e.lower() == named), None)
    for name in ENTITIES:
        if re.search(rf"(^|[-_.]){name}([-_.]|$)", path.name, re.IGNORECASE):
            return name
    return None


def main() -> None:
    export, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[str]] = {}
    for f in sorted(export.rglob("*.json")):
        e = entity_of(f)
        if e:
            groups.setdefault(e, []).append(str(f))
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    read = stored = 0
    archives = groups.pop("archive", [])
    for entity, files in sorted(groups.items()):
        pages = f"SELECT unnest(value) AS r FROM read_json({files!r}, {OPTIONS})"
        source = f"SELECT unnest(r) FROM ({pages})"
        if entity == "directoryAudits" and archives:
            envelopes = (
                f"SELECT unnest(properties) FROM read_json({archives!r}, "
                f"format = 'newline_delimited', {OPTIONS})"
            )
            source = f"{source} UNION ALL BY NAME {envelopes}"
        con.execute(f"CREATE OR REPLACE TEMP VIEW src AS {source}")
        read += con.execute("SELECT count(*) FROM src").fetchone()[0]
        target = out / f"{entity}.parquet"
        con.execute(
            f"COPY (SELECT DISTINCT ON (id) * FROM src) TO '{target}' (FORMAT parquet)"
        )
        stored += con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchone()[0]
    print(read, stored)


if __name__ == "__main__":
    main()
