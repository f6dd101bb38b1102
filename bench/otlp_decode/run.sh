#!/usr/bin/env bash
# Decodes one large OTLP export with poolwatch's decoder and with the opentelemetry-proto
# crate, side by side: time per decode and peak RSS (docs/benchmarks.md). Needs the
# Python opentelemetry-proto package (.ci/run installs it) and crates.io for the prost
# side. Not part of .ci/run.
#
#   bench/otlp_decode/run.sh [DECODES]     default 50
set -euo pipefail
cd "$(dirname "$0")"
n=${1:-50}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 make_body.py ../../tests/fixtures/otlp/hikaricp_java_agent.json "$out"
for side in prost poolwatch; do
    (cd "$side" && cargo build --release --quiet)
done
for body in "$out/body.pb" "$out/body.json"; do
    for side in prost poolwatch; do
        /usr/bin/time -f "  peak RSS %M KB" "$side/target/release/otlp-decode-$side" "$body" "$n"
    done
done
