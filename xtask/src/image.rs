//! `cargo xtask image`: build and tag the container image.
//!
//! By default the image packages a static binary built here (the Dockerfile's `prebuilt`
//! stage), which pulls no base image; `--from-source` runs the self-contained multi-stage
//! build instead.

use std::path::PathBuf;

use clap::Args;
use xshell::{Shell, cmd};

use crate::git::Revision;
use crate::local::target_dir;
use crate::plan::Plan;
use crate::settings::SettingsArgs;
use crate::target::Target;

/// The image's name inside whatever registry it goes to.
pub(crate) const IMAGE_NAME: &str = "score-service";

/// The Rust target the static binary is built for: this machine's architecture, glibc.
fn host_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

#[derive(Args, Debug)]
pub(crate) struct ImageCmd {
    /// Whose registry the image is named for.
    #[arg(long, env = "XTASK_TARGET", value_enum, default_value_t = Target::Docker)]
    target: Target,

    /// Compile inside Docker (the self-contained build; pulls the Rust image) instead of
    /// packaging a binary built on this machine.
    #[arg(long)]
    from_source: bool,
}

impl ImageCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool, settings: &SettingsArgs) -> anyhow::Result<()> {
        let repository = crate::push::repository_for(sh, self.target, settings)?;
        let image = Image::for_worktree(sh, repository)?;
        let mut plan = Plan::new();
        crate::docker::add_engine_check(sh, &mut plan);
        image.add_build(sh, &mut plan, self.from_source);
        let reference = image.reference();
        plan.check("print the image reference", move || {
            println!("{reference}");
            Ok(())
        });
        plan.execute(dry_run)
    }
}

/// An image to build: where it goes, and the revision it is built from.
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
    pub(crate) fn add_build<'a>(&self, sh: &'a Shell, plan: &mut Plan<'a>, from_source: bool) {
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
        plan.run(
            cmd!(sh, "cargo build --release --locked --package score-service --target {triple} --config {static_flags}"),
            "fix the build error above, then run this task again",
        );
        let built = target_dir(sh).join(&triple).join("release/score-service");
        let staged = PathBuf::from("dist/score-service");
        plan.check(
            format!("copy {} to {}", built.display(), staged.display()),
            move || {
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
