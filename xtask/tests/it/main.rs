//! Runs the real `xtask` binary, as a user would through `cargo xtask`.

mod advisories;
mod bench;
mod canary;
mod docker;
mod fake_gke;
mod faults;
mod gke;
mod local;
mod pipelines;
mod rehearsal;
mod support;
mod tools;
