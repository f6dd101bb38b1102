#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for a fixed time budget, one
# after the other, and prints a table of executions and crashes. Not part of .ci/run:
# run it on demand and copy the table into docs/security.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        default 60
#
# Environment:
#   FUZZ_TARGETS    space-separated subset (default: every target in fuzz/Cargo.toml)
#   FUZZ_SANITIZER  address | none (default none: src/ has no unsafe code, and without
#                   ASan each target runs about twice as many inputs in its budget)
#   FUZZ_RSS_MB     libFuzzer's -rss_limit_mb (default 2048)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The working
# corpus lives in fuzz/corpus/<target> (seeded on every run from fuzz/seeds/ and
# tests/fixtures/, the OTLP targets from tests/fixtures/otlp/), crashes in fuzz/artifacts/<target>/, logs in fuzz/logs/. Exits 1 when
# any target crashed; reproduce one with
#   cargo +nightly fuzz run <target> -s none -a fuzz/artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 64 ;; esac
san=${FUZZ_SANITIZER:-none}
rss=${FUZZ_RSS_MB:-2048}

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz for the nightly toolchain is missing: cargo install cargo-fuzz" >&2
    exit 69
fi

all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^poolwatch-fuzz$')
targets=${FUZZ_TARGETS:-$all_targets}

# Seed corpora: the committed seeds plus the fixtures the unit tests use.
seed() {
    local t=$1 dir=fuzz/corpus/$1
    mkdir -p "$dir"
    [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$dir"/ 2>/dev/null || true
    case $t in
        pushgateway_text)
            for f in tests/fixtures/push/*.txt; do cp -n "$f" "$dir/fixture_$(basename "$f")"; done ;;
        pushgateway_protobuf)
            for f in tests/fixtures/push/*.pb; do cp -n "$f" "$dir/fixture_$(basename "$f")"; done ;;
        pushgateway_mapping)
            # selector byte (even: text, odd: protobuf), a path, NUL, the body
            for f in tests/fixtures/push/*.txt tests/fixtures/push/*.pb; do
                local sel='\x00'
                case $f in *.pb) sel='\x01' ;; esac
                { printf "$sel"; printf '/metrics/job/fuzz/instance/pod-1/pool/main\0'; cat "$f"; } \
                    >"$dir/fixture_$(basename "$f")"
            done ;;
        otlp_protobuf)
            for f in tests/fixtures/otlp/*.pb; do cp -n "$f" "$dir/fixture_$(basename "$f")"; done ;;
        otlp_json)
            for f in tests/fixtures/otlp/*.json; do cp -n "$f" "$dir/fixture_$(basename "$f")"; done ;;
        proc_net_tcp)
            # files directly in proc_net/ and one level down (ipv4_only/tcp)
            find tests/fixtures/proc_net -type f ! -name '*.md' | while read -r f; do
                cp -n "$f" "$dir/fixture_$(echo "${f#tests/fixtures/proc_net/}" | tr / _)"
            done ;;
    esac
}

echo "== building fuzz targets (nightly, sanitizer $san, debug assertions on)"
(cd fuzz && cargo +nightly fuzz build -O -a -s "$san" 2>&1 | tail -n 3)

mkdir -p fuzz/logs
rows=()
total_crashes=0
for t in $targets; do
    seed "$t"
    mkdir -p "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log=fuzz/logs/$t.log
    echo "== $t: ${secs}s"
    set +e
    (cd fuzz && cargo +nightly fuzz run "$t" -O -a -s "$san" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb="$rss" -timeout=10 \
        -artifact_prefix="$root/fuzz/artifacts/$t/") >"$log" 2>&1
    rc=$?
    set -e
    stat() { sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$log" | tail -n 1; }
    execs=$(stat number_of_executed_units)
    eps=$(stat average_exec_per_sec)
    peak=$(stat peak_rss_mb)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="? (exit $rc, see $log)"; fi
    case $crashes in 0) ;; *) total_crashes=$((total_crashes + 1)) ;; esac
    newest=$(ls -t "fuzz/artifacts/$t" 2>/dev/null | head -n 1)
    [ "$crashes" = 0 ] && newest=""
    rows+=("| \`$t\` | $secs | ${execs:-?} | ${eps:-?} | $corpus | ${peak:-?} | $crashes | ${newest:+fuzz/artifacts/$t/$newest} |")
    echo "   executions ${execs:-?}, ${eps:-?}/s, crashes $crashes"
done

echo
echo "fuzz run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, sanitizer $san, $(cargo +nightly --version)"
echo "| target | seconds | executions | exec/s | corpus | peak RSS MB | crashes | artifact |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
[ "$total_crashes" -eq 0 ]
