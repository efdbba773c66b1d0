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
#   daily   (not in the default STAGES) the lake after DAYS more daily runs (default 30): the
#           export's assignments ingested again once a day after it, unchanged, as a scheduled
#           job would, so `_ingest_runs` holds a month of observations where the generated
#           lake holds one; then each view that reads assignment_holdings, govlake against
#           DuckDB as in `views`
#   live    `govlake ingest --graph` through govlake-graph-sim on 127.0.0.1, rate limiter off
#           (no DuckDB counterpart), with the simulator's start-up (its index of the export:
#           32 bytes a record; records are read from the files as pages are asked for) and
#           its peak RSS
# Each figure is the median wall time of RUNS runs of a fresh process, the peak RSS over
# those runs and the bytes the process wrote to disk (GNU time: %e %M %O). Results go to
# bench/results/SIZE/STAGE.md, with the same figures in STAGE.json (so sizes and stages can be
# run apart; a run rewrites only what it measured) and are gathered into bench/RESULTS.md
# with the machine, the command, the goals table (bench/goals.py computes each goal's state
# from the JSON figures) and bench/ANALYSIS.md.
#
# A second export layout: SIZE written LAYOUT:SIZE runs the ingest stage only (both engines,
# same files) on the generated tenant of SIZE rewritten by bench/relayout.py, results in
# bench/results/LAYOUT-SIZE/:
#   neutral:SIZE      the layout real exports take: `export-000001.json`, … (the entity told
#                     only by `@odata.context`), Graph pages of 1,000, collections in a seeded
#                     random order, audit pages last (the goals table's second layout)
#   interleaved:SIZE  a check of our own that throughput is not tied to one order: pages of
#                     5,000, pages of up to 8 collections interleaved at random
# Before measuring a layout the suite checks it (and fails loudly if not): govlake's ingest
# of it reads as many records as the generated layout's, with no snapshot gap and the same
# rows in every table, and DuckDB reads as many records from it.
#
# Usage: bench/suite.sh [SIZE...]      SIZE: 100k, 1m, 10m (default: all three), or a number,
#                                      or LAYOUT:SIZE (above)
#        bench/suite.sh --gather       only rewrite bench/RESULTS.md from bench/results/
#   RUNS=3            runs per figure
#   STAGES="ingest views pack live"   (add daily for the daily-runs stage)
#   DAYS=30           daily runs of the daily stage
#   LIVE_MAX=0        largest size (audit events) the live stage runs at (0: every size)
#   WORK=target/bench/suite   generated tenants and lakes (each size's is removed after it,
#                     unless KEEP=1)
#   PROFILE=release   cargo profile of the binaries (dev to skip the release build)
#   BIN_DIR=DIR       use the govlake and govlake-graph-sim binaries in DIR (no cargo build)
#   VENV=DIR          Python virtual environment with DuckDB (made if missing;
#                     default target/bench/venv)
#   DEST=bench        where results/ and RESULTS.md are written (elsewhere for trial runs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUNS="${RUNS:-3}"
STAGES="${STAGES:-ingest views pack live}"
LIVE_MAX="${LIVE_MAX:-0}"
PROFILE="${PROFILE:-release}"
WORK="${WORK:-target/bench/suite}"
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100k 1m 10m)
[ "${SIZES[0]}" != --gather ] || SIZES=()

if [ -n "${BIN_DIR:-}" ]; then
  BIN_DIR="$(cd "$BIN_DIR" && pwd)"
elif [ ${#SIZES[@]} -eq 0 ]; then
  # --gather reads bench/results only: nothing to build (a build here once ran beside
  # another cargo build).
  BIN_DIR="$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
else
  cargo build --locked --profile "$PROFILE" -p govlake -p govlake-graph-sim --bins
  BIN_DIR="$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
fi
BIN="$BIN_DIR/govlake"
SIM="$BIN_DIR/govlake-graph-sim"
VENV="${VENV:-$ROOT/target/bench/venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import duckdb, deltalake' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet duckdb==2.0.1 deltalake==1.6.6 || "$VENV/bin/pip" install --quiet duckdb deltalake
fi
PY="$VENV/bin/python"
DEST="${DEST:-bench}"
mkdir -p "$WORK" "$DEST/results"
WORK="$(cd "$WORK" && pwd)"
DEST="$(cd "$DEST" && pwd)"
SIM_PID=""
# SIM_PID is GNU time's; the simulator is its child.
trap '[ -n "$SIM_PID" ] && { pkill -TERM -P "$SIM_PID"; kill "$SIM_PID"; } 2>/dev/null || true' EXIT

events_of() {
  case "$1" in
    *k) echo $(( ${1%k} * 1000 )) ;;
    *m) echo $(( ${1%m} * 1000000 )) ;;
    *) echo "$1" ;;
  esac
}

