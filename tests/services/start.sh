#!/usr/bin/env bash
# Installs and starts the storage emulators the backend tests run against, on 127.0.0.1
# only: Azurite (npm `azurite`, Azure Blob) and a moto server (PyPI `moto[server]`, S3).
# Also makes the Python used by the interoperability test (PyPI `deltalake` + `pyarrow`, a
# second Delta reader). Source it: it exports GOVLAKE_TEST_AZURITE, GOVLAKE_TEST_S3 and
# GOVLAKE_TEST_PYTHON, and `stop_services` ends both servers (tests/run.sh traps it).
#
# Installs go under target/test-services (reused by later runs); versions are pinned.
AZURITE_VERSION=3.35.0
MOTO_VERSION=5.2.5
DELTALAKE_VERSION=1.6.6
PYARROW_VERSION=26.0.1

SERVICES_DIR="${SERVICES_DIR:-$PWD/target/test-services}"
mkdir -p "$SERVICES_DIR"

if [ ! -x "$SERVICES_DIR/npm/node_modules/.bin/azurite-blob" ]; then
  echo "tests/services: installing azurite@$AZURITE_VERSION (npm)" >&2
  npm install --silent --no-audit --no-fund --prefix "$SERVICES_DIR/npm" "azurite@$AZURITE_VERSION" >&2
fi
if [ ! -x "$SERVICES_DIR/venv/bin/moto_server" ] || [ ! -f "$SERVICES_DIR/venv/.govlake-$MOTO_VERSION-$DELTALAKE_VERSION" ]; then
  echo "tests/services: installing moto[server]==$MOTO_VERSION, deltalake==$DELTALAKE_VERSION, pyarrow==$PYARROW_VERSION (PyPI)" >&2
  python3 -m venv "$SERVICES_DIR/venv"
  "$SERVICES_DIR/venv/bin/pip" install -q --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "deltalake==$DELTALAKE_VERSION" "pyarrow==$PYARROW_VERSION" \
    azure-storage-blob >&2
  touch "$SERVICES_DIR/venv/.govlake-$MOTO_VERSION-$DELTALAKE_VERSION"
fi

free_port() {
  "$SERVICES_DIR/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # URL NAME LOG
  for _ in $(seq 1 100); do
    if "$SERVICES_DIR/venv/bin/python" - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
PY
    sleep 0.2
  done
  echo "tests/services: $2 did not start; its log:" >&2
  cat "$3" >&2
  return 1
}

AZURITE_PORT=$(free_port)
# Each start gets its own data folder, so two test runs side by side do not share state.
AZURITE_DATA=$(mktemp -d "$SERVICES_DIR/azurite-data.XXXXXX")
"$SERVICES_DIR/npm/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
  --location "$AZURITE_DATA" --skipApiVersionCheck --loose --silent \
  >"$SERVICES_DIR/azurite.log" 2>&1 &
AZURITE_PID=$!
MOTO_PORT=$(free_port)
"$SERVICES_DIR/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$SERVICES_DIR/moto.log" 2>&1 &
MOTO_PID=$!

stop_services() {
  kill "$AZURITE_PID" "$MOTO_PID" 2>/dev/null || true
  wait "$AZURITE_PID" "$MOTO_PID" 2>/dev/null || true
  rm -rf "$AZURITE_DATA"
}

wait_for "http://127.0.0.1:$AZURITE_PORT/devstoreaccount1?comp=list" Azurite "$SERVICES_DIR/azurite.log"
wait_for "http://127.0.0.1:$MOTO_PORT/" moto "$SERVICES_DIR/moto.log"
export GOVLAKE_TEST_AZURITE="http://127.0.0.1:$AZURITE_PORT"
# object_store's emulator mode (azure_storage_use_emulator) finds Azurite here; it also
# lists without Azure's `startFrom`, which Azurite ignores.
export AZURITE_BLOB_STORAGE_URL="$GOVLAKE_TEST_AZURITE"
export GOVLAKE_TEST_S3="http://127.0.0.1:$MOTO_PORT"
export GOVLAKE_TEST_PYTHON="$SERVICES_DIR/venv/bin/python"
echo "tests/services: Azurite on $GOVLAKE_TEST_AZURITE, moto S3 on $GOVLAKE_TEST_S3" >&2
