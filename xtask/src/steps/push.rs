//! Pushing the image, then recording the digest the registry stored, so what runs later
//! is pinned to exactly what was pushed (`repo@sha256:…`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use crate::core::http;
use crate::core::paths::state_dir;
use crate::core::plan::Plan;
use crate::core::records;
use crate::core::target::TargetKind;
use crate::steps::sbom::{SBOM_NAME, sbom_file};

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

/// What a shipping plan learns as it goes, for its later steps: the image pushed (or
/// found already pushed), pinned by digest; after a failed rollout, the pod to read the
/// logs of.
#[derive(Default, Debug)]
pub(crate) struct Release {
    pub(crate) pushed: Option<Pushed>,
    pub(crate) failing_pod: Option<String>,
    /// What the cluster was seen serving after a failed rollout (and its rollback).
    pub(crate) serving: Option<String>,
    /// A canary's pods, worked out from the stable track's count.
    pub(crate) canary_replicas: Option<u64>,
    /// The JSON patch that gives the stable track a canary's image (`promote`).
    pub(crate) promotion: Option<String>,
    /// A canary's analysis, once it has run.
    pub(crate) verdict: Option<crate::steps::tracks::Verdict>,
    /// Whether the route was seen to take a canary's share back (`traffic: gateway`):
    /// until it has, the canary keeps its pods, so no request is routed to nothing.
    pub(crate) canary_unrouted: bool,
    /// Whether the Deployment's last rollout had timed out (`ProgressDeadlineExceeded`)
    /// before this one was applied.
    pub(crate) timed_out_before: bool,
}

impl Release {
    /// The pushed image, once a step has pushed or found it.
    pub(crate) fn pushed(&self) -> anyhow::Result<&Pushed> {
        self.pushed
            .as_ref()
            .context("no image is pinned yet: push one (`cargo xtask push`) or ship")
    }
}

/// Adds the check that `record` holds the push of exactly `reference` (this tree, these
/// settings, this model), and pins the release to it: what `render` and `deploy` deploy
/// when they run alone. A record of another commit, registry or model is refused.
pub(crate) fn add_recorded<'a>(
    plan: &mut Plan<'a, Release>,
    record: PathBuf,
    reference: String,
    target: TargetKind,
) {
    plan.check(
        format!(
            "read {}: it must record the push of {reference}",
            record.display()
        ),
        move |release| {
            let push =
                format!("`cargo xtask push --target {target}` (or `cargo xtask ship --target {target}`)");
            let Some(pushed) = records::read::<Pushed>(&record)? else {
                bail!(
                    "no image is pushed for {target} yet ({} is missing): run {push}",
                    record.display()
                );
            };
            if pushed.image != reference {
                bail!(
                    "{} records {}, but this tree with these settings is {reference}: run {push}",
                    record.display(),
                    pushed.image
                );
            }
            release.pushed = Some(pushed);
            Ok(())
        },
    );
}

/// Where the push for `target` is recorded.
pub(crate) fn record_path(sh: &Shell, target: TargetKind) -> PathBuf {
    state_dir(sh).join(target.to_string()).join("pushed.json")
}

/// Adds: push `repository:tag`, keep the digest the registry stored (as `docker push`
/// reports it, from the registry's answer to the manifest's upload), record it in `record`
/// (for later tasks) and in the plan's release (for the steps after). Not the engine's
/// `RepoDigests`: its first entry can be a digest of another push of the same repository.
pub(crate) fn add_push<'a>(
    sh: &'a Shell,
    plan: &mut Plan<'a, Release>,
    repository: &str,
    tag: &str,
    record: PathBuf,
) {
    let reference = format!("{repository}:{tag}");
    // A model image has no SBOM of its own: it carries its base's.
    let sbom = sbom_file(sh, tag);
    let (repository, tag) = (repository.to_owned(), tag.to_owned());
    plan.read(
        cmd!(sh, "docker push {reference}"),
        "check that the registry is reachable and that you are logged in to it",
        move |release, output| {
            print!("{output}");
            let Some(digest) = pushed_digest(&output, &tag) else {
                bail!(
                    "`docker push {reference}` succeeded but reported no digest for {tag}: run `cargo xtask push` again"
                );
            };
            let pushed = Pushed {
                pinned: format!("{repository}@{digest}"),
                tag,
                image: reference,
            };
            records::write(&record, &pushed)?;
            // The image's bill of materials, beside the record of what was pushed.
            if sbom.exists() {
                std::fs::copy(&sbom, record.with_file_name(SBOM_NAME))?;
            }
            println!("pushed {}", pushed.pinned);
            release.pushed = Some(pushed);
            Ok(())
        },
    );
}

/// The digest `docker push` reports for `tag` on its last line: `TAG: digest: sha256:… size: N`.
fn pushed_digest<'o>(output: &'o str, tag: &str) -> Option<&'o str> {
    output.lines().rev().find_map(|line| {
        let digest = line.trim().strip_prefix(tag)?.strip_prefix(": digest: ")?;
        let digest = digest.split_whitespace().next()?;
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
    })
}

/// The digest `registry` serves for `name:tag`, from the Docker-Content-Digest header of
/// a manifest request (the registry API's own answer), or None if it has no such tag.
pub(crate) fn registry_digest(registry: &str, name: &str, tag: &str) -> anyhow::Result<Option<String>> {
    let url = format!("http://{registry}/v2/{name}/manifests/{tag}");
    let agent = http::agent(Duration::from_secs(5));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_one_docker_push_reports_for_the_tag() {
        let digest = format!("sha256:{}", "4f".repeat(32));
        let output = format!(
            "The push refers to repository [localhost:5001/score-service]\n5f70bf18a086: Pushed\nabc123-dirty: digest: {digest} size: 528\n"
        );
        assert_eq!(pushed_digest(&output, "abc123-dirty"), Some(digest.as_str()));
        assert_eq!(pushed_digest(&output, "abc123"), None, "another tag's line");
        assert_eq!(pushed_digest("abc123: digest: sha256:00 size: 1", "abc123"), None);
        assert_eq!(pushed_digest("5f70bf18a086: Pushed", "abc123"), None);
    }
}
