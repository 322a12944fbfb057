# The image the steps of ci/cloudbuild.yaml run in; its first step builds it. It has what
# `cargo xtask ci`, `tools`, `cluster-up` and `ship` call: the Rust image's toolchain, C
# linker, libc headers, git and curl; clippy and rustfmt; Python with venv (the xtask
# installs its linters and reference servers into one); and from their own Debian
# repositories the Google Cloud CLI, kubectl, the GKE auth plugin and the Docker client,
# which talks to Cloud Build's Docker engine through the socket every step is given.
FROM rust:1.95-bookworm

ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The repositories keep only recent versions, so packages are not pinned: the base image's
# tag pins the toolchain, and each tool's version is printed by `cargo xtask tools`.
# hadolint ignore=DL3008
RUN install -d -m 0755 /etc/apt/keyrings \
 && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
    | gpg --dearmor -o /etc/apt/keyrings/cloud.google.gpg \
 && echo "deb [signed-by=/etc/apt/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
    > /etc/apt/sources.list.d/google-cloud-sdk.list \
 && curl -fsSL https://download.docker.com/linux/debian/gpg -o /etc/apt/keyrings/docker.asc \
 && echo "deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable" \
    > /etc/apt/sources.list.d/docker.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
    google-cloud-cli google-cloud-cli-gke-gcloud-auth-plugin kubectl \
    docker-ce-cli docker-buildx-plugin \
    python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# Cloud Build's /workspace may belong to another user than the steps' root, and git
# refuses to read a repository it does not own unless told it is safe.
RUN rustup component add clippy rustfmt \
 && git config --system --add safe.directory /workspace
