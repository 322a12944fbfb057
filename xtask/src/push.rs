//! `cargo xtask push`: push the image, then record the digest the registry stored, so
//! what runs later is pinned to exactly what was pushed (`repo@sha256:…`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use crate::image::{IMAGE_NAME, Image};
use crate::plan::Plan;
use crate::registry::{self, LocalRegistry};
use crate::settings::{Settings, SettingsArgs};
use crate::target::Target;

#[derive(Args, Debug)]
pub(crate) struct PushCmd {
    /// Whose registry to push to.
    #[arg(long, env = "XTASK_TARGET", value_enum, default_value_t = Target::Docker)]
    target: Target,
}

impl PushCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool, settings: &SettingsArgs) -> anyhow::Result<()> {
        let repository = repository_for(sh, self.target, settings)?;
        let image = Image::for_worktree(sh, repository)?;
        let registry = LocalRegistry::new(sh);
        let mut plan = Plan::new();
        crate::docker::add_engine_check(sh, &mut plan);
        if self.target == Target::Docker {
            registry.add_up(sh, &mut plan, registry::DEFAULT_PORT)?;
        }
        let reference = image.reference();
        plan.check(
            format!("check that {reference} was built (`cargo xtask image`)"),
            {
                let reference = reference.clone();
                move || {
                    let format = "{{.Id}}";
                    cmd!(sh, "docker image inspect --format {format} {reference}")
                        .ignore_stdout()
                        .run()
                        .with_context(|| format!("{reference} is not built: run `cargo xtask image` first"))
                }
            },
        );
        add_push(sh, &mut plan, &image, record_path(sh, self.target));
        plan.execute(dry_run)
    }
}

/// Where images for `target` are pushed: `REGISTRY/score-service`.
pub(crate) fn repository_for(sh: &Shell, target: Target, settings: &SettingsArgs) -> anyhow::Result<String> {
    match target {
        Target::Local => {
            bail!("the local target runs the binary directly and has no image: use --target docker or gke")
        }
        Target::Docker => Ok(format!("{}/{IMAGE_NAME}", LocalRegistry::new(sh).address()?)),
        Target::Gke => Ok(Settings::resolve(sh, settings)?.0.image_repository()),
    }
}

/// What `push` recorded: the tag pushed and the digest the registry stored for it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pushed {
    pub(crate) tag: String,
    /// `repository:tag`.
    pub(crate) image: String,
    /// `repository@sha256:…`: what deployments run.
    pub(crate) pinned: String,
}

impl Pushed {
    pub(crate) fn digest(&self) -> &str {
        self.pinned.rsplit_once('@').map_or("", |(_, digest)| digest)
    }
}

pub(crate) fn record_path(sh: &Shell, target: Target) -> PathBuf {
    crate::state_dir(sh).join(target.to_string()).join("pushed.json")
}

pub(crate) fn read_record(path: &PathBuf) -> Option<Pushed> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Adds: push, read back the digest, record it in `record`.
pub(crate) fn add_push<'a>(sh: &'a Shell, plan: &mut Plan<'a>, image: &Image, record: PathBuf) {
    let reference = image.reference();
    let (repository, tag) = (image.repository.clone(), image.tag().to_owned());
    plan.run(
        cmd!(sh, "docker push {reference}"),
        "check that the registry is reachable and that you are logged in to it",
    );
    let format = "{{json .RepoDigests}}";
    plan.read(
        cmd!(sh, "docker image inspect --format {format} {reference}"),
        "the push succeeded but its digest could not be read: run `cargo xtask push` again",
        move |output| {
            let digests: Vec<String> = serde_json::from_str(output.trim())
                .with_context(|| format!("docker printed {output:?}, not a list of digests"))?;
            let prefix = format!("{repository}@");
            let Some(pinned) = digests.into_iter().find(|d| d.starts_with(&prefix)) else {
                bail!("docker knows no digest of {repository} for {reference}");
            };
            let pushed = Pushed {
                tag,
                image: reference,
                pinned,
            };
            std::fs::create_dir_all(record.parent().expect("the record sits in a directory"))?;
            std::fs::write(&record, serde_json::to_string_pretty(&pushed)?)
                .with_context(|| format!("write {}", record.display()))?;
            println!("pushed {}", pushed.pinned);
            Ok(())
        },
    );
}

/// The digest `registry` serves for `name:tag`, from the Docker-Content-Digest header of
/// a manifest request (the registry API's own answer), or None if it has no such tag.
pub(crate) fn registry_digest(registry: &str, name: &str, tag: &str) -> anyhow::Result<Option<String>> {
    let url = format!("http://{registry}/v2/{name}/manifests/{tag}");
    let agent = crate::smoke::agent(Duration::from_secs(5));
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    let response = agent
        .head(&url)
        .header("Accept", accept)
        .call()
        .with_context(|| format!("HEAD {url}"))?;
    match response.status().as_u16() {
        200 => Ok(response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)),
        404 => Ok(None),
        status => bail!("HEAD {url} answered {status}"),
    }
}
