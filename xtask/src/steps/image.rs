//! The container image: what it is built from, its tag, and the steps that build it.
//!
//! By default the image packages a static binary built here (the Dockerfile's `prebuilt`
//! stage), which pulls no base image; `from_source` runs the self-contained multi-stage
//! build instead.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

use crate::core::git::Revision;
use crate::core::paths::state_dir;
use crate::core::plan::Plan;
use crate::core::records;
use crate::steps::release::{host_triple, release_build, release_dir};
use crate::steps::sbom::{SBOM_NAME, add_sbom, sbom_file};

/// The image's name inside whatever registry it goes to.
pub(crate) const IMAGE_NAME: &str = "score-service";

/// The Rust target the static binary is built for: this machine's architecture, glibc.
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
        plan.run(
            release_build(sh, &[]),
            "fix the build error above, then run this task again",
        );
        let sbom = sbom_file(sh, self.tag());
        add_sbom(
            sh,
            plan,
            "score-service",
            triple.clone(),
            self.revision.created(),
            sbom.clone(),
        );
        let built = release_dir(sh).join("score-service");
        let context = build_context(sh, self.tag());
        let dist = context.join("dist");
        plan.check(
            format!(
                "copy {} and its SBOM into the build context {}",
                built.display(),
                context.display()
            ),
            move |_| {
                stage(&built, &dist.join("score-service"))?;
                stage(&sbom, &dist.join(SBOM_NAME))
            },
        );
        // The legacy builder stamps each image it creates with the time, so a rebuild of
        // the same inputs is a new digest whenever its cache missed (another build of
        // this Dockerfile at the same time, a pruned cache): a new rollout for nothing.
        // What the engine holds under this tag is kept when it was built from exactly
        // these inputs.
        let inputs = Inputs {
            context: context.clone(),
            build_args: vec![version.clone(), revision.clone(), created.clone()],
        };
        // Beside the context, not in it: the context holds exactly what the image holds.
        let record = context.with_file_name(format!("{}.built.json", self.tag()));
        let format = "{{.Id}}";
        plan.when(
            cmd!(sh, "docker image inspect --format {format} {reference}"),
            format!("{reference} is not yet built from exactly these files and arguments"),
            {
                let (inputs, record) = (inputs.clone(), record.clone());
                move |_, probe| {
                    if !probe.success {
                        return Ok(true);
                    }
                    let id = probe.stdout.trim();
                    let keep = match records::read::<Built>(&record)? {
                        Some(built) => built.image_id == id && built.inputs == inputs.digest()?,
                        None => false,
                    };
                    if keep {
                        eprintln!("# the engine holds {id}, built from exactly these inputs: keep it");
                    }
                    Ok(!keep)
                }
            },
            |then| {
                then.run(
                    cmd!(sh, "docker build --target prebuilt --file Dockerfile --tag {reference} --build-arg {version} --build-arg {revision} --build-arg {created} {context}"),
                    next,
                );
                then.read(
                    cmd!(sh, "docker image inspect --format {format} {reference}"),
                    "the build succeeded but the engine cannot show the image: run this task again",
                    move |_, output| {
                        let built = Built {
                            image_id: output.trim().to_owned(),
                            inputs: inputs.digest()?,
                        };
                        records::write(&record, &built)
                    },
                );
            },
        );
    }
}

/// What went into a prebuilt image: its build context and build arguments, with the
/// Dockerfile.
#[derive(Clone)]
struct Inputs {
    context: PathBuf,
    build_args: Vec<String>,
}

impl Inputs {
    fn digest(&self) -> anyhow::Result<String> {
        let mut hasher = Sha256::new();
        let dist = self.context.join("dist");
        for path in [
            PathBuf::from("Dockerfile"),
            dist.join("score-service"),
            dist.join(SBOM_NAME),
        ] {
            let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        for arg in &self.build_args {
            hasher.update(arg.as_bytes());
            hasher.update([0]);
        }
        Ok(format!("{:x}", hasher.finalize()))
    }
}

/// The image a prebuilt build made, and a digest of its inputs.
#[derive(Serialize, Deserialize)]
struct Built {
    image_id: String,
    inputs: String,
}

/// The build context of the `prebuilt` stage for the image tagged `tag`: a `dist/` that
/// holds the binary and its SBOM, and nothing else. One per tag, under the state
/// directory, so builds running at the same time (of other trees, or other tests') never
/// put a file into this image: a `dist/` shared by all once let one build ship another's
/// half-written temporary copy.
fn build_context(sh: &Shell, tag: &str) -> PathBuf {
    state_dir(sh).join("image-context").join(tag)
}

/// Copies `from` to `to` in a build context's `dist/` through a temporary file outside
/// every context, then renames it into place: a build starting meanwhile sends the old
/// file or the new one, never half of one, and never the temporary file. Two processes
/// staging the same tag stage the same bytes, so either rename may win.
fn stage(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dist = to.parent().context("a staged file sits in dist/")?;
    let contexts = dist
        .parent()
        .and_then(Path::parent)
        .context("dist/ sits in a build context")?;
    std::fs::create_dir_all(dist).with_context(|| format!("create {}", dist.display()))?;
    let name = to.file_name().context("a file name")?.to_string_lossy();
    let partial = contexts.join(format!(".{name}.{}.partial", std::process::id()));
    std::fs::copy(from, &partial)
        .with_context(|| format!("copy {} to {}", from.display(), partial.display()))?;
    std::fs::rename(&partial, to).with_context(|| format!("move it to {}", to.display()))
}
