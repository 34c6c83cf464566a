#!/usr/bin/env bash
# Make sure the RabbitMQ broker and the Redis store that inferq talks to are answering.
#
# `make up` and `make test` run this before anything else, so that both work on a fresh
# Debian/Ubuntu machine. For each service, in this order:
#
#   1. it already answers            -> reuse it (the common case: a dev box or CI machine);
#   2. the server is installed       -> start it in the background, wait until it answers;
#   3. we may install packages       -> apt-get install it, then start it as in 2;
#   4. none of the above             -> exit non-zero, saying exactly what to install.
#
# Where the services are comes from INFERQ_REDIS_URL and INFERQ_AMQP_URL (the environment
# first, then ./.env, as inferq's own settings do), defaulting to 127.0.0.1:6379 and :5672.
# Only servers on loopback are ever started or installed: a remote host is checked, never
# managed. Nothing is ever stopped or flushed, so running this again is harmless.
#
# Set INFERQ_NO_INSTALL=1 to forbid step 3.
set -euo pipefail

REDIS_START_TIMEOUT=15    # seconds; Redis is up almost at once
RABBITMQ_START_TIMEOUT=90 # seconds; an Erlang node and its plugins boot slowly

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APT_UPDATED=""
REDIS_CLI=() # redis-cli and its connection options, set by redis_answers

