#!/usr/bin/env bash
# Governance-view benchmark: every view of queries/ run by `govlake sql` against DuckDB
# running the same SQL over the Parquet files of the same Delta tables. Each side writes the
# whole result to Parquet; each figure is the median wall time of RUNS runs of a fresh process
# (opening the lake included) and the peak RSS over those runs (GNU time).
#
# Usage: bench/views.sh [USERS]   (default 375,000 users ≈ 1.3M requests, 5M audit events)
#   RUNS=3          runs per figure
#   PROFILE=release cargo profile of the govlake binary (dev to skip the release build)
#   WORK=target/bench/views-USERS   tenant and lake, kept and reused between runs
#   RESULT=bench/VIEWS.md           where the Markdown table goes
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${1:-375000}"
RUNS="${RUNS:-3}"
PROFILE="${PROFILE:-release}"
WORK="${WORK:-target/bench/views-$USERS}"
cargo build --locked --profile "$PROFILE" --bin govlake
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN="$PWD/target/$dir/govlake"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
VENV="$PWD/target/bench/venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet duckdb deltalake
fi
if [ ! -f "$WORK/tenant/.complete" ]; then
  rm -rf "$WORK/tenant"
  "$BIN" generate --users "$USERS" --seed 1 --out "$WORK/tenant"
  touch "$WORK/tenant/.complete"
fi
if [ ! -f "$WORK/lake/.complete" ]; then
  rm -rf "$WORK/lake"
  "$BIN" --lake "$WORK/lake" --no-progress -q ingest --from "$WORK/tenant"
  touch "$WORK/lake/.complete"
fi
LAKE="$WORK/lake"
AS_OF=2026-09-30T23:59:59Z
RESULT="${RESULT:-bench/VIEWS.md}"

# measure LABEL CMD...: runs CMD $RUNS times; prints "median_seconds peak_rss_mib".
measure() {
  local times=() rss=0
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/stdout.txt" 2>"$WORK/stderr.txt" || {
      echo "failed: $*" >&2; cat "$WORK/stderr.txt" >&2; echo "- -"; return; }
    read -r t m <"$WORK/time.txt"
    times+=("$t"); [ "$m" -gt "$rss" ] && rss=$m
  done
  printf '%s %s\n' "$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "$((rss / 1024))"
}

views=$("$BIN" --lake "$LAKE" --format json sql --list | "$VENV/bin/python" -c '
import json, sys
for i in json.load(sys.stdin)["summary"]:
    if i["kind"] == "view" or i["kind"].startswith("query"):
        print(i["name"])')

counts=$("$BIN" --lake "$LAKE" -q sql -o csv -c "select
  (select count(*) from assignment_requests) as requests,
  (select count(*) from audit_events) as audit_events,
  (select count(*) from assignments) as assignments,
  (select count(*) from access_packages) as packages")
{
  echo "# govlake sql vs DuckDB, governance views"
  echo
  echo "Lake: \`generate --users $USERS --seed 1\` ingested; rows: $(echo "$counts" | tail -1) (requests, audit events, assignments, packages)."
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; govlake profile $PROFILE; DuckDB $("$VENV/bin/python" -c 'import duckdb; print(duckdb.__version__)'); median of $RUNS runs, fresh process each."
  echo "Reproduce: \`bench/views.sh $USERS\`"
  echo
  echo "| view | rows | govlake s | govlake peak MiB | DuckDB s | DuckDB peak MiB | govlake / DuckDB |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
} | tee "$RESULT"
for v in $views; do
  params=()
  [ "$v" = access_as_of ] && params=(--param "as_of=$AS_OF")
  read -r gt gm < <(measure "$BIN" --lake "$LAKE" -q sql --queries queries -f "queries/$v.sql" "${params[@]}" -o parquet --out "$WORK/govlake.parquet")
  rows=$("$VENV/bin/python" -c "import duckdb,sys; print(duckdb.sql(\"select count(*) from read_parquet('$WORK/govlake.parquet')\").fetchall()[0][0])" 2>/dev/null || echo "?")
  read -r dt dm < <(measure "$VENV/bin/python" bench/duckdb_views.py "$LAKE" queries "$v" "$WORK/duckdb.parquet" "$AS_OF")
  drows=$(cat "$WORK/stdout.txt" 2>/dev/null || echo "?")
  ratio=$(awk -v a="$gt" -v b="$dt" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }')
  [ "$rows" != "$drows" ] && rows="$rows (DuckDB $drows)"
  echo "| $v | $rows | $gt | $gm | $dt | $dm | $ratio |" | tee -a "$RESULT"
done
echo
echo "Written to $RESULT"
