//! The service's builds: the one optimised build, the image's, and the quick one a local
//! run starts from by default.
//!
//! `ship --target local --release`, benchmarks and images use the same optimised build,
//! glibc linked statically (static-pie) so that it also runs on `scratch`, rather than a
//! dynamic release build beside a static one: tract is compiled with optimisations once,
//! not twice (4-6 minutes cold on 2 cores), and what a bench measures is what ships. A
//! plain `ship` builds cargo's dev profile (about 1.5 minutes cold on 2 cores, and the
//! dependencies `cargo test` builds too): the first answer comes in under 3 minutes, at
//! about a fifth of the optimised build's requests per second.

use std::path::PathBuf;

use xshell::{Cmd, Shell, cmd};

use crate::core::paths::{cargo, target_dir};

/// The host's target triple: images are built for the machine that builds them.
pub(crate) fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// Where the release build's binaries and examples land.
pub(crate) fn release_dir(sh: &Shell) -> PathBuf {
    target_dir(sh).join(host_triple()).join("release")
}

/// Where the dev profile's binaries land.
pub(crate) fn debug_dir(sh: &Shell) -> PathBuf {
    target_dir(sh).join("debug")
}

/// `cargo build` of the service in the dev profile: quick to build, slow to run.
pub(crate) fn debug_build(sh: &Shell) -> Cmd<'_> {
    let cargo = cargo(sh);
    cmd!(sh, "{cargo} build --locked --package score-service")
}

/// `cargo build` of the service's release build; `targets` adds what else to build
/// (`--bins`, `--example NAME`), from the same compiled dependencies.
pub(crate) fn release_build<'a>(sh: &'a Shell, targets: &[&str]) -> Cmd<'a> {
    let triple = host_triple();
    // Static glibc, given through --config for the target only, so build scripts and
    // proc-macros stay dynamic.
    let static_flags = format!(r#"target.{triple}.rustflags=["-C", "target-feature=+crt-static"]"#);
    let cargo = cargo(sh);
    cmd!(
        sh,
        "{cargo} build --release --locked --package score-service {targets...} --target {triple} --config {static_flags}"
    )
}
