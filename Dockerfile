# poolwatch container image: a static musl binary in an empty (scratch) image.
#
#   docker build -t poolwatch .
#   buildah bud --isolation chroot --storage-driver vfs -t poolwatch .
#
# The result holds two files, /poolwatch and the CA bundle that `verify-full` TLS to
# PostgreSQL reads by default (/etc/ssl/certs/ca-certificates.crt). It runs as the numeric
# user 65534 (nobody), needs no shell and writes nothing, so it works with a read-only root
# filesystem. See docs/docker.md.
#
# To package a binary built elsewhere (for example by CI, without pulling the Rust image),
# put the root filesystem in dist/ (dist/poolwatch, dist/etc/ssl/certs/ca-certificates.crt)
# and build with `--build-arg BINARY_FROM=prebuilt`; the `build` stage is then skipped.

ARG BINARY_FROM=build

# ---- build: compile a static x86_64 musl binary --------------------------------------
FROM docker.io/library/rust:1.95-slim-bookworm AS build
# musl-gcc is needed for the C and assembly parts of ring (rustls' crypto).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, in their own layer, so that editing src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && rm -rf src
COPY src ./src
# COPY keeps the files' own mtimes, which can be older than the placeholder build: touch
# them so cargo rebuilds the crate itself.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && mkdir -p /out/etc/ssl/certs \
 && cp target/x86_64-unknown-linux-musl/release/poolwatch /out/poolwatch \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt

# ---- prebuilt: the same root filesystem, taken from dist/ in the build context --------
FROM scratch AS prebuilt
COPY dist/ /out/

# ---- the root filesystem chosen by BINARY_FROM (build or prebuilt) --------------------
FROM ${BINARY_FROM} AS rootfs

# ---- runtime ----------------------------------------------------------------------------
FROM scratch
COPY --from=rootfs /out/ /
LABEL org.opencontainers.image.title="poolwatch" \
      org.opencontainers.image.description="Catches PostgreSQL connection leaks and exports Prometheus metrics" \
      org.opencontainers.image.licenses="Apache-2.0"
# 65534 is nobody; numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65534:65534
# /metrics, /healthz, /readyz (and, in central mode, the push API).
EXPOSE 19187
ENTRYPOINT ["/poolwatch"]
