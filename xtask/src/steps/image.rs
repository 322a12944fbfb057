//! The container image: what it is built from, its tag, and the steps that build it.
//!
//! By default the image packages a static binary built here (the Dockerfile's `prebuilt`
//! stage), which pulls no base image; `from_source` runs the self-contained multi-stage
//! build instead.

use std::path::PathBuf;

use xshell::{Shell, cmd};

use crate::core::git::Revision;
use crate::core::paths::{cargo, target_dir};
use crate::core::plan::Plan;
use crate::steps::sbom::add_sbom;

/// The image's name inside whatever registry it goes to.
pub(crate) const IMAGE_NAME: &str = "score-service";

/// The Rust target the static binary is built for: this machine's architecture, glibc.
pub(crate) fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// An image to build: where it goes, and the revision it is built from.
#[derive(Clone)]
pub(crate) struct Image {
    pub(crate) repository: String,
    pub(crate) revision: Revision,
}

impl Image {
    pub(crate) fn for_worktree(sh: &Shell, repository: String) -> anyhow::Result<Self> {
        Ok(Image {
            repository,
            revision: Revision::of_worktree(sh)?,
        })
    }

    pub(crate) fn tag(&self) -> &str {
        &self.revision.tag
    }

    /// `repository:tag`.
    pub(crate) fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.revision.tag)
    }

    /// Adds the steps that build and tag the image.
    pub(crate) fn add_build<'a, C>(&self, sh: &'a Shell, plan: &mut Plan<'a, C>, from_source: bool) {
        let reference = self.reference();
        let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
        let revision = format!("REVISION={}", self.revision.commit);
        let created = format!("CREATED={}", self.revision.created());
        let next = "read the build output above; `cargo xtask image --dry-run` shows every step";
        if from_source {
            plan.run(
                cmd!(sh, "docker build --target runtime --tag {reference} --build-arg {version} --build-arg {revision} --build-arg {created} ."),
                next,
            );
            return;
        }
        let triple = host_triple();
        // Static glibc (static-pie): the binary runs on `scratch`. Given through --config
        // for the target only, so build scripts and proc-macros stay dynamic.
        let static_flags = format!(r#"target.{triple}.rustflags=["-C", "target-feature=+crt-static"]"#);
        let cargo = cargo(sh);
        plan.run(
            cmd!(sh, "{cargo} build --release --locked --package score-service --target {triple} --config {static_flags}"),
            "fix the build error above, then run this task again",
        );
        add_sbom(sh, plan, "score-service", triple.clone(), self.revision.created());
        let built = target_dir(sh).join(&triple).join("release/score-service");
        let staged = PathBuf::from("dist/score-service");
        plan.check(
            format!("copy {} to {}", built.display(), staged.display()),
            move |_| {
                // Copy then rename, so a build reading dist/ never sees half a binary.
                let partial = PathBuf::from(format!("dist/.score-service.{}", std::process::id()));
                std::fs::copy(&built, &partial)?;
                std::fs::rename(&partial, &staged)?;
                Ok(())
            },
        );
        plan.run(
            cmd!(sh, "docker build --target prebuilt --tag {reference} --build-arg {version} --build-arg {revision} --build-arg {created} ."),
            next,
        );
    }
}
