#!/usr/bin/env bash
# The one command that runs every Quip test on a fresh machine of this kind.
# It installs what the tests need when it is missing (as root, with apt-get), then
# runs the whole suite: unit, property and integration tests against real brokers on
# 127.0.0.1. Extra arguments go to `cargo test` (e.g. a test name filter).
#
#   QUIP_CRASH_KILLS=25 scripts/test.sh crash   # the long crash-recovery run
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: this machine kind ships Rust via rustup; nothing to install it from here" >&2
  exit 1
fi

cargo test --workspace "$@"
