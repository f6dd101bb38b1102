# poolwatch container image: a static musl binary in an empty (scratch) image, for
# linux/amd64 and linux/arm64.
#
#   docker build -t poolwatch .
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry.example.com/poolwatch .
#   buildah bud --isolation chroot --storage-driver vfs -t poolwatch .
#
# The result holds two files, /poolwatch and the CA bundle that `verify-full` TLS to
# PostgreSQL reads by default (/etc/ssl/certs/ca-certificates.crt). It runs as the numeric
# user 65534 (nobody), needs no shell and writes nothing, so it works with a read-only root
# filesystem. See docs/docker.md.
#
# The build stage runs on the build machine's own platform and cross-compiles for the
# target's (TARGETARCH, set by BuildKit and buildah from --platform): no emulation.
# tests/docker.rs runs this stage's COPY and RUN steps in a copy of the context holding only
# what .dockerignore admits, for both architectures.
#
# To package a binary built elsewhere (for example by CI, without pulling the Rust image),
# put the root filesystem in dist/ (dist/poolwatch, dist/etc/ssl/certs/ca-certificates.crt)
# and build with `--build-arg BINARY_FROM=prebuilt`; the `build` stage is then skipped.

ARG BINARY_FROM=build

# ---- build: compile a static musl binary for TARGETARCH -------------------------------
FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95-slim-bookworm AS build
ARG TARGETARCH=amd64
# musl-tools: musl-gcc for the C and assembly parts of ring (rustls' crypto) on x86_64;
# gcc-aarch64-linux-gnu: Debian's cross compiler, for ring and the link on arm64 (Rust's
# musl targets bring their own libc).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 gcc-aarch64-linux-gnu=4:12.2.0-3 libc6-dev-arm64-cross=2.36-8cross1 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
ENV CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
WORKDIR /src
# Dependencies first, in their own layer, so that editing src/ does not rebuild them. The
# manifest names the benchmarks, so cargo needs a file for each to read it.
COPY Cargo.toml Cargo.lock ./
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "TARGETARCH $TARGETARCH: poolwatch builds for amd64 and arm64" >&2; exit 1 ;; \
    esac >rust-target \
 && mkdir src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"$/\1/p' Cargo.toml >benches/names \
 && while read -r bench; do echo 'fn main() {}' > "benches/$bench.rs"; done <benches/names \
 && cargo build --profile dist --locked --target "$(cat rust-target)" \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
# COPY keeps the files' own mtimes, which can be older than the placeholder build: touch
# them so cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs \
 && cargo build --profile dist --locked --target "$(cat rust-target)" \
 && mkdir -p out/etc/ssl/certs \
 && cp "${CARGO_TARGET_DIR:-target}/$(cat rust-target)/dist/poolwatch" out/poolwatch \
 && cp /etc/ssl/certs/ca-certificates.crt out/etc/ssl/certs/ca-certificates.crt

# ---- prebuilt: the same root filesystem, taken from dist/ in the build context --------
FROM scratch AS prebuilt
COPY dist/ /src/out/

# ---- the root filesystem chosen by BINARY_FROM (build or prebuilt) --------------------
FROM ${BINARY_FROM} AS rootfs

# ---- runtime ----------------------------------------------------------------------------
FROM scratch
COPY --from=rootfs /src/out/ /
# Set by CI: docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD)
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/poolwatch/poolwatch
LABEL org.opencontainers.image.title="poolwatch" \
      org.opencontainers.image.description="Catches PostgreSQL connection leaks and exports Prometheus metrics" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
# 65534 is nobody; numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65534:65534
# /metrics, /healthz, /readyz (and, in central mode, the push API).
EXPOSE 19187
# There is no curl in the image: poolwatch asks itself. It finds the port in
# POOLWATCH_LISTEN_ADDRESS (set that, rather than --listen, to move it).
HEALTHCHECK --interval=30s --timeout=6s --start-period=5s CMD ["/poolwatch", "healthcheck"]
ENTRYPOINT ["/poolwatch"]