# measure CMD...: runs CMD $RUNS times (SETUP, if set, before each run, untimed); prints
# "median_seconds peak_rss_mib written_mib" (written: the most any run wrote to files, GNU
# time's %O, temporary files included). The last run's stdout stays in $WORK/stdout.txt.
measure() {
  local times=() rss=0 out=0
  for _ in $(seq "$RUNS"); do
    [ -z "${SETUP:-}" ] || eval "$SETUP"
    if ! /usr/bin/time -f "%e %M %O" -o "$WORK/time.txt" "$@" >"$WORK/stdout.txt" 2>"$WORK/stderr.txt"; then
      echo "failed: $*" >&2; tail -5 "$WORK/stderr.txt" >&2; echo "- - -"; return
    fi
    read -r t m o < <(tail -1 "$WORK/time.txt")
    times+=("$t"); [ "$m" -gt "$rss" ] && rss=$m; [ "$o" -gt "$out" ] && out=$o
  done
  printf '%s %s %s\n' "$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')" "$((rss / 1024))" "$((out / 2048))"
}

# A figure as JSON: the number, or null when it was not measured ("-", "?", empty).
num() { [[ "${1:-}" =~ ^[0-9]+(\.[0-9]+)?$ ]] && echo "$1" || echo null; }

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

# measure_views LAKE TABLE_MD VIEW...: each view by govlake and by DuckDB over LAKE; appends a
# row per view to TABLE_MD and prints the views' figures as JSON objects, comma-separated.
measure_views() {
  local lake="$1" out="$2" json="" v params gt gm dt dm rows drows
  shift 2
  for v in "$@"; do
    params=()
    # The values duckdb_views.py binds too: the end of 2026Q3, and its bounds.
    ! grep -q '\$as_of' "queries/$v.sql" || params+=(--param "as_of=2026-09-30T23:59:59Z")
    ! grep -q '\$from' "queries/$v.sql" || params+=(--param "from=2026-07-01T00:00:00Z" --param "to=2026-10-01T00:00:00Z")
    read -r gt gm _ < <(measure "$BIN" --lake "$lake" -q sql --queries queries -f "queries/$v.sql" "${params[@]}" -o parquet --out "$WORK/govlake.parquet")
    rows=$("$PY" -c "import duckdb; print(duckdb.sql(\"select count(*) from read_parquet('$WORK/govlake.parquet')\").fetchall()[0][0])" 2>/dev/null || echo "?")
    read -r dt dm _ < <(measure "$PY" bench/duckdb_views.py "$lake" queries "$v" "$WORK/duckdb.parquet" 2026-09-30T23:59:59Z)
    drows=$(cat "$WORK/stdout.txt" 2>/dev/null || echo "?")
    json+="${json:+, }{\"name\": \"$v\", \"rows\": $(num "$rows"), \"duckdb_rows\": $(num "$drows"), \"govlake_s\": $(num "$gt"), \"govlake_mib\": $(num "$gm"), \"duckdb_s\": $(num "$dt"), \"duckdb_mib\": $(num "$dm")}"
    [ "$rows" != "$drows" ] && rows="$rows (DuckDB $drows)"
    echo "| $v | $rows | $gt | $gm | $dt | $dm | $(ratio "$gt" "$dt") |" >>"$out"
  done
  rm -f "$WORK/govlake.parquet" "$WORK/duckdb.parquet"
  echo "$json"
}

