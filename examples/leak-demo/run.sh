#!/usr/bin/env bash
# The leak demo: a throwaway PostgreSQL, poolwatch, and a worker that leaks one
# connection every LEAK_EVERY seconds (rows never closed) while pushing its pool stats.
# It prints poolwatch's verdict as it changes, the time from the first leaked connection
# to poolwatch_app_leak_suspected 1, and then the stuck connections with their query.
#
#   bash examples/leak-demo/run.sh              # the leak
#   MODE=burst bash examples/leak-demo/run.sh   # a burst that is released: no leak
#
# Needs: cargo, Go with lib/pq (Debian: golang-go golang-github-lib-pq-dev), and the
# PostgreSQL server binaries (Debian: postgresql). Stops everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${MODE:-leak}
LEAK_EVERY=${LEAK_EVERY:-2}
LIMIT=${LIMIT:-600}
work=$(mktemp -d /tmp/poolwatch-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "${pgctl:-}" ] && $as_pg "$pgctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pgctl="$bindir/pg_ctl"
as_pg=""
[ "$(id -u)" = 0 ] && as_pg="runuser -u postgres --"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
listen_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

echo "== building poolwatch and the demo worker"
cargo build --release --quiet
(cd examples/leak-demo && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOCACHE="$work/gocache" \
    go build -o "$work/leak-demo" .)

echo "== throwaway PostgreSQL on 127.0.0.1:$port (max_connections=100)"
mkdir -p "$work/pg"
[ -n "$as_pg" ] && chown postgres "$work/pg"
$as_pg "$bindir/initdb" -D "$work/pg" -U postgres -A trust --no-sync --no-instructions >/dev/null
$as_pg "$pgctl" -D "$work/pg" -l "$work/pg/log" -w -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off" start >/dev/null

echo "== poolwatch on 127.0.0.1:$listen_port, shipped defaults"
./target/release/poolwatch --listen "127.0.0.1:$listen_port" \
    --database-url "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable" --log-level warn &
pids+=($!)
sleep 1

echo "== worker: MODE=$MODE, one leaked connection every ${LEAK_EVERY}s"
start=$(date +%s)
POOLWATCH_URL="http://127.0.0.1:$listen_port" DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable" \
    MODE=$MODE LEAK_EVERY=$LEAK_EVERY "$work/leak-demo" 2>/dev/null &
pids+=($!)

metric() { awk -v s="$1" 'index($0, s) == 1 { print $2; exit }' <<<"$metrics"; }
app="{database=\"127.0.0.1:$port\",app=\"orders-worker\"}"
last=""
while :; do
    sleep 2
    now=$(( $(date +%s) - start ))
    metrics=$(curl -s "http://127.0.0.1:$listen_port/metrics" || true)
    server=$(metric "poolwatch_app_server_connections$app")
    inuse=$(metric "poolwatch_pool_in_use_connections{database=\"127.0.0.1:$port\",app=\"orders-worker\",pool=\"primary\"}")
    growth=$(metric "poolwatch_app_connection_growth_per_second$app")
    leak=$(metric "poolwatch_app_leak_suspected$app")
    line="t=${now}s pool_in_use=${inuse:-?} server=${server:-?} growth/s=${growth:-?} leak_suspected=${leak:-?}"
    [ "$line" != "$last" ] && echo "$line"
    last=$line
    if [ "${leak:-0}" = 1 ]; then
        echo "== leak_suspected 1 after ${now}s (first connection leaked at ~${LEAK_EVERY}s)"
        grep -E '^poolwatch_app_[a-z_]+\{database="[^"]*",app="orders-worker"' <<<"$metrics" || true
        echo "== GET /api/v1/connections"
        conns=$(curl -s "http://127.0.0.1:$listen_port/api/v1/connections" | python3 -m json.tool)
        head -40 <<<"$conns"
        exit 0
    fi
    if [ "$now" -ge "$LIMIT" ]; then
        echo "== no leak suspected within ${LIMIT}s"
        [ "$MODE" = burst ] && exit 0 || exit 1
    fi
done
