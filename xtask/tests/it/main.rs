//! Runs the real `xtask` binary, as a user would through `cargo xtask`.

mod docker;
mod gke;
mod local;
mod support;
