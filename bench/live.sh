#!/usr/bin/env bash
# Live-ingest benchmark: generates a tenant (default 77,000 users ≈ 1M audit events), serves
# it with govlake-graph-sim on 127.0.0.1, and times `govlake ingest --graph` through it with
# the directoryAudits rate limiter off (pages of 999, as in production). Prints records/s for
# the whole run (fetch + spool + ingest), the fetch alone, and peak RSS of govlake and of the
# simulator (GNU time), and how long the simulator took to start (it indexes the export: 32
# bytes a record; the records are read from the files as pages are asked for).
# Usage: bench/live.sh [USERS]   (PROFILE=dev for the dev build;
# NO_BUILD=1 to use the binaries already built)
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${1:-77000}"
PROFILE="${PROFILE:-release}"
[ -n "${NO_BUILD:-}" ] || cargo build --locked --profile "$PROFILE" -p govlake -p govlake-graph-sim --bins
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN="target/$dir/govlake"
SIM="target/$dir/govlake-graph-sim"
WORK="$(mktemp -d)"
SIM_PID=""
trap '[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
TENANT="${TENANT:-}"   # reuse a generated tenant folder instead of generating one
if [ -z "$TENANT" ]; then
  TENANT="$WORK/tenant"
  "$BIN" generate --users "$USERS" --seed 1 --out "$TENANT"
fi
du -sh "$TENANT"
SIM_FROM=$(date +%s.%N)
/usr/bin/time -v -o "$WORK/sim-time.txt" "$SIM" --from "$TENANT" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
# Start-up reads the whole export once (its index): minutes at 10M audit events.
for _ in $(seq 1 18000); do
  grep -q "listening on" "$WORK/sim.out" 2>/dev/null && break
  kill -0 "$SIM_PID" 2>/dev/null || break
  sleep 0.2
done
URL=$(sed -n 's/^listening on //p' "$WORK/sim.out")
[ -n "$URL" ] || { echo "the simulator did not start:"; cat "$WORK/sim.err"; exit 1; }
echo "simulator at $URL ($(grep -c serving "$WORK/sim.err") collections), started in $(awk -v a="$SIM_FROM" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
AZURE_CLIENT_SECRET=sim-secret /usr/bin/time -v -o "$WORK/time.txt" \
  "$BIN" --lake "$WORK/lake" --no-progress --format json ingest --graph \
  --graph-endpoint "$URL" --authority-host "$URL" --tenant bench --client-id bench \
  --no-rate-limit --spool "$WORK/spool" >"$WORK/summary.json"
# Stop the simulator (the child of GNU time), so time writes its report.
SIM_PID_DONE=$SIM_PID; SIM_PID=""; pkill -TERM -P "$SIM_PID_DONE" || true; wait "$SIM_PID_DONE" 2>/dev/null || true
python3 - "$WORK/summary.json" "$WORK/time.txt" "$WORK/sim-time.txt" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1]))["summary"]
def field(path, name):
    text = open(path).read()
    return re.search(rf"{re.escape(name)}: (.*)", text).group(1)
def secs(v):
    parts = [float(p) for p in v.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
wall = secs(field(sys.argv[2], "Elapsed (wall clock) time (h:mm:ss or m:ss)"))
g, i = s["graph"], s["ingest"]
events = g["per_collection"].get("directoryAudits", 0)
print(f"fetched {g['records']:,} records ({events:,} audit events) in {g['pages']:,} pages, {g['requests']:,} requests")
print(f"whole run (fetch + spool + ingest): {wall:.1f} s, {g['records'] / wall:,.0f} records/s")
print(f"ingest of the spool: {i['elapsed_secs']:.1f} s, {i['records'] / i['elapsed_secs']:,.0f} records/s")
print(f"fetch alone: {wall - i['elapsed_secs']:.1f} s, {g['records'] / max(wall - i['elapsed_secs'], 0.001):,.0f} records/s")
print(f"peak RSS govlake: {int(field(sys.argv[2], 'Maximum resident set size (kbytes)')) // 1024} MiB; simulator: {int(field(sys.argv[3], 'Maximum resident set size (kbytes)')) // 1024} MiB")
PY
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; profile $PROFILE; rate limiter off"