# The generated tenant of SIZE (made once; kept until no later argument needs it).
generated() {
  local events users T="$WORK/$1/tenant"
  events=$(events_of "$1"); users=$(( events / 13 ))
  if [ ! -f "$T/.complete" ]; then
    rm -rf "$T"; mkdir -p "$WORK/$1"
    echo "== $1: generating $users users" >&2
    "$BIN" --no-progress -q generate --users "$users" --seed 1 --out "$T" >&2
    touch "$T/.complete"
  fi
  echo "$T"
}

# relayout_args LAYOUT: bench/relayout.py's options for a layout.
relayout_args() {
  case "$1" in
    neutral) echo "--page 1000 --order audit-last --seed 1" ;;
    interleaved) echo "--page 5000 --order interleaved --window 8 --seed 2" ;;
    *) echo "bench/suite.sh: unknown layout '$1' (neutral, interleaved)" >&2; exit 2 ;;
  esac
}

# check_layout SIZE LAYOUT_LAKE LAYOUT_INGEST_JSON DUCKDB_RECORDS: the layout's lake holds what
# the generated layout's does (same records read, no snapshot gap, same rows in every table)
# and DuckDB read as many records; exits the suite if not, before any figure is written.
check_layout() {
  local ref="$WORK/$1.reference" tables
  if [ ! -f "$ref/tables.json" ]; then
    echo "== $1: ingesting the generated layout once, to check the other layout against" >&2
    rm -rf "$ref"; mkdir -p "$ref"
    "$BIN" --lake "$ref/lake" --no-progress --format json ingest --from "$(generated "$1")" >"$ref/ingest.json"
    "$BIN" --lake "$ref/lake" --format json tables >"$ref/tables.json"
    rm -rf "$ref/lake"
  fi
  tables=$(mktemp)
  "$BIN" --lake "$2" --format json tables >"$tables"
  if ! "$PY" bench/same_lake.py "$ref/ingest.json" "$ref/tables.json" "$3" "$tables" "$4"; then
    echo "bench/suite.sh: the relaid-out export does not ingest to the same lake (above); no figure written" >&2
    rm -f "$tables"; exit 1
  fi
  rm -f "$tables"
}

