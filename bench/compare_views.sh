#!/usr/bin/env bash
# Every governance view (or those named) by two govlake binaries over one lake: time and peak
# RSS of each (GNU time, one run each, OLD first), and whether their rows are the same
# (DuckDB `EXCEPT ALL` both ways over the two Parquet outputs: "diff=0" is the same rows).
# For a planner or engine change, whose rows must not move.
#
#   bench/compare_views.sh LAKE OLD_GOVLAKE NEW_GOVLAKE [VIEW...]
#
# PY (default: bench/suite.sh's venv) must import duckdb. Binds the same parameters as the
# suite: as_of the end of 2026Q3, from/to its bounds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
[ $# -ge 3 ] || { sed -n 2,10p "$0"; exit 2; }
LAKE=$1 OLD=$2 NEW=$3
shift 3
PY="${PY:-$ROOT/target/bench/venv/bin/python}"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
views=("$@")
[ ${#views[@]} -gt 0 ] || mapfile -t views < <(ls queries/*.sql | xargs -n1 basename | sed 's/\.sql$//')
for v in "${views[@]}"; do
  params=()
  ! grep -q '\$as_of' "queries/$v.sql" || params+=(--param "as_of=2026-09-30T23:59:59Z")
  ! grep -q '\$from' "queries/$v.sql" || params+=(--param "from=2026-07-01T00:00:00Z" --param "to=2026-10-01T00:00:00Z")
  line="$v"
  for side in old new; do
    bin=$OLD; [ "$side" = new ] && bin=$NEW
    if /usr/bin/time -f "%e %M" -o "$W/t.txt" "$bin" --lake "$LAKE" -q sql --queries queries \
        -f "queries/$v.sql" "${params[@]}" -o parquet --out "$W/$side.parquet" 2>"$W/err.txt"; then
      read -r t m < <(tail -1 "$W/t.txt")
      line="$line $side:${t}s/$((m / 1024))MiB"
    else
      line="$line $side:FAILED($(tail -1 "$W/err.txt" | cut -c1-200))"
    fi
  done
  same=$("$PY" - "$W/old.parquet" "$W/new.parquet" <<'PYEOF' 2>&1 | tail -1
import sys, duckdb
a, b = (f"read_parquet('{p}')" for p in sys.argv[1:3])
n = duckdb.sql(f"select count(*) from {a}").fetchall()[0][0]
d = duckdb.sql(f"select (select count(*) from (select * from {a} except all select * from {b}))"
               f" + (select count(*) from (select * from {b} except all select * from {a}))").fetchall()[0][0]
print(f"rows={n} diff={d}")
PYEOF
)
  echo "$line $same"
  rm -f "$W/old.parquet" "$W/new.parquet"
done
