#!/usr/bin/env bash
# A fleet of demo processes against one token endpoint: how many tokens does
# the provider issue when eight processes start at once, each with its own
# token cache, without and then with a shared Redis?
#
# Starts its own redis-server on a free loopback port, one `demo --serve` per
# run as the provider, and PROCESSES (default 8) workload demos at once; prints
# one line per run:
#
#   fleet processes=8 redis=no provider_fetches=8
#   fleet processes=8 redis=yes provider_fetches=1
#
# Needs redis-server on the PATH. Builds the demo with the redis feature.
set -euo pipefail
cd "$(dirname "$0")/.."

PROCESSES=${PROCESSES:-8}
REQUESTS_PER_PROCESS=${REQUESTS_PER_PROCESS:-40}
# Every child is bounded: nothing here may hang.
CHILD_TIMEOUT_SECS=60

command -v redis-server >/dev/null || {
    echo "fleet.sh: redis-server is not on the PATH (apt-get install redis-server)" >&2
    exit 2
}
cargo build --quiet --example demo --features redis
demo="${CARGO_TARGET_DIR:-target}/debug/examples/demo"

workdir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$workdir"
}
trap cleanup EXIT

# Credentials the provider accepts, handed to every process through the
# environment or an argument; never printed.
random_text() { head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'; }
client_secret=$(random_text)
api_key=$(random_text)

# Polls `condition` every 50 ms for up to 10 s.
wait_for() {
    local condition=$1
    for _ in $(seq 200); do
        if eval "$condition"; then return 0; fi
        sleep 0.05
    done
    return 1
}

redis_answers() {
    local reply
    { exec 5<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&5
    read -r -t 1 reply <&5 || true
    exec 5<&-
    [[ $reply == +PONG* ]]
}

# A free port can be taken between the probe and the bind: try a few.
redis_port=
for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        >"$workdir/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    if wait_for "redis_answers $port || ! kill -0 $redis_pid 2>/dev/null" &&
        kill -0 "$redis_pid" 2>/dev/null; then
        redis_port=$port
        break
    fi
done
[[ -n $redis_port ]] || {
    echo "fleet.sh: redis-server did not start" >&2
    exit 1
}

# One run: a fresh provider, PROCESSES workload demos at once, the count of
# tokens the provider issued.
run_fleet() {
    local use_redis=$1 serve_pid token_url api_url client_id line i failed=0
    local out="$workdir/serve.out"
    CLIENT_SECRET=$client_secret API_KEY=$api_key \
        timeout "$CHILD_TIMEOUT_SECS" "$demo" --serve "$CHILD_TIMEOUT_SECS" \
        >"$out" 2>"$workdir/serve.err" &
    serve_pid=$!
    pids+=("$serve_pid")
    wait_for "[[ -s $out ]]" || {
        echo "fleet.sh: the provider did not start" >&2
        exit 1
    }
    line=$(head -n 1 "$out")
    [[ $line =~ \"token_url\":\"([^\"]+)\" ]] && token_url=${BASH_REMATCH[1]}
    [[ $line =~ \"api_url\":\"([^\"]+)\" ]] && api_url=${BASH_REMATCH[1]}
    [[ $line =~ \"client_id\":\"([^\"]+)\" ]] && client_id=${BASH_REMATCH[1]}

    local redis_args=()
    [[ $use_redis == yes ]] && redis_args=(--redis "redis://127.0.0.1:$redis_port/")
    local workers=()
    for i in $(seq "$PROCESSES"); do
        CLIENT_SECRET=$client_secret timeout "$CHILD_TIMEOUT_SECS" "$demo" \
            --token-url "$token_url" --client-id "$client_id" --auth post \
            --token-header "x-api-key: $api_key" --url "$api_url" \
            --requests "$REQUESTS_PER_PROCESS" --concurrency 4 "${redis_args[@]}" \
            >"$workdir/worker.$i.out" 2>"$workdir/worker.$i.err" &
        workers+=($!)
        pids+=($!)
    done
    for i in "${!workers[@]}"; do
        if ! wait "${workers[$i]}"; then
            failed=1
            echo "fleet.sh: workload process $((i + 1)) failed:" >&2
            cat "$workdir/worker.$((i + 1)).err" >&2
        fi
    done

    kill -TERM "$serve_pid"
    wait "$serve_pid" || true
    line=$(tail -n 1 "$out")
    [[ $line =~ \"tokens_issued\":([0-9]+) ]] || {
        echo "fleet.sh: the provider gave no report" >&2
        exit 1
    }
    echo "fleet processes=$PROCESSES redis=$use_redis provider_fetches=${BASH_REMATCH[1]}"
    return "$failed"
}

run_fleet no
run_fleet yes
