//! Rendering the final manifests: the deployment settings layered on an overlay by a
//! kustomization generated under `target/` — the image pinned to the pushed digest,
//! never a tag, and nothing under `manifests/` edited.
//!
//! Replicas belong to an autoscaler where the overlay has one: a count in the applied
//! manifests would be reset on every apply, or conflict with the autoscaler's own
//! writes, so `--replicas` with such an overlay is refused before anything runs.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use xshell::{Cmd, Shell, cmd};

use crate::core::plan::{Plan, query};
use crate::core::settings::{CANARY_SUFFIX, STABLE_SUFFIX, Settings, Traffic};
use crate::steps::kustomize;
use crate::steps::push::{Pushed, Release};

/// The name the manifests give the image and the app; render replaces both.
const IMAGE_PLACEHOLDER: &str = "score-service";
const APP_IN_MANIFESTS: &str = "score-app";
/// What `traffic: gateway` adds to the overlay: a Gateway, its route, a Service per track.
const GATEWAY_COMPONENT: &str = "manifests/components/gateway";
/// What one of GKE's gateway classes needs besides: its load balancer's health checks
/// pointed at /readyz.
const GKE_HEALTH_CHECKS: &str = "manifests/components/gateway-gke";
/// The pod template's annotation naming the model its image serves, for `status`; on the
/// template, so a rollback restores it with the image.
pub(crate) const MODEL_ANNOTATION: &str = "score-service/model";

pub(crate) struct Renderer<'a> {
    sh: &'a Shell,
    settings: Settings,
    /// The generated kustomization's directory.
    dir: PathBuf,
    /// The model the image serves (its name), or None for the identity echo.
    model: Option<String>,
}

impl<'a> Renderer<'a> {
    /// Renders into `state/render/`, for the image serving `model`.
    pub(crate) fn new(sh: &'a Shell, settings: &Settings, state: &Path, model: Option<String>) -> Self {
        Renderer {
            sh,
            settings: settings.clone(),
            dir: state.join("render"),
            model,
        }
    }

    /// Refuses settings the overlay cannot take: a replica count beside an autoscaler.
    /// Builds the overlay as it is (a read, so it runs for `--dry-run` too).
    pub(crate) fn check_settings(&self) -> anyhow::Result<()> {
        let Some(replicas) = self.settings.replicas else {
            return Ok(());
        };
        let overlay = Path::new("manifests/overlays").join(&self.settings.overlay);
        let yaml = query(self.build_cmd(&overlay))?;
        for document in serde_yaml::Deserializer::from_str(&yaml) {
            let value = parse_document(document)?;
            if value["kind"].as_str() == Some("HorizontalPodAutoscaler") {
                let spec = &value["spec"];
                bail!(
                    "replicas = {replicas}, but overlay {} scales the Deployment with an autoscaler (HorizontalPodAutoscaler {}, {} to {} replicas) that owns the count: unset replicas, or change minReplicas and maxReplicas in {}",
                    self.settings.overlay,
                    value["metadata"]["name"].as_str().unwrap_or("?"),
                    spec["minReplicas"].as_u64().unwrap_or(1),
                    spec["maxReplicas"].as_u64().unwrap_or(0),
                    overlay.display()
                );
            }
        }
        Ok(())
    }

    /// Adds: write the generated kustomization (with the image the release pinned when
    /// the step runs, so a push earlier in the same plan counts), build it, hand the YAML
    /// to `use_yaml`.
    pub(crate) fn add_render(
        &self,
        plan: &mut Plan<'a, Release>,
        commit: &str,
        use_yaml: impl FnOnce(String) -> anyhow::Result<()> + 'a,
    ) {
        let kustomization = self.dir.join("kustomization.yaml");
        let (generator, commit) = (self.generator(), commit.to_owned());
        let model = self.model.clone();
        plan.check(
            format!(
                "write {} (overlay {}, image pinned to the digest recorded by push)",
                kustomization.display(),
                self.settings.overlay
            ),
            move |release| {
                let content = generator.kustomization(release.pushed()?, &commit, model.as_deref())?;
                std::fs::create_dir_all(kustomization.parent().expect("sits in a directory"))?;
                std::fs::write(&kustomization, content)
                    .with_context(|| format!("write {}", kustomization.display()))
            },
        );
        let app = self.settings.app.clone();
        plan.read(
            self.build_cmd(&self.dir),
            "the manifests do not build: read kustomize's error above",
            move |_, yaml| use_yaml(rename_app(&yaml, &app)?),
        );
    }

    /// `kustomize build DIR` with the project-local kustomize, else `kubectl kustomize DIR`
    /// (kustomize has been built into kubectl since 1.14).
    fn build_cmd(&self, dir: &Path) -> Cmd<'a> {
        let sh = self.sh;
        match kustomize::installed(sh) {
            Some(kustomize) => cmd!(sh, "{kustomize} build {dir}"),
            // Building needs no cluster: with no kubeconfig, gcloud's kubectl dispatcher
            // asks no server (it would ask the current context's for its version).
            None => cmd!(sh, "kubectl kustomize {dir} --kubeconfig /dev/null"),
        }
    }

    fn generator(&self) -> Generator {
        Generator {
            settings: self.settings.clone(),
            dir: self.dir.clone(),
        }
    }
}

/// Writes the generated kustomization; owns what it needs so it can run later.
struct Generator {
    settings: Settings,
    dir: PathBuf,
}

