#!/usr/bin/env bash
# Evidence-pack benchmark: generates a tenant (default 375,000 users ≈ 1.3M requests and 5M
# audit events, with 2,000 access packages), ingests it, and times `govlake pack` for one
# quarter with peak RSS (GNU time). The tenant and lake are kept in WORK and reused.
#
# Usage: bench/pack.sh [USERS] [PACKAGES]
#   PROFILE=release   cargo profile (dev to skip the release build)
#   WORK=target/bench/pack-USERS-PACKAGES
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${1:-375000}"
PACKAGES="${2:-2000}"
PROFILE="${PROFILE:-release}"
WORK="${WORK:-target/bench/pack-$USERS-$PACKAGES}"
cargo build --locked --profile "$PROFILE" --bin govlake
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN="$PWD/target/$dir/govlake"
mkdir -p "$WORK"
if [ ! -f "$WORK/tenant/.complete" ]; then
  rm -rf "$WORK/tenant"
  "$BIN" generate --users "$USERS" --packages "$PACKAGES" --seed 1 --out "$WORK/tenant"
  touch "$WORK/tenant/.complete"
fi
if [ ! -f "$WORK/lake/.complete" ]; then
  rm -rf "$WORK/lake"
  /usr/bin/time -f "ingest: %e s, peak RSS %M KB" "$BIN" --lake "$WORK/lake" --no-progress -q ingest --from "$WORK/tenant"
  touch "$WORK/lake/.complete"
fi
"$BIN" --lake "$WORK/lake" -q sql -o csv -c "select
  (select count(*) from assignment_requests) as requests,
  (select count(*) from audit_events) as audit_events,
  (select count(*) from access_packages) as packages"
rm -rf "$WORK/pack" "$WORK/pack.tar"
/usr/bin/time -f "pack: %e s, peak RSS %M KB" "$BIN" --lake "$WORK/lake" --no-progress pack --period 2026Q3 --unsigned --out "$WORK/pack"
du -sh "$WORK/pack" "$WORK/pack.tar"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; profile $PROFILE"
