# shellcheck shell=bash
# Sourced by the scripts that need the test servers for a while (scripts/bench-check,
# scripts/symbol-order): uses the servers recorded in .test-servers/env when they answer,
# otherwise starts them, and stops what it started when the script exits, with $WORK removed.
#
#   ROOT=... WORK=$(mktemp -d ...); . "$ROOT/scripts/lib/bench-servers.sh"; use_test_servers

BENCH_SERVERS_STARTED=

bench_servers_cleanup() {
    if [ -n "$BENCH_SERVERS_STARTED" ]; then
        "$ROOT/scripts/test-servers" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap bench_servers_cleanup EXIT

# Loads .test-servers/env; true when the gateway answers.
bench_servers_up() {
    [ -f "$ROOT/.test-servers/env" ] || return 1
    # shellcheck disable=SC1091
    . "$ROOT/.test-servers/env"
    curl -fsS -m 2 "$CREDCHAIN_TEST_GATEWAY_URL/health" >/dev/null 2>&1
}

# Makes sure the servers run and their CREDCHAIN_TEST_* variables are set.
use_test_servers() {
    bench_servers_up && return 0
    echo "==> starting the test servers"
    "$ROOT/scripts/test-servers" start >"$WORK/servers.log" 2>&1 || { cat "$WORK/servers.log"; exit 1; }
    BENCH_SERVERS_STARTED=1
    bench_servers_up || { echo "the test servers did not come up" >&2; exit 1; }
}
