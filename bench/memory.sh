#!/usr/bin/env bash
# Memory ceilings: peak RSS of ingest and of `govlake sql` at a fixed size, against the
# ceilings govlake promises (README, "Bounded memory"). A benchmark, not a test: run it by
# hand or in a nightly job; it exits 1 when a peak is over its ceiling.
#
#   ingest      a generated tenant of USERS users (about 13 audit events each) into a fresh lake
#   ingest-big  one page holding BIG_RECORDS records of ~20 KB each (a 1 GB+ page at the
#               defaults): the reader must stream it, not hold it
#   sql-table   200 million generated rows, default table output (stops at --limit 1000)
#   sql-csv     the same to CSV (streams every row to /dev/null)
#   sql-sort    a sort of 50 million rows under --memory-limit 256M (spills, or fails with a
#               clear message: either way RSS stays near the limit)
#
# Usage: bench/memory.sh
#   USERS=77000          tenant size (~1M audit events)
#   BIG_RECORDS=50000    records in the big page
#   PROFILE=release      cargo profile (dev to skip the release build)
#   GOVLAKE_BIN=PATH     measure this binary, no build
#   CEIL_INGEST_MIB=2048 CEIL_BIG_MIB=512 CEIL_SQL_MIB=512 CEIL_SORT_MIB=1024
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${USERS:-77000}"
BIG_RECORDS="${BIG_RECORDS:-50000}"
PROFILE="${PROFILE:-release}"
CEIL_INGEST_MIB="${CEIL_INGEST_MIB:-2048}"
CEIL_BIG_MIB="${CEIL_BIG_MIB:-512}"
CEIL_SQL_MIB="${CEIL_SQL_MIB:-512}"
CEIL_SORT_MIB="${CEIL_SORT_MIB:-1024}"
WORK="${WORK:-target/bench/memory}"

if [ -z "${GOVLAKE_BIN:-}" ]; then
  cargo build --locked --profile "$PROFILE" --bin govlake
  dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
  BIN="$PWD/target/$dir/govlake"
else
  BIN="$GOVLAKE_BIN"   # an already built binary (e.g. target/debug/govlake from the tests)
fi
rm -rf "$WORK"
mkdir -p "$WORK"
export GOVLAKE_NO_PROGRESS=1

failed=0
rows=()
measure() { # NAME CEILING_MIB COMMAND...
  local name=$1 ceiling=$2
  shift 2
  local code=0
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || code=$?
  # GNU time puts "Command exited with non-zero status N" first when the command fails.
  read -r secs kib < <(tail -1 "$WORK/time.txt")
  local mib=$(( kib / 1024 )) verdict=ok
  if [ "$mib" -gt "$ceiling" ]; then verdict=OVER; failed=1; fi
  rows+=("| $name | $secs | $mib | $ceiling | $code | $verdict |")
}

"$BIN" generate --users "$USERS" --seed 7 --out "$WORK/tenant" >/dev/null
measure ingest "$CEIL_INGEST_MIB" "$BIN" --lake "$WORK/lake" ingest --from "$WORK/tenant"

python3 - "$WORK/big/auditLogs" "$BIG_RECORDS" <<'PY'
import json, os, sys
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "directoryAudits-0001.json"), "w") as f:
    f.write('{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/directoryAudits","value":[')
    for i in range(n):
        rec = {"id": f"big-{i}", "activityDateTime": "2026-09-01T00:00:00Z", "activityDisplayName": "Add member to group",
               "category": "GroupManagement", "result": "success", "loggedByService": "Core Directory",
               "initiatedBy": {"user": {"id": "u", "userPrincipalName": "a@b"}},
               "targetResources": [{"id": "t", "type": "Group", "displayName": "x" * 20000}]}
        f.write(("," if i else "") + json.dumps(rec))
    f.write("]}")
PY
measure ingest-big "$CEIL_BIG_MIB" "$BIN" --lake "$WORK/lake-big" ingest --from "$WORK/big"

measure sql-table "$CEIL_SQL_MIB" "$BIN" --lake "$WORK/lake" sql -c "select value from generate_series(1,200000000)"
measure sql-csv "$CEIL_SQL_MIB" "$BIN" --lake "$WORK/lake" sql -o csv --out /dev/null -c "select value from generate_series(1,200000000)"
measure sql-sort "$CEIL_SORT_MIB" "$BIN" --lake "$WORK/lake" sql --memory-limit 256M -o csv --out /dev/null \
  -c "select value, md5(cast(value as varchar)) h from generate_series(1,50000000) order by h"

echo "Memory ceilings, $(date -u +%F), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), profile $PROFILE, USERS=$USERS, BIG_RECORDS=$BIG_RECORDS"
echo
echo "| stage | s | peak MiB | ceiling MiB | exit | verdict |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "(exit: the command's own exit code; sql-sort may exit 2 with a memory-limit message, which is a pass if under the ceiling: $(head -c 300 "$WORK/sql-sort.err" | tr '\n' ' '))"
exit "$failed"
