#!/usr/bin/env bash
# Ingest benchmark: generates a tenant (default 77,000 users ≈ 1M audit events), ingests it
# into a fresh local lake, and prints throughput (from govlake's own summary) and peak RSS
# (from GNU time). Usage: bench/ingest.sh [USERS]   (PROFILE=dev to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${1:-77000}"
PROFILE="${PROFILE:-release}"
cargo build --locked --profile "$PROFILE" --bin govlake
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN="target/$dir/govlake"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TENANT="${TENANT:-}"   # reuse a generated tenant folder instead of generating one
if [ -z "$TENANT" ]; then
  TENANT="$WORK/tenant"
  "$BIN" generate --users "$USERS" --seed 1 --out "$TENANT"
fi
du -sh "$TENANT"
/usr/bin/time -v -o "$WORK/time.txt" "$BIN" --lake "$WORK/lake" --no-progress ingest --from "$TENANT" | tail -n 4
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
echo "peak RSS: $((rss_kb / 1024)) MiB (goal: under 1024 MiB)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; profile $PROFILE"
