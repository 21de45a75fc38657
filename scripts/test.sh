#!/usr/bin/env bash
# The one command that runs every Quip test on a fresh machine of this kind.
# It installs what the tests need when it is missing (as root, with apt-get and npm),
# then runs the whole suite: unit, property and integration tests against real brokers
# on 127.0.0.1 (cargo test; the cluster tests also start real redis-servers), then the
# web client's end-to-end tests in real headless Chromium. Extra arguments go to
# `cargo test` (e.g. a test name filter).
#
#   QUIP_CRASH_KILLS=25 scripts/test.sh --test it crash::   # the long crash-recovery run
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# Cluster tests start real Redis servers on 127.0.0.1.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: this machine kind ships Rust via rustup; nothing to install it from here" >&2
  exit 1
fi
if [ ! -d bridge-ws/e2e/node_modules/playwright-core ]; then
  (cd bridge-ws/e2e && npm ci --no-audit --no-fund)
fi

cargo test --workspace "$@"

# The browser tests drive target/debug/quip-broker, which `cargo test` just built for
# the integration tests (a separate `cargo build` would rebuild every dependency in
# another profile).
if [ $# -eq 0 ]; then
  (cd bridge-ws/e2e && npm test)
fi
