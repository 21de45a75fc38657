#!/usr/bin/env bash
# Property-based fuzzing of the REST API with schemathesis, against a real debug broker
# on 127.0.0.1. It:
#   1. installs schemathesis into a venv under target/api-fuzz/ when missing
#      (python3 -m venv; apt-get install python3-venv if the venv module is missing);
#   2. builds target/debug/quip-broker, starts it with a temporary data dir, rate
#      limits off, and registers an admin user (QUIP_ADMIN_USERNAMES) to get a token;
#   3. runs `schemathesis run http://127.0.0.1:PORT/api/openapi.json` with that token
#      against every documented operation, checking for server errors (5xx) and that
#      responses match the document (status codes, content types, response schemas),
#      with a bounded number of examples per operation;
#   4. stops the broker and exits non-zero if any check failed.
#
# Operations that end the caller's own sessions (logout) run in a pass of their own,
# first and as a second user, so the admin's token stays valid for everything else.
#
#   scripts/api-fuzz.sh                      # 50 examples per operation
#   API_FUZZ_EXAMPLES=200 scripts/api-fuzz.sh
#   scripts/api-fuzz.sh --seed 42            # extra arguments go to `schemathesis run`
#
# Reports (JUnit XML) land in target/api-fuzz/reports/; the broker's log in
# target/api-fuzz/broker.log.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES="${API_FUZZ_EXAMPLES:-50}"
CHECKS="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
WORK="$PWD/target/api-fuzz"
VENV="$WORK/venv"
mkdir -p "$WORK"

# 1. schemathesis in a venv.
if [ ! -x "$VENV/bin/schemathesis" ]; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q schemathesis
fi
"$VENV/bin/schemathesis" --version

# 2. A debug broker on 127.0.0.1.
cargo build -p quip-broker --bin quip-broker
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
DATA="$(mktemp -d "${TMPDIR:-/tmp}/quip-api-fuzz.XXXXXX")"
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

ADMIN_USER="apifuzz"
ADMIN_PASSWORD="apifuzz-password-1"
QUIP_JWT_SECRET="api-fuzz-secret-api-fuzz-secret-0123456789" \
  QUIP_LOG="${QUIP_LOG:-warn,quip::audit=info}" \
  QUIP_DURABILITY=os \
  QUIP_ADMIN_USERNAMES="$ADMIN_USER" \
  QUIP_RATE_MESSAGES_PER_SEC=0 \
  QUIP_RATE_REQUESTS_PER_SEC=0 \
  QUIP_RATE_LOGINS_PER_IP_PER_MIN=0 \
  QUIP_MAX_CONNECTIONS_PER_IP=0 \
  QUIP_LOGIN_FAILURES_BEFORE_DELAY=1000000 \
  target/debug/quip-broker --data-dir "$DATA" --quic-addr 127.0.0.1:0 \
  --http-addr "127.0.0.1:$PORT" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!

for _ in $(seq 1 100); do
  if curl -fsS "$BASE/health" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    echo "the broker exited; its log:" >&2
    cat "$WORK/broker.log" >&2
    exit 1
  fi
  sleep 0.1
done
curl -fsS "$BASE/health" >/dev/null

# Registers a user and prints an access token for it.
token_for() {
  curl -fsS -X POST "$BASE/api/register" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$ADMIN_PASSWORD\"}" >/dev/null
  curl -fsS -X POST "$BASE/api/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$ADMIN_PASSWORD\",\"device_id\":\"api-fuzz\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["token"])'
}
ADMIN_TOKEN="$(token_for "$ADMIN_USER")"
LOGOUT_TOKEN="$(token_for apifuzz-logout)"

# 3. schemathesis: logout as its own user, then everything else as the admin.
status=0
run() {
  local name="$1" token="$2"
  shift 2
  echo
  echo "== schemathesis: $name (at most $EXAMPLES examples per operation)"
  # From $WORK, so schemathesis' caches (.schemathesis/, .hypothesis/) land there.
  (cd "$WORK" && "$VENV/bin/schemathesis" run "$BASE/api/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks "$CHECKS" \
    --max-examples "$EXAMPLES" \
    --report junit,ndjson --report-dir "$WORK/reports/$name" \
    --report-ndjson-path "$WORK/reports/$name/events.ndjson" \
    --no-color --workers 1 --generation-database "$WORK/hypothesis" \
    "$@") || status=1
  check_counts "$WORK/reports/$name/events.ndjson"
}

# Prints how many test cases each check ran on and how many of them failed, from
# schemathesis' event log.
check_counts() {
  python3 - "$1" <<'PY'
import collections, json, sys

counts = collections.defaultdict(collections.Counter)

def visit(node):
    if isinstance(node, dict):
        checks = node.get("checks")
        if isinstance(checks, dict):
            for results in checks.values():
                for check in results if isinstance(results, list) else []:
                    if isinstance(check, dict) and "name" in check and "status" in check:
                        counts[check["name"]][str(check["status"]).lower()] += 1
        for value in node.values():
            visit(value)
    elif isinstance(node, list):
        for value in node:
            visit(value)

with open(sys.argv[1]) as events:
    for line in events:
        visit(json.loads(line))
print(f"{'check':<32} {'run':>7} {'passed':>7} {'failed':>7}")
for name in sorted(counts):
    c = counts[name]
    total = sum(c.values())
    print(f"{name:<32} {total:>7} {c['success']:>7} {total - c['success'] - c['skip']:>7}")
PY
}
run logout "$LOGOUT_TOKEN" --include-path-regex 'logout' "${@}"
run main "$ADMIN_TOKEN" --exclude-path-regex 'logout' "${@}"

# 4. Stop the broker (the trap does it) and report.
if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  echo "the broker died during the run; its log: $WORK/broker.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "api-fuzz: FAILED (see above; broker log: $WORK/broker.log)" >&2
else
  echo "api-fuzz: all checks passed"
fi
exit "$status"
