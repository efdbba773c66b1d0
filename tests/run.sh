#!/usr/bin/env bash
# The test command: builds govlake and runs every test (unit tests and the one integration
# binary, tests/it). Installs what the tests need and starts it on 127.0.0.1 only:
# Debian's chromium (the reports are opened and printed to PDF headless), Azurite (npm) and
# a moto S3 server (PyPI) for the backend conformance suite, and PyPI deltalake + pyarrow
# for the interoperability test (tests/services/start.sh). Stops the servers on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if ! command -v chromium >/dev/null 2>&1; then
  echo "tests/run.sh: installing Debian's chromium for the report rendering test" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# shellcheck source=tests/services/start.sh
source tests/services/start.sh
trap stop_services EXIT
# With the emulators up, a backend test that cannot reach one fails instead of skipping.
export GOVLAKE_TEST_SERVICES=required
# Tests that need these services are #[ignore]d (with the reason) for a bare `cargo test`;
# here they run too.
args=("$@")
if printf '%s\n' "${args[@]}" | grep -qx -- '--'; then
  args+=(--include-ignored)
else
  args+=(-- --include-ignored)
fi
cargo test --locked "${args[@]}"
