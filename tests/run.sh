#!/usr/bin/env bash
# The test command: builds govlake and runs every test (unit tests and the one integration
# binary, tests/it). Needs only the Rust toolchain; later suites that need services (Azurite,
# moto) install and start them here.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo test --locked "$@"
