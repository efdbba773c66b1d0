#!/usr/bin/env bash
# The test command: builds govlake and runs every test (unit tests and the one integration
# binary, tests/it). Installs what the tests need: Debian's chromium (the reports are opened
# and printed to PDF headless). Later suites that need services (Azurite, moto) install and
# start them here.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if ! command -v chromium >/dev/null 2>&1; then
  echo "tests/run.sh: installing Debian's chromium for the report rendering test" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
cargo test --locked "$@"