# needed_later I SIZE: whether an argument after the I-th names SIZE (so its tenant is kept).
needed_later() {
  local j
  for ((j = $1 + 1; j < ${#SIZES[@]}; j++)); do [ "${SIZES[$j]#*:}" = "$2" ] && return 0; done
  return 1
}

for i in "${!SIZES[@]}"; do
  spec="${SIZES[$i]}"
  size="${spec#*:}"
  layout=generated; [ "$spec" = "$size" ] || layout="${spec%%:*}"
  events=$(events_of "$size")
  users=$(( events / 13 ))
  if [ "$layout" = generated ]; then
    name="$size"
    S="$WORK/$size"
    T=$(generated "$size")
    tenant_desc="\`govlake generate --users $users --seed 1\`"
  else
    name="$layout-$size"
    S="$WORK/$name"
    T="$S/tenant"
    args=$(relayout_args "$layout")
    if [ ! -f "$T/.complete" ]; then
      rm -rf "$T"
      echo "== $name: bench/relayout.py $args" >&2
      "$PY" bench/relayout.py "$(generated "$size")" "$T" $args >"$S.relayout.json"
      touch "$T/.complete"
    fi
    tenant_desc="\`govlake generate --users $users --seed 1\` rewritten by \`bench/relayout.py $args\` ($("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("{:,} pages of {:,} collections".format(d["pages"], d["collections"]))' "$S.relayout.json"))"
  fi
  R="$DEST/results/$name"
  mkdir -p "$S" "$R"
  tenant_size=$(du -sh "$T" | cut -f1)
  {
    if [ "$layout" = generated ]; then echo "## $size audit events"; else echo "## $size audit events, $layout layout"; fi
    echo
    echo "Tenant: $tenant_desc ($tenant_size of JSON)."
    echo
  } >"$R/0-tenant.md"

  if [[ " $STAGES " == *" ingest "* ]] || [ "$layout" != generated ]; then
    echo "== $name: ingest" >&2
    SETUP="rm -rf '$S/lake'"; read -r gt gm gw < <(measure "$BIN" --lake "$S/lake" --no-progress --format json ingest --from "$T")
    records=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["records"])' "$WORK/stdout.txt" 2>/dev/null || echo 0)
    cp "$WORK/stdout.txt" "$S/ingest.json"
    if [ "$layout" = generated ]; then
      mkdir -p "$WORK/$size.reference"
      cp "$S/ingest.json" "$WORK/$size.reference/ingest.json"
      "$BIN" --lake "$S/lake" --format json tables >"$WORK/$size.reference/tables.json"
    fi
    SETUP="rm -rf '$S/duckdb'"; read -r dt dm dw < <(measure "$PY" bench/duckdb_ingest.py "$T" "$S/duckdb")
    read -r drecords _ <"$WORK/stdout.txt" || drecords=0
    [ "$layout" = generated ] || check_layout "$size" "$S/lake" "$S/ingest.json" "$drecords"
    us=$(awk -v t="$gt" -v n="$records" 'BEGIN { if (n+0 > 0 && t+0 > 0) printf "%.1f", t * 1e6 / n; else print "-" }')
    {
      echo "### Ingest: export directory → tables"
      echo
      stamp
      echo
      echo "| engine | records | s | records/s | µs per record | peak MiB | written MiB |"
      echo "|---|---:|---:|---:|---:|---:|---:|"
      echo "| govlake (Delta, typed, history, reconciliation) | $records | $gt | $(per_sec "$records" "$gt") | $us | $gm | $gw |"
      echo "| DuckDB (Parquet per entity, deduped by id) | $drecords | $dt | $(per_sec "$drecords" "$dt") | $(awk -v t="$dt" -v n="$drecords" 'BEGIN { if (n+0 > 0 && t+0 > 0) printf "%.1f", t * 1e6 / n; else print "-" }') | $dm | $dw |"
      echo
      echo "Throughput govlake / DuckDB: **$(ratio "$(per_sec "$records" "$gt")" "$(per_sec "$drecords" "$dt")")** (goal ≥ 2)."
      [ "$layout" = generated ] || echo "Checked first: the same records, no snapshot gap and the same rows in every table as the generated layout's lake, and DuckDB read as many records."
      echo
    } >"$R/1-ingest.md"
    printf '{"size": "%s", "layout": "%s", "events": %s, "runs": %s, "govlake": {"records": %s, "s": %s, "mib": %s, "written_mib": %s}, "duckdb": {"records": %s, "s": %s, "mib": %s, "written_mib": %s}}\n' \
      "$size" "$layout" "$events" "$RUNS" "$(num "$records")" "$(num "$gt")" "$(num "$gm")" "$(num "$gw")" \
      "$(num "$drecords")" "$(num "$dt")" "$(num "$dm")" "$(num "$dw")" >"$R/1-ingest.json"
    rm -rf "$S/duckdb"
  fi
  if [ "$layout" != generated ]; then
    # The other stages read the same tables whatever the layout: measured on the generated one.
    SETUP=""
    if [ -z "${KEEP:-}" ]; then
      rm -rf "$S" "$S.relayout.json"
      needed_later "$i" "$size" || rm -rf "$WORK/$size" "$WORK/$size.reference"
    fi
    echo "== $name: written to $R" >&2
    continue
  fi
  # The later stages read one lake.
  if [ ! -f "$S/lake/_ingest_runs/_delta_log/00000000000000000000.json" ]; then
    rm -rf "$S/lake"
    "$BIN" --lake "$S/lake" --no-progress -q ingest --from "$T"
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
    json_views=$(measure_views "$S/lake" "$OUT" $views)
    echo >>"$OUT"
    printf '{"size": "%s", "runs": %s, "views": [%s]}\n' "$size" "$RUNS" "$json_views" >"$R/2-views.json"
  fi

  if [[ " $STAGES " == *" pack "* ]]; then
    echo "== $size: pack" >&2
    SETUP="rm -rf '$S/pack' '$S/pack.tar'"; read -r pt pm pw < <(measure "$BIN" --lake "$S/lake" --no-progress -q pack --period 2026Q3 --unsigned --out "$S/pack")
    if [ "$pt" = "-" ]; then
      # A pack that fails is a goal not met, said as such; the later stages still run.
      why=$(grep -m1 -E '^Error|^error' "$WORK/stderr.txt" | cut -c1-300 | sed 's/"/\\"/g' || true)
      {
        echo "### Evidence pack"
        echo
        stamp
        echo
        echo "\`govlake pack --period 2026Q3 --unsigned\` **failed**: ${why:-see the suite output}"
        echo
      } >"$R/3-pack.md"
      printf '{"size": "%s", "runs": %s, "failed": "%s"}\n' "$size" "$RUNS" "${why:-failed}" >"$R/3-pack.json"
      rm -rf "$S/pack" "$S/pack.tar"
    fi
  fi
  if [[ " $STAGES " == *" pack "* ]] && [ "$pt" != "-" ]; then
    files=$( (find "$S/pack" -type f 2>/dev/null || true) | wc -l)
    folder_mib=$(du -sm --apparent-size "$S/pack" 2>/dev/null | cut -f1 || true)
    tar_mib=$([ -f "$S/pack.tar" ] && du -sm --apparent-size "$S/pack.tar" | cut -f1 || echo 0)
    # The pack's own size: its folder, or its tar when only the tar is written.
    pack_mib=${folder_mib:-$tar_mib}
    {
      echo "### Evidence pack"
      echo
      stamp
      echo
      echo "\`govlake pack --period 2026Q3 --unsigned\`: **$pt s**, peak **$pm MiB**; $files files, ${folder_mib:-0} MiB folder + $tar_mib MiB tar; **$pw MiB written** to disk in all (GNU time's file-system outputs, temporary files included): $(ratio "$pw" "$pack_mib")× the pack's size (goal ≤ 2)."
      echo
    } >"$R/3-pack.md"
    printf '{"size": "%s", "runs": %s, "s": %s, "mib": %s, "written_mib": %s, "pack_mib": %s, "folder_mib": %s, "tar_mib": %s, "files": %s}\n' \
      "$size" "$RUNS" "$(num "$pt")" "$(num "$pm")" "$(num "$pw")" "$(num "$pack_mib")" "$(num "${folder_mib:-}")" "$(num "$tar_mib")" "$files" >"$R/3-pack.json"
    rm -rf "$S/pack" "$S/pack.tar"
  fi
  if [[ " $STAGES " == *" daily "* ]]; then
    days="${DAYS:-30}"
    echo "== $size: daily ($days runs)" >&2
    D="$S/daily"
    rm -rf "$D"; mkdir -p "$D/export/entitlementManagement"
    cp -r "$S/lake" "$D/lake"
    ln -s "$T/entitlementManagement/assignments" "$D/export/entitlementManagement/assignments"
    for day in $(seq "$days"); do
      "$PY" -c 'import json, sys, datetime as d
e = json.load(open(sys.argv[1]))
t = d.datetime.fromisoformat(e["exportedAt"].replace("Z", "+00:00")) + d.timedelta(days=int(sys.argv[2]))
e["exportedAt"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
json.dump(e, open(sys.argv[3], "w"))' "$T/_export.json" "$day" "$D/export/_export.json"
      "$BIN" --lake "$D/lake" --no-progress -q ingest --from "$D/export"
    done
    observations=$("$BIN" --lake "$D/lake" -q sql -o csv -c "select count(distinct observed_at) from _ingest_runs where table_name = 'assignments'" | tail -1)
    OUT="$R/5-daily.md"
    {
      echo "### Views after $days daily runs"
      echo
      stamp
      echo
      echo "The lake above, then its assignments ingested again, unchanged, once a day for $days days (the export's \`exportedAt\` moved on a day each time): $observations observations of the assignments instead of one. The views that read assignment_holdings:"
      echo
      echo "| view | rows | govlake s | govlake MiB | DuckDB s | DuckDB MiB | time govlake / DuckDB |"
      echo "|---|---:|---:|---:|---:|---:|---:|"
    } >"$OUT"
    json_views=$(measure_views "$D/lake" "$OUT" $(grep -l assignment_holdings queries/*.sql | xargs -n1 basename | sed 's/\.sql$//'))
    echo >>"$OUT"
    printf '{"size": "%s", "runs": %s, "days": %s, "observations": %s, "views": [%s]}\n' "$size" "$RUNS" "$days" "$(num "$observations")" "$json_views" >"$R/5-daily.json"
    rm -rf "$D"
  fi
  if [[ " $STAGES " == *" live "* ]]; then
    echo "== $size: live" >&2
    OUT="$R/4-live.md"
    if [ "$LIVE_MAX" -gt 0 ] && [ "$events" -gt "$LIVE_MAX" ]; then
      {
        echo "### Live ingestion through the simulator"
        echo
        echo "Not run at this size: above LIVE_MAX=$LIVE_MAX audit events, as asked."
        echo
      } >"$OUT"
      printf '{"size": "%s", "skipped": "not run: above LIVE_MAX=%s"}\n' "$size" "$LIVE_MAX" >"$R/4-live.json"
    else
      sim_from=$(date +%s.%N)
      /usr/bin/time -f "%M" -o "$S/sim-time.txt" "$SIM" --from "$S/tenant" >"$S/sim.out" 2>"$S/sim.err" &
      SIM_PID=$!
      # Start-up reads the whole export once (its index): minutes at 10M audit events.
      for _ in $(seq 1 18000); do
        grep -q "listening on" "$S/sim.out" 2>/dev/null && break
        kill -0 "$SIM_PID" 2>/dev/null || break
        sleep 0.2
      done
      sim_up=$(awk -v a="$sim_from" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
      URL=$(sed -n 's/^listening on //p' "$S/sim.out")
      [ -n "$URL" ] || { echo "the simulator did not start:" >&2; tail -5 "$S/sim.err" >&2; }
      SETUP="rm -rf '$S/live-lake'"; read -r lt lm _ < <(measure env AZURE_CLIENT_SECRET=sim-secret "$BIN" --lake "$S/live-lake" --no-progress --format json \
        ingest --graph --graph-endpoint "$URL" --authority-host "$URL" --tenant bench --client-id bench --no-rate-limit --full)
      lrecords=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["graph"]["records"])' "$WORK/stdout.txt" 2>/dev/null || echo 0)
      pkill -TERM -P "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
      sim_rss=$(( $(tail -1 "$S/sim-time.txt" 2>/dev/null || echo 0) / 1024 ))
      {
        echo "### Live ingestion through the simulator"
        echo
        stamp
        echo
        echo "\`govlake ingest --graph --full --no-rate-limit\` against govlake-graph-sim serving the tenant (pages of 999): $lrecords records in **$lt s** = **$(per_sec "$lrecords" "$lt") records/s**, peak **$lm MiB** (govlake). The simulator started (indexed the export) in $sim_up s and peaked at $sim_rss MiB over the $RUNS runs."
        echo
      } >"$OUT"
      printf '{"size": "%s", "runs": %s, "records": %s, "s": %s, "mib": %s}\n' "$size" "$RUNS" "$(num "$lrecords")" "$(num "$lt")" "$(num "$lm")" >"$R/4-live.json"
      rm -rf "$S/live-lake"
    fi
  fi
  SETUP=""
  if [ -z "${KEEP:-}" ]; then
    if needed_later "$i" "$size"; then rm -rf "$S/lake"; else rm -rf "$S" "$WORK/$size.reference"; fi
  fi
  echo "== $size: written to $R" >&2
done

{
  echo "# Benchmarks: govlake against DuckDB"
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; govlake profile $PROFILE; DuckDB $("$PY" -c 'import duckdb; print(duckdb.__version__)'); $(uname -sr)."
  echo
  echo "Reproduce: \`bench/suite.sh 100k 1m 10m neutral:1m\` (RUNS=3; \`neutral:SIZE\` is the second export layout, \`interleaved:SIZE\` a check of our own). Each size's section is rewritten when that size is run."
  echo
  "$PY" bench/goals.py "$DEST/results"
  cat "$ROOT/bench/ANALYSIS.md"
  echo
  # Sizes in order, each size's generated layout before its other layouts.
  for d in $(ls -d "$DEST"/results/*/ | while read -r d; do n=$(basename "$d"); echo "$(events_of "${n##*-}") $([ "$n" = "${n##*-}" ] && echo 0 || echo 1) $n $d"; done | sort -k1,1n -k2,2n -k3,3 | cut -d' ' -f4); do
    cat "$d"*.md
  done
} >"$DEST/RESULTS.md"
echo "Written to $DEST/RESULTS.md" >&2
