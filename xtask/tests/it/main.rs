//! Runs the real `xtask` binary, as a user would through `cargo xtask`.

mod local;
mod support;
