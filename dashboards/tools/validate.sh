#!/usr/bin/env bash
# Validates dashboards/*.json against Grafana's published dashboard schema: installs the
# pinned @grafana/schema and generator (package-lock.json) into node_modules/ when missing
# or stale, generates JSON Schemas from its TypeScript types, validates every dashboard,
# then checks that the validation still rejects broken dashboards (--self-test).
# Exits non-zero on any violation. Needs node and npm; reaches only the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp=node_modules/.poolwatch-lock.sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
    npm ci --silent --no-audit --no-fund >/dev/null
    echo "$lock_sum" >"$stamp"
fi

schema_dir=node_modules/.poolwatch-schema
inputs_sum="$(cat "$stamp" schema-entry.ts generate-schema.js tsconfig.json | sha256sum | cut -d' ' -f1)"
if [ ! -f "$schema_dir/INPUTS" ] || [ "$(cat "$schema_dir/INPUTS")" != "$inputs_sum" ]; then
    rm -rf "$schema_dir"
    node generate-schema.js "$schema_dir"
    echo "$inputs_sum" >"$schema_dir/INPUTS"
fi

shopt -s nullglob
dashboards=("$(cd "$here/.." && pwd)"/*.json)
if [ ${#dashboards[@]} -eq 0 ]; then
    echo "no dashboards found in $(cd .. && pwd)" >&2
    exit 1
fi
node validate.js "$schema_dir" "${dashboards[@]}"
node validate.js "$schema_dir" --self-test "${dashboards[0]}"