say() { echo "ensure_services: $*"; }
warn() { echo "ensure_services: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

# Run a command under a time limit where coreutils' `timeout` exists (macOS lacks it).
with_timeout() {
    local seconds=$1
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout "$seconds" "$@"
    else
        "$@"
    fi
}

# Find a server binary: PATH first, then the sbin folders that an ordinary user's PATH
# leaves out on Debian (/usr/sbin/rabbitmq-server) and Homebrew's.
find_bin() {
    local name=$1 dir
    if command -v "$name" 2>/dev/null; then
        return 0
    fi
    for dir in /usr/sbin /usr/local/sbin /opt/homebrew/sbin; do
        if [[ -x "$dir/$name" ]]; then
            echo "$dir/$name"
            return 0
        fi
    done
    return 1
}

# The value of NAME: the environment wins, then the last NAME=... line of ./.env.
setting() {
    local name=$1 line=""
    if [[ -n "${!name:-}" ]]; then
        echo "${!name}"
        return 0
    fi
    if [[ -f "$REPO_ROOT/.env" ]]; then
        line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${name}[[:space:]]*=" "$REPO_ROOT/.env" | tail -n 1 || true)
    fi
    line=${line#*=}
    line=${line#"${line%%[![:space:]]*}"} # trim leading blanks
    line=${line%"${line##*[![:space:]]}"} # and trailing ones
    line=${line#[\"\']}
    line=${line%[\"\']}
    echo "$line"
}

# parse_url URL DEFAULT_PORT -> sets URL_SCHEME, URL_USER, URL_PASSWORD, URL_HOST, URL_PORT.
# Handles user:password@ (percent-decoded), [IPv6] hosts, and a missing host or port.
parse_url() {
    local url=$1 default_port=$2 authority userinfo="" hostport
    URL_SCHEME=${url%%://*}
    authority=${url#*://}
    authority=${authority%%/*}
    authority=${authority%%\?*}
    hostport=${authority##*@}
    if [[ $authority == *@* ]]; then
        userinfo=${authority%@*}
    fi
    URL_USER=$(percent_decode "${userinfo%%:*}")
    URL_PASSWORD=""
    if [[ $userinfo == *:* ]]; then
        URL_PASSWORD=$(percent_decode "${userinfo#*:}")
    fi
    if [[ $hostport == \[* ]]; then
        URL_HOST=${hostport%%]*}
        URL_HOST=${URL_HOST#[}
        URL_PORT=${hostport#*]}
    else
        URL_HOST=${hostport%%:*}
        URL_PORT=${hostport#"$URL_HOST"}
    fi
    URL_PORT=${URL_PORT#:}
    URL_HOST=${URL_HOST:-127.0.0.1}
    URL_PORT=${URL_PORT:-$default_port}
    if [[ ! $URL_PORT =~ ^[0-9]+$ ]]; then
        warn "cannot read a port from '$url'"
        exit 2
    fi
}

# "p%40ss" -> "p@ss"; literal backslashes survive printf's %b.
percent_decode() {
    local s=${1//\\/\\\\}
    printf '%b' "${s//%/\\x}"
}

is_loopback() {
    case $1 in
        localhost | localhost.localdomain | 127.* | ::1 | 0:0:0:0:0:0:0:1) return 0 ;;
        *) return 1 ;;
    esac
}

# A plain TCP connect: enough to tell "something listens" from "nothing there".
port_open() {
    local host=$1 port=$2
    if command -v timeout >/dev/null 2>&1; then
        # shellcheck disable=SC2016 # $0 and $1 are the inner shell's, on purpose
        timeout 2 bash -c ': >"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
    else
        python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2).close()' \
            "$host" "$port" 2>/dev/null
    fi
}

# Before starting a server on PORT, make sure none listens there on the other loopback
# address: e.g. the URL says [::1] but the running server binds 127.0.0.1 only. Starting a
# second one could only fail, slowly.
refuse_if_listening_elsewhere() {
    local what=$1 variable=$2 address
    for address in 127.0.0.1 ::1; do
        if [[ $address != "$URL_HOST" ]] && port_open "$address" "$URL_PORT"; then
            give_up "$what" "nothing answers on $URL_HOST:$URL_PORT, but something listens on $address:$URL_PORT; point $variable there"
        fi
    done
}

# Wait up to SECONDS for a command to succeed.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}

# can_be_root, as_root
source "$(dirname "${BASH_SOURCE[0]}")/lib/root.sh"

can_install() {
    [[ -z "${INFERQ_NO_INSTALL:-}" ]] && command -v apt-get >/dev/null 2>&1 && can_be_root
}

apt_install() {
    local package=$1
    if [[ -z $APT_UPDATED ]]; then
        say "running apt-get update"
        as_root apt-get update -q || return 1
        APT_UPDATED=1
    fi
    say "installing $package with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package"
}

# The way out when we cannot provide a service ourselves: say exactly what would.
give_up() {
    local what=$1 reason=$2
    cat >&2 <<EOF
ensure_services: $what is not available: $reason

inferq needs RabbitMQ and Redis. Any one of these provides them:
  Debian/Ubuntu:  sudo apt-get install redis-server rabbitmq-server
  macOS:          brew install redis rabbitmq && brew services start redis && brew services start rabbitmq
  Docker:         docker compose up -d rabbitmq redis
then run this again. To use servers elsewhere, point inferq at them, e.g.
  export INFERQ_AMQP_URL=amqp://guest:guest@broker.example:5672/
  export INFERQ_REDIS_URL=redis://cache.example:6379/0
EOF
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------

# Does a Redis answer PING? Something else can listen on the port (and on this sandbox a
# proxy accepts any TCP connection), so the TCP connect alone proves little. Without
# redis-cli, or over TLS (which needs certificates), it is the best we can do.
# Leaves what PING printed in REDIS_REPLY.
redis_answers() {
    REDIS_REPLY=""
    REDIS_CLI=()
    port_open "$URL_HOST" "$URL_PORT" || return 1
    if [[ $URL_SCHEME != redis ]] || ! command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    # -h/-p rather than -u: redis-cli cannot parse an [IPv6] host out of a URL. The password
    # goes through the environment, where no `ps` shows it.
    REDIS_CLI=(redis-cli -h "$URL_HOST" -p "$URL_PORT")
    if [[ -n $URL_USER && $URL_USER != default ]]; then
        REDIS_CLI+=(--user "$URL_USER")
    fi
    if [[ -n $URL_PASSWORD ]]; then
        REDIS_CLI=(env "REDISCLI_AUTH=$URL_PASSWORD" "${REDIS_CLI[@]}")
    fi
    REDIS_REPLY=$(with_timeout 5 "${REDIS_CLI[@]}" ping 2>&1 || true)
    [[ $REDIS_REPLY == PONG ]]
}

# A Redis that keeps nothing on disk forgets every task record and result when it restarts:
# say so (the gateway and workers warn too). CONFIG may be disabled (managed Redis): then quiet.
warn_if_redis_forgets() {
    local aof save
    [[ ${#REDIS_CLI[@]} -gt 0 ]] || return 0
    aof=$(with_timeout 5 "${REDIS_CLI[@]}" CONFIG GET appendonly 2>/dev/null | sed -n 2p || true)
    save=$(with_timeout 5 "${REDIS_CLI[@]}" CONFIG GET save 2>/dev/null | sed -n 2p || true)
    if [[ $aof == no && -z $save ]]; then
        warn "warning: the Redis on $URL_HOST:$URL_PORT keeps nothing on disk (appendonly no, no save points); a restart of it forgets every task record and result"
    fi
}

start_redis() {
    local server=$1 dir logdir
    # Loopback only, and an append-only file (fsync every second), so a restart of this Redis
    # keeps the task records and results that clients may still poll. Its data lives with
    # the checkout (INFERQ_REDIS_DIR moves it), one folder per port.
    dir=${INFERQ_REDIS_DIR:-$REPO_ROOT/.inferq/redis-$URL_PORT}
    mkdir -p "$dir"
    logdir=$dir
    say "starting Redis on 127.0.0.1:$URL_PORT (log: $logdir/redis-server-$URL_PORT.log)"
    "$server" --daemonize yes --bind 127.0.0.1 -::1 --port "$URL_PORT" --save "" \
        --appendonly yes --appendfsync everysec \
        --dir "$dir" --logfile "$logdir/redis-server-$URL_PORT.log" ||
        give_up "Redis" "redis-server would not start (see $logdir/redis-server-$URL_PORT.log)"
    if ! wait_for "$REDIS_START_TIMEOUT" redis_answers; then
        give_up "Redis" "started it, but it did not answer on $URL_HOST:$URL_PORT within ${REDIS_START_TIMEOUT}s (see $logdir/redis-server-$URL_PORT.log)"
    fi
    say "Redis started on $URL_HOST:$URL_PORT"
}

ensure_redis() {
    local server
    REDIS_URL=$(setting INFERQ_REDIS_URL)
    REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
    case $REDIS_URL in
        redis://* | rediss://*) ;;
        *)
            say "Redis at $REDIS_URL is not a TCP address; not checking it"
            return 0
            ;;
    esac
    parse_url "$REDIS_URL" 6379

    if redis_answers; then
        say "Redis answers on $URL_HOST:$URL_PORT; reusing it"
        warn_if_redis_forgets
        return 0
    fi
    if [[ -n $REDIS_REPLY ]]; then
        # Something listens but it is not a Redis we can use: starting another cannot help.
        give_up "Redis" "$URL_HOST:$URL_PORT accepts connections but PING answered: $REDIS_REPLY"
    fi
    if ! is_loopback "$URL_HOST"; then
        give_up "Redis" "nothing answers on $URL_HOST:$URL_PORT (not a loopback host, so not managed here)"
    fi

    refuse_if_listening_elsewhere Redis INFERQ_REDIS_URL
    if server=$(find_bin redis-server); then
        start_redis "$server"
    elif can_install; then
        apt_install redis-server || give_up "Redis" "apt-get could not install redis-server"
        # On a machine with systemd, the package has started its own server already.
        if wait_for 3 redis_answers; then
            say "Redis answers on $URL_HOST:$URL_PORT after installing it"
        else
            start_redis "$(find_bin redis-server)"
        fi
    else
        give_up "Redis" "nothing answers on $URL_HOST:$URL_PORT and redis-server is not installed"
    fi
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------------------------

# Does an AMQP 0-9-1 broker answer? It replies to the protocol header with a method frame,
# whose first byte is 1; anything else on the port does not. Over TLS, only the TCP connect.
# Leaves "no" in RABBITMQ_REPLY when the port is open but the reply is wrong.
rabbitmq_answers() {
    local first_byte
    RABBITMQ_REPLY=""
    port_open "$URL_HOST" "$URL_PORT" || return 1
    if [[ $URL_SCHEME == amqps ]]; then
        return 0
    fi
    if command -v timeout >/dev/null 2>&1; then
        # shellcheck disable=SC2016 # $0 and $1 are the inner shell's, on purpose
        first_byte=$(timeout 3 bash -c \
            'exec 3<>"/dev/tcp/$0/$1" && printf "AMQP\0\0\11\1" >&3 && head -c 1 <&3 | od -An -tx1' \
            "$URL_HOST" "$URL_PORT" 2>/dev/null || true)
    else
        first_byte=$(python3 -c 'import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)
s.sendall(b"AMQP\x00\x00\x09\x01")
print(s.recv(1).hex())' "$URL_HOST" "$URL_PORT" 2>/dev/null || true)
    fi
    first_byte=${first_byte//[[:space:]]/}
    if [[ $first_byte == 01 ]]; then
        return 0
    fi
    RABBITMQ_REPLY=no
    return 1
}

# Debian's packaged scripts refuse to run as anyone but root or the rabbitmq user (and then
# switch to that user themselves); Homebrew's run as whoever installed them.
rabbitmq_needs_root() {
    [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server && $(id -u) != 0 ]] && id rabbitmq >/dev/null 2>&1
}

as_rabbitmq_admin() {
    if rabbitmq_needs_root; then
        as_root "$@"
    else
        "$@"
    fi
}

start_rabbitmq() {
    local server=$1 ctl
    if ((URL_PORT != 5672)); then
        # A second node on another port needs its own node name and config; that is
        # beyond a convenience script.
        give_up "RabbitMQ" "nothing answers on $URL_HOST:$URL_PORT, and only a broker on the default port 5672 is started here"
    fi
    if rabbitmq_needs_root && ! can_be_root; then
        give_up "RabbitMQ" "rabbitmq-server is installed but only root can start it: sudo rabbitmq-server -detached"
    fi
    say "starting RabbitMQ on 127.0.0.1:5672 (waiting up to ${RABBITMQ_START_TIMEOUT}s)"
    # -detached returns at once; a node that is already booting makes it complain, harmlessly.
    as_rabbitmq_admin "$server" -detached || warn "rabbitmq-server -detached exited with $?; waiting anyway"
    if ! wait_for "$RABBITMQ_START_TIMEOUT" rabbitmq_answers; then
        give_up "RabbitMQ" "started it, but it did not answer on $URL_HOST:$URL_PORT within ${RABBITMQ_START_TIMEOUT}s (see /var/log/rabbitmq/)"
    fi
    # The AMQP listener opens late in the boot, so the port answering nearly means ready;
    # await_startup waits for the last plugins, so the first publish does not race them.
    if ctl=$(find_bin rabbitmqctl); then
        as_rabbitmq_admin "$ctl" -q await_startup --timeout 60 >/dev/null 2>&1 ||
            warn "rabbitmqctl await_startup did not confirm the boot; the AMQP port answers, going on"
    fi
    say "RabbitMQ started on $URL_HOST:$URL_PORT"
}

ensure_rabbitmq() {
    local server amqp_url default_port
    amqp_url=$(setting INFERQ_AMQP_URL)
    amqp_url=${amqp_url:-amqp://guest:guest@127.0.0.1:5672/}
    case $amqp_url in
        amqp://*) default_port=5672 ;;
        amqps://*) default_port=5671 ;;
        *)
            warn "INFERQ_AMQP_URL must start with amqp:// or amqps://, got '$amqp_url'"
            exit 2
            ;;
    esac
    parse_url "$amqp_url" "$default_port"

    if rabbitmq_answers; then
        say "RabbitMQ answers on $URL_HOST:$URL_PORT; reusing it"
        return 0
    fi
    if [[ -n $RABBITMQ_REPLY ]]; then
        give_up "RabbitMQ" "$URL_HOST:$URL_PORT accepts connections but does not answer as an AMQP 0-9-1 broker"
    fi
    if ! is_loopback "$URL_HOST"; then
        give_up "RabbitMQ" "nothing answers on $URL_HOST:$URL_PORT (not a loopback host, so not managed here)"
    fi

    refuse_if_listening_elsewhere RabbitMQ INFERQ_AMQP_URL
    if server=$(find_bin rabbitmq-server); then
        start_rabbitmq "$server"
    elif can_install; then
        apt_install rabbitmq-server || give_up "RabbitMQ" "apt-get could not install rabbitmq-server"
        # With systemd the package starts the broker itself (and waits for it to boot).
        if wait_for 3 rabbitmq_answers; then
            say "RabbitMQ answers on $URL_HOST:$URL_PORT after installing it"
        else
            start_rabbitmq "$(find_bin rabbitmq-server)"
        fi
    else
        give_up "RabbitMQ" "nothing answers on $URL_HOST:$URL_PORT and rabbitmq-server is not installed"
    fi
}

ensure_redis
ensure_rabbitmq
