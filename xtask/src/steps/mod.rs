//! The middle layer: the steps tasks and targets compose into plans — building, pushing
//! and finding images (the service's, and model images on top), the local registry,
//! background programs, kubectl told its context, rendering and deploying manifests,
//! kustomize, gcloud's cluster plans, the IAM roles they need (`iam`), the Docker engine check, the smoke test, and a
//! canary release's manifests and analysis (`canary`, over the figures of `tracks`), and
//! the RustSec advisories check against an offline snapshot; the servers a benchmark
//! starts and stops, and the load wrk drives and reports (`servers`, `wrk`).
//! Steps import only from `core` and from each other, never from `targets` or `tasks`.

pub(crate) mod advisories;
pub(crate) mod canary;
pub(crate) mod daemon;
pub(crate) mod deploy;
pub(crate) mod engine;
pub(crate) mod gcloud;
pub(crate) mod iam;
pub(crate) mod image;
pub(crate) mod kubectl;
pub(crate) mod kustomize;
pub(crate) mod model_image;
pub(crate) mod push;
pub(crate) mod registry;
pub(crate) mod release;
pub(crate) mod render;
pub(crate) mod sbom;
pub(crate) mod servers;
pub(crate) mod smoke;
pub(crate) mod tracks;
pub(crate) mod wrk;
