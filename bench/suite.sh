#!/usr/bin/env bash
# The benchmark suite: govlake against DuckDB on the same files, at several sizes.
#
# For each size (audit events; requests, assignments, reviews in proportion, as
# `govlake generate` makes them: about 13 audit events per user) it measures, in one run on
# the same machine and the same files:
#   ingest  export directory → lake: `govlake ingest --from` (fresh lake each run) against
#           DuckDB reading the same JSON into Parquet, one file per entity, deduped by id
#           (bench/duckdb_ingest.py)
#   views   every governance view: `govlake sql` against DuckDB running the same SQL over the
#           Parquet files of the same Delta tables (bench/duckdb_views.py)
#   pack    `govlake pack` for one quarter (no DuckDB counterpart)
#   live    `govlake ingest --graph` through govlake-graph-sim on 127.0.0.1, rate limiter off
#           (no DuckDB counterpart; skipped above LIVE_MAX events: the simulator holds the
#           tenant in memory, about 2.8 GiB per million audit events)
# Each figure is the median wall time of RUNS runs of a fresh process and the peak RSS over
# those runs (GNU time). Results go to bench/results/SIZE/STAGE.md (so sizes and stages can
# be run apart; a run rewrites only what it measured) and are gathered into bench/RESULTS.md
# with the machine, the command and bench/ANALYSIS.md.
#
# Usage: bench/suite.sh [SIZE...]      SIZE: 100k, 1m, 10m (default: all three), or a number
#        bench/suite.sh --gather       only rewrite bench/RESULTS.md from bench/results/
#   RUNS=3            runs per figure
#   STAGES="ingest views pack live"
#   LIVE_MAX=2000000  largest size (audit events) the live stage runs at
#   WORK=target/bench/suite   generated tenants and lakes (each size's is removed after it,
#                     unless KEEP=1)
#   PROFILE=release   cargo profile of the binaries (dev to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUNS="${RUNS:-3}"
STAGES="${STAGES:-ingest views pack live}"
LIVE_MAX="${LIVE_MAX:-2000000}"
PROFILE="${PROFILE:-release}"
WORK="${WORK:-target/bench/suite}"
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100k 1m 10m)
[ "${SIZES[0]}" != --gather ] || SIZES=()

cargo build --locked --profile "$PROFILE" -p govlake -p govlake-graph-sim --bins
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN="$ROOT/target/$dir/govlake"
SIM="$ROOT/target/$dir/govlake-graph-sim"
VENV="$ROOT/target/bench/venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import duckdb, deltalake' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet duckdb==2.0.1 deltalake==1.6.6 || "$VENV/bin/pip" install --quiet duckdb deltalake
fi
PY="$VENV/bin/python"
mkdir -p "$WORK" bench/results
WORK="$(cd "$WORK" && pwd)"
SIM_PID=""
trap '[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true' EXIT

events_of() {
  case "$1" in
    *k) echo $(( ${1%k} * 1000 )) ;;
    *m) echo $(( ${1%m} * 1000000 )) ;;
    *) echo "$1" ;;
  esac
}

# measure CMD...: runs CMD $RUNS times (SETUP, if set, before each run, untimed); prints
# "median_seconds peak_rss_mib". The last run's stdout stays in $WORK/stdout.txt.
measure() {
  local times=() rss=0
  for _ in $(seq "$RUNS"); do
    [ -z "${SETUP:-}" ] || eval "$SETUP"
    if ! /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/stdout.txt" 2>"$WORK/stderr.txt"; then
      echo "failed: $*" >&2; tail -5 "$WORK/stderr.txt" >&2; echo "- -"; return
    fi
    read -r t m <"$WORK/time.txt"
    times+=("$t"); [ "$m" -gt "$rss" ] && rss=$m
  done
  printf '%s %s\n' "$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "$((rss / 1024))"
}

