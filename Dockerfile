# The score service image: scratch, a single static binary, non-root, no shell.
#
# Two ways to build it, both ending in the same runtime layout:
#   docker build --target prebuilt -f Dockerfile CONTEXT
#                                      packages CONTEXT/dist/: a static binary built on the
#                                      host and its SBOM. `cargo xtask image` stages them in
#                                      a context of their own per tag, under target/xtask/
#                                      image-context/. It pulls no base image at all.
#   docker build .                     self-contained: compiles inside the pinned Rust image,
#                                      with dependency layers cached by cargo-chef
#                                      (`cargo xtask image --from-source`).
# The prebuilt stage comes first on purpose: the legacy builder builds every stage before
# its --target, so placing it first keeps the no-pull build from pulling the Rust image.

# Everything the two runtime stages share: labels, user, port, entrypoint, health check.
FROM scratch AS base
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://github.com/example/score-service
LABEL org.opencontainers.image.title="score-service" \
      org.opencontainers.image.description="Scores JSON feature rows with a model: POST /score" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
# 65532 is the conventional "nonroot" user of distroless images; scratch has no
# /etc/passwd, so the numeric id is what Kubernetes' runAsNonRoot checks.
USER 65532:65532
EXPOSE 5000 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["/score-service", "--check"]
ENTRYPOINT ["/score-service"]

# The host-built binary and its SBOM: the context's dist/ holds nothing else.
FROM base AS prebuilt
COPY dist/ /

# Compile inside the pinned toolchain; cargo-chef caches the dependency layer, so a change
# to our sources rebuilds only our crate.
FROM rust:1.95.0-slim-trixie AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# glibc linked statically gives a static-pie binary that runs on scratch.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --package score-service \
        --target "$(uname -m)-unknown-linux-gnu" --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --package score-service --target "$(uname -m)-unknown-linux-gnu" \
    && cp "target/$(uname -m)-unknown-linux-gnu/release/score-service" /score-service

FROM base AS runtime
COPY --from=builder /score-service /score-service