impl Generator {
    fn kustomization(&self, pushed: &Pushed, commit: &str, model: Option<&str>) -> anyhow::Result<String> {
        let s = &self.settings;
        let overlay = Path::new("manifests/overlays").join(&s.overlay);
        let Some((repository, digest)) = pushed.pinned.split_once('@') else {
            bail!("{:?} is not pinned by digest", pushed.pinned);
        };
        let change_cause = format!("commit {commit}, image {}", pushed.pinned);
        let mut patches = vec![
            Patch {
                target: PatchTarget {
                    kind: "Service",
                    name: APP_IN_MANIFESTS,
                },
                patch: format!(
                    "- op: replace\n  path: /spec/ports/0/port\n  value: {}\n",
                    s.service_port
                ),
            },
            Patch {
                target: PatchTarget {
                    kind: "Deployment",
                    name: APP_IN_MANIFESTS,
                },
                patch: format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {APP_IN_MANIFESTS}\n  annotations:\n    kubernetes.io/change-cause: {}\nspec:\n  template:\n    metadata:\n      annotations:\n        {MODEL_ANNOTATION}: {}\n",
                    serde_json::to_string(&change_cause)?,
                    serde_json::to_string(model.unwrap_or("identity"))?
                ),
            },
        ];
        let mut components = Vec::new();
        if s.traffic == Traffic::Gateway {
            components.push(relative_to(&self.dir, Path::new(GATEWAY_COMPONENT))?);
            if s.gke_gateway() {
                components.push(relative_to(&self.dir, Path::new(GKE_HEALTH_CHECKS))?);
            }
            patches.push(Patch {
                target: PatchTarget {
                    kind: "Gateway",
                    name: APP_IN_MANIFESTS,
                },
                patch: format!(
                    "- op: replace\n  path: /spec/gatewayClassName\n  value: {}\n- op: replace\n  path: /spec/listeners/0/port\n  value: {}\n",
                    s.gateway_class, s.service_port
                ),
            });
        }
        let generated = Kustomization {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            resources: vec![relative_to(&self.dir, &overlay)?],
            namespace: s.namespace.clone(),
            images: vec![ImageOverride {
                name: IMAGE_PLACEHOLDER,
                new_name: repository.to_owned(),
                digest: digest.to_owned(),
            }],
            replicas: s
                .replicas
                .map(|count| {
                    vec![Replicas {
                        name: APP_IN_MANIFESTS,
                        count,
                    }]
                })
                .unwrap_or_default(),
            components,
            patches,
        };
        Ok(format!(
            "# Generated by `cargo xtask render` from {} and the deployment settings; do not edit.\n{}",
            overlay.display(),
            serde_yaml::to_string(&generated)?
        ))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: &'static str,
    kind: &'static str,
    resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<String>,
    namespace: String,
    images: Vec<ImageOverride>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replicas: Vec<Replicas>,
    patches: Vec<Patch>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageOverride {
    name: &'static str,
    new_name: String,
    digest: String,
}

#[derive(Serialize)]
struct Replicas {
    name: &'static str,
    count: u32,
}

#[derive(Serialize)]
struct Patch {
    target: PatchTarget,
    patch: String,
}

#[derive(Serialize)]
struct PatchTarget {
    kind: &'static str,
    name: &'static str,
}

/// The manifests call the app `score-app`; when the settings name it otherwise, every
/// string that is exactly `score-app` (names, labels, selectors, the autoscaler's target)
/// becomes the new name, and so do the tracks' Services' names (`score-app-stable`,
/// `score-app-canary`). Whole-value matches only, on the parsed documents.
fn rename_app(yaml: &str, app: &str) -> anyhow::Result<String> {
    if app == APP_IN_MANIFESTS {
        return Ok(yaml.to_owned());
    }
    let mut out = String::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let mut value = parse_document(document)?;
        replace_strings(&mut value, APP_IN_MANIFESTS, app);
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&value)?);
    }
    Ok(out)
}

fn parse_document(document: serde_yaml::Deserializer<'_>) -> anyhow::Result<serde_yaml::Value> {
    Ok(serde::Deserialize::deserialize(document)?)
}

fn replace_strings(value: &mut serde_yaml::Value, from: &str, to: &str) {
    match value {
        serde_yaml::Value::String(s) if s == from => *s = to.to_owned(),
        serde_yaml::Value::String(s)
            if s.strip_prefix(from)
                .is_some_and(|suffix| [STABLE_SUFFIX, CANARY_SUFFIX].contains(&suffix)) =>
        {
            *s = format!("{to}{}", &s[from.len()..]);
        }
        serde_yaml::Value::Sequence(items) => {
            items.iter_mut().for_each(|item| replace_strings(item, from, to))
        }
        serde_yaml::Value::Mapping(map) => map.values_mut().for_each(|item| replace_strings(item, from, to)),
        _ => {}
    }
}

/// `to` relative to `from_dir` (kustomize refuses absolute resource paths).
fn relative_to(from_dir: &Path, to: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(from_dir)?;
    let from = from_dir.canonicalize()?;
    let to = to
        .canonicalize()
        .with_context(|| format!("find {}", to.display()))?;
    let from_parts: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from_parts
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in common..from_parts.len() {
        relative.push("..");
    }
    for part in &to_parts[common..] {
        relative.push(part);
    }
    Ok(relative.to_string_lossy().into_owned())
}
