#!/usr/bin/env bash
# Pictures of the dashboards with data from the leak demo, for docs/dashboards.md.
# Runs the dashboards test (PostgreSQL, poolwatch central and sidecar, a real Prometheus,
# a leaking client, a pool that runs dry and a steady one) and asks it to keep everything
# running; renders every panel's queries from that Prometheus into a page per dashboard
# (render.js, Grafana's 24-column grid), and screenshots each page with headless Chromium
# into docs/img/dashboards/<uid>.png.
# Needs what the test needs (PostgreSQL server binaries, /usr/bin/prometheus), node and
# chromium (Debian: apt-get install chromium). PICTURES_EXTRA_SECONDS (default 12) is how
# much longer the demo runs after the test's checks before the pictures are taken.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$repo/docs/img/dashboards"
work="$(mktemp -d)"
hold="$work/hold"
test_pid=""
cleanup() {
    rm -f "$hold"
    if [ -n "$test_pid" ]; then wait "$test_pid" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

command -v chromium >/dev/null || { echo "chromium not found (apt-get install chromium)" >&2; exit 1; }
mkdir -p "$out"
(cd "$repo" && POOLWATCH_DASHBOARD_HOLD="$hold" cargo test --quiet --test dashboards \
    every_dashboard_query_returns_data_from_a_real_prometheus -- --nocapture >"$work/test.log" 2>&1) &
test_pid=$!
for _ in $(seq 1 600); do
    [ -s "$hold" ] && break
    if ! kill -0 "$test_pid" 2>/dev/null; then
        cat "$work/test.log" >&2
        echo "the test ended before the demo was ready" >&2
        exit 1
    fi
    sleep 1
done
[ -s "$hold" ] || { echo "timed out waiting for the demo" >&2; exit 1; }
prom="$(sed -n 1p "$hold")"
start="$(sed -n 2p "$hold")"
echo "demo running; Prometheus at $prom; waiting ${PICTURES_EXTRA_SECONDS:-12} s for more history"
sleep "${PICTURES_EXTRA_SECONDS:-12}"

node "$here/render.js" "$prom" "$start" "$work/pages" "$repo"/dashboards/*.json | tee "$work/pages.txt"
while read -r page size _; do
    uid="$(basename "$page" .html)"
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$work/chromium" --window-size="${size/x/,}" \
        --screenshot="$out/$uid.png" "file://$page" >/dev/null 2>&1
    echo "wrote docs/img/dashboards/$uid.png ($size)"
done <"$work/pages.txt"
rm -f "$hold"
wait "$test_pid"
test_pid=""
grep -E "^prometheus:|test result" "$work/test.log" || true