# The line under each stage's heading: when, and how many runs each figure is.
stamp() {
  if [ "$RUNS" -gt 1 ]; then
    echo "_Measured $(date -u +%F); median of $RUNS runs, peak RSS over them._"
  else
    echo "_Measured $(date -u +%F); **one run per figure** (RUNS=1, not a median)._"
  fi
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }
per_sec() { awk -v n="$1" -v t="$2" 'BEGIN { if (t+0 > 0) printf "%.0f", n / t; else print "-" }'; }

for size in "${SIZES[@]}"; do
  events=$(events_of "$size")
  users=$(( events / 13 ))
  S="$WORK/$size"
  R="$ROOT/bench/results/$size"
  mkdir -p "$S" "$R"
  if [ ! -f "$S/tenant/.complete" ]; then
    rm -rf "$S/tenant"
    echo "== $size: generating $users users" >&2
    "$BIN" --no-progress -q generate --users "$users" --seed 1 --out "$S/tenant"
    touch "$S/tenant/.complete"
  fi
  tenant_size=$(du -sh "$S/tenant" | cut -f1)
  {
    echo "## $size audit events"
    echo
    echo "Tenant: \`govlake generate --users $users --seed 1\` ($tenant_size of JSON)."
    echo
  } >"$R/0-tenant.md"

  if [[ " $STAGES " == *" ingest "* ]]; then
    echo "== $size: ingest" >&2
    OUT="$R/1-ingest.md"
    SETUP="rm -rf '$S/lake'"; read -r gt gm < <(measure "$BIN" --lake "$S/lake" --no-progress --format json ingest --from "$S/tenant")
    records=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["records"])' "$WORK/stdout.txt" 2>/dev/null || echo 0)
    SETUP="rm -rf '$S/duckdb'"; read -r dt dm < <(measure "$PY" bench/duckdb_ingest.py "$S/tenant" "$S/duckdb")
    read -r drecords _ <"$WORK/stdout.txt" || drecords=0
    {
      echo "### Ingest: export directory → tables"
      echo
      stamp
      echo
      echo "| engine | records | s | records/s | peak MiB |"
      echo "|---|---:|---:|---:|---:|"
      echo "| govlake (Delta, typed, history, reconciliation) | $records | $gt | $(per_sec "$records" "$gt") | $gm |"
      echo "| DuckDB (Parquet per entity, deduped by id) | $drecords | $dt | $(per_sec "$drecords" "$dt") | $dm |"
      echo
      echo "Throughput govlake / DuckDB: **$(ratio "$(per_sec "$records" "$gt")" "$(per_sec "$drecords" "$dt")")** (goal ≥ 2)."
      echo
    } >"$OUT"
    rm -rf "$S/duckdb"
  fi
  # The later stages read one lake.
  if [ ! -f "$S/lake/_ingest_runs/_delta_log/00000000000000000000.json" ]; then
    rm -rf "$S/lake"
    "$BIN" --lake "$S/lake" --no-progress -q ingest --from "$S/tenant"
  fi

  if [[ " $STAGES " == *" views "* ]]; then
    echo "== $size: views" >&2
    OUT="$R/2-views.md"
    SETUP=""
    {
      echo "### Governance views"
      echo
      stamp
      echo
      echo "| view | rows | govlake s | govlake MiB | DuckDB s | DuckDB MiB | time govlake / DuckDB |"
      echo "|---|---:|---:|---:|---:|---:|---:|"
    } >"$OUT"
    views=$("$BIN" --lake "$S/lake" --format json sql --list | "$PY" -c '
import json, sys
for i in json.load(sys.stdin)["summary"]:
    if i["kind"] == "view" or i["kind"].startswith("query"):
        print(i["name"])')
    for v in $views; do
      params=()
      [ "$v" = access_as_of ] && params=(--param "as_of=2026-09-30T23:59:59Z")
      read -r gt gm < <(measure "$BIN" --lake "$S/lake" -q sql --queries queries -f "queries/$v.sql" "${params[@]}" -o parquet --out "$S/govlake.parquet")
      rows=$("$PY" -c "import duckdb; print(duckdb.sql(\"select count(*) from read_parquet('$S/govlake.parquet')\").fetchall()[0][0])" 2>/dev/null || echo "?")
      read -r dt dm < <(measure "$PY" bench/duckdb_views.py "$S/lake" queries "$v" "$S/duckdb.parquet" 2026-09-30T23:59:59Z)
      drows=$(cat "$WORK/stdout.txt" 2>/dev/null || echo "?")
      [ "$rows" != "$drows" ] && rows="$rows (DuckDB $drows)"
      echo "| $v | $rows | $gt | $gm | $dt | $dm | $(ratio "$gt" "$dt") |" >>"$OUT"
    done
    echo >>"$OUT"
  fi

  if [[ " $STAGES " == *" pack "* ]]; then
    echo "== $size: pack" >&2
    OUT="$R/3-pack.md"
    SETUP="rm -rf '$S/pack' '$S/pack.tar'"; read -r pt pm < <(measure "$BIN" --lake "$S/lake" --no-progress -q pack --period 2026Q3 --unsigned --out "$S/pack")
    files=$(find "$S/pack" -type f 2>/dev/null | wc -l)
    {
      echo "### Evidence pack"
      echo
      stamp
      echo
      echo "\`govlake pack --period 2026Q3 --unsigned\`: **$pt s**, peak **$pm MiB**; $files files, $(du -sh "$S/pack" 2>/dev/null | cut -f1) (plus the tar)."
      echo
    } >"$OUT"
    rm -rf "$S/pack" "$S/pack.tar"
  fi

  if [[ " $STAGES " == *" live "* ]]; then
    echo "== $size: live" >&2
    OUT="$R/4-live.md"
    if [ "$events" -gt "$LIVE_MAX" ]; then
      {
        echo "### Live ingestion through the simulator"
        echo
        echo "Not run at this size: the simulator keeps the tenant in memory (about 2.8 GiB per million audit events; LIVE_MAX=$LIVE_MAX)."
        echo
      } >"$OUT"
    else
      "$SIM" --from "$S/tenant" >"$S/sim.out" 2>"$S/sim.err" &
      SIM_PID=$!
      for _ in $(seq 1 600); do grep -q "listening on" "$S/sim.out" 2>/dev/null && break; sleep 0.5; done
      URL=$(sed -n 's/^listening on //p' "$S/sim.out")
      SETUP="rm -rf '$S/live-lake'"; read -r lt lm < <(measure env AZURE_CLIENT_SECRET=sim-secret "$BIN" --lake "$S/live-lake" --no-progress --format json \
        ingest --graph --graph-endpoint "$URL" --authority-host "$URL" --tenant bench --client-id bench --no-rate-limit --full)
      lrecords=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["graph"]["records"])' "$WORK/stdout.txt" 2>/dev/null || echo 0)
      kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
      {
        echo "### Live ingestion through the simulator"
        echo
        stamp
        echo
        echo "\`govlake ingest --graph --full --no-rate-limit\` against govlake-graph-sim serving the tenant (pages of 999): $lrecords records in **$lt s** = **$(per_sec "$lrecords" "$lt") records/s**, peak **$lm MiB** (govlake)."
        echo
      } >"$OUT"
      rm -rf "$S/live-lake"
    fi
  fi
  SETUP=""
  [ -n "${KEEP:-}" ] || rm -rf "$S"
  echo "== $size: written to $R" >&2
done

{
  echo "# Benchmarks: govlake against DuckDB"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; govlake profile $PROFILE; DuckDB $("$PY" -c 'import duckdb; print(duckdb.__version__)'); $(uname -sr)."
  echo
  echo "Reproduce: \`bench/suite.sh 100k 1m 10m\` (RUNS=3). Each size's section is rewritten when that size is run."
  echo
  cat "$ROOT/bench/ANALYSIS.md"
  echo
  for d in $(ls -d "$ROOT"/bench/results/*/ | while read -r d; do echo "$(events_of "$(basename "$d")") $d"; done | sort -n | cut -d' ' -f2); do
    cat "$d"*.md
  done
} >bench/RESULTS.md
echo "Written to bench/RESULTS.md" >&2
