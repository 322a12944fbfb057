//! The cluster targets: `gke` (Google Kubernetes Engine, the settings of deploy.yaml) and
//! `kube` (any cluster of the kubeconfig: kind, minikube, k3d, EKS, AKS, GKE without
//! gcloud). Both ship the same way: build the image, push it (and, with `--model`, a
//! model image on top of it), render the overlay pinned to the pushed digest, diff and
//! apply server-side, wait for the rollout, and smoke-test through the load balancer.
//!
//! Every kubectl command names the context (see `steps::kubectl`); a context missing
//! from the kubeconfig stops the plan before anything changes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::Shell;

use crate::core::git;
use crate::core::model_file::Models;
use crate::core::paths::state_dir;
use crate::core::plan::{Command, Plan, query};
use crate::core::process::{Poll, WaitError, poll_until};
use crate::core::settings::{Gke, Settings, SettingsArgs, Traffic};
use crate::core::target::TargetKind;
use crate::steps::canary::{self, CANARY_SUFFIX, CanaryOptions, Served, TRACK_LABEL};
use crate::steps::deploy::{Rollout, add_deploy, add_pod_diagnosis, add_read_serving, image_pull_watch};
use crate::steps::engine::add_engine_check;
use crate::steps::image::Image;
use crate::steps::kubectl::{Kubectl, current_context, has_context};
use crate::steps::model_image::ModelImage;
use crate::steps::push::{self, Release};
use crate::steps::registry::{self, LocalRegistry};
use crate::steps::render::{MODEL_ANNOTATION, Renderer};
use crate::steps::smoke::{INDEX_READY, describe_index, print_try_it, smoke_test};
use crate::targets::target::{Publish, ShipOptions, Target};

/// What the plans do on a cluster, as RBAC names it: verb, resource, and what for.
const PERMISSIONS: [(&str, &str, &str); 14] = [
    ("patch", "deployments", "apply the manifests and promote a canary"),
    ("patch", "services", "apply the manifests"),
    ("patch", "horizontalpodautoscalers", "apply the manifests"),
    ("patch", "poddisruptionbudgets", "apply the manifests"),
    ("patch", "networkpolicies", "apply the manifests"),
    ("watch", "deployments", "wait for a rollout"),
    ("list", "replicasets", "roll back (kubectl rollout undo)"),
    ("delete", "deployments", "remove a canary, and `down`"),
    ("list", "pods", "diagnose a rollout and find a canary's pods"),
    (
        "watch",
        "pods",
        "stop a rollout at an image that cannot be pulled",
    ),
    ("get", "pods/log", "read a failing pod's log"),
    ("list", "events", "read the namespace's warnings"),
    (
        "get",
        "pods/proxy",
        "read each track's /metrics in a canary analysis",
    ),
    (
        "create",
        "pods/proxy",
        "send a canary's check rows to each track, and ask each pod what it serves (status)",
    ),
];

/// What the plans do there besides, with `traffic: gateway`.
const GATEWAY_PERMISSIONS: [(&str, &str, &str); 6] = [
    (
        "patch",
        "gateways.gateway.networking.k8s.io",
        "apply the manifests",
    ),
    (
        "patch",
        "httproutes.gateway.networking.k8s.io",
        "apply the manifests and shift a canary's share of requests",
    ),
    (
        "patch",
        "healthcheckpolicies.networking.gke.io",
        "apply the manifests (GKE's classes)",
    ),
    ("delete", "gateways.gateway.networking.k8s.io", "`down`"),
    ("delete", "httproutes.gateway.networking.k8s.io", "`down`"),
    (
        "delete",
        "healthcheckpolicies.networking.gke.io",
        "`down` (GKE's classes)",
    ),
];

pub(crate) struct Cluster<'a> {
    sh: &'a Shell,
    kind: TargetKind,
    settings: Settings,
    kubectl: Kubectl<'a>,
    /// `HOST[:PORT][/PATH]`: images go to `REGISTRY/IMAGE`. Only pushing needs one.
    registry: Option<String>,
    /// What to do when the kubeconfig lacks the context.
    get_context: String,
    /// Where this target's records and generated files live.
    state: PathBuf,
    local_registry: LocalRegistry,
}

impl<'a> Cluster<'a> {
    /// GKE: the context `get-credentials` writes and Artifact Registry, unless the
    /// settings name others.
    pub(crate) fn gke(sh: &'a Shell, args: &SettingsArgs) -> anyhow::Result<Self> {
        let (settings, gke) = Settings::resolve_with_gke(sh, args)?;
        Ok(Self::of_gke(sh, settings, &gke))
    }

    /// A GKE cluster of settings already resolved.
    pub(crate) fn of_gke(sh: &'a Shell, settings: Settings, gke: &Gke) -> Self {
        let context = settings.context.clone().unwrap_or_else(|| gke.context());
        let registry = settings.registry.clone().unwrap_or_else(|| gke.registry());
        let get_context = format!(
            "run `cargo xtask cluster-up`, which fetches it (`gcloud container clusters get-credentials {} --location {} --project {}`)",
            gke.cluster, gke.location, gke.project
        );
        Self::new(
            sh,
            TargetKind::Gke,
            settings,
            context,
            Some(registry),
            get_context,
        )
    }

    /// Any cluster: the context named (or the current one) and the registry named.
    pub(crate) fn kube(sh: &'a Shell, args: &SettingsArgs) -> anyhow::Result<Self> {
        let settings = Settings::resolve(sh, args)?;
        let registry = settings.registry.clone();
        let context = match settings.context.clone() {
            Some(context) => context,
            None => current_context(sh)?,
        };
        let get_context = "`kubectl config get-contexts` lists the contexts there are".to_owned();
        Ok(Self::new(
            sh,
            TargetKind::Kube,
            settings,
            context,
            registry,
            get_context,
        ))
    }

    fn new(
        sh: &'a Shell,
        kind: TargetKind,
        settings: Settings,
        context: String,
        registry: Option<String>,
        get_context: String,
    ) -> Self {
        Cluster {
            sh,
            kind,
            kubectl: Kubectl::new(sh, context, settings.namespace.clone()),
            settings,
            registry,
            get_context,
            state: state_dir(sh).join(kind.to_string()),
            local_registry: LocalRegistry::new(sh),
        }
    }

    fn record(&self) -> PathBuf {
        push::record_path(self.sh, self.kind)
    }

    fn repository(&self) -> anyhow::Result<String> {
        let Some(registry) = &self.registry else {
            bail!(
                "the kube target needs a registry the cluster can pull from: pass --registry (kind's local registry: --registry kind-registry:5000), set XTASK_REGISTRY, or add registry to deploy.yaml"
            );
        };
        Ok(format!("{registry}/{}", self.settings.image))
    }

    fn renderer(&self, model: Option<&Models>) -> Renderer<'a> {
        Renderer::new(self.sh, &self.settings, &self.state, model.map(Models::described))
    }

    /// The image this tree (and model) makes for these settings.
    fn reference(&self, model: Option<&Models>) -> anyhow::Result<String> {
        let image = Image::for_worktree(self.sh, self.repository()?)?;
        Ok(match model {
            None => image.reference(),
            Some(model) => {
                let model_image = ModelImage::new(model, image.tag(), self.state.join("model-image"))?;
                format!("{}:{}", image.repository, model_image.tag())
            }
        })
    }

    /// Adds: ask each of the app's pods, through the API server's pod proxy, which models
    /// and versions it serves (`POST /v2/repository/index`), and print one line a pod.
    fn add_pods_serving(&self, plan: &mut Plan<'a, Release>) {
        let selector = format!("app={}", self.settings.app);
        let (kubectl, body) = (self.kubectl.clone(), self.state.join("index-request.json"));
        plan.read(
            kubectl.namespaced(["get", "pods", "--selector", &selector, "--output", "json"]),
            "see `kubectl get pods`",
            move |_, json| {
                let pods: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
                // Each question is echoed as it runs, as every query is.
                if let Some(dir) = body.parent() {
                    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
                }
                std::fs::write(&body, INDEX_READY).with_context(|| format!("write {}", body.display()))?;
                for pod in pods["items"].as_array().into_iter().flatten() {
                    let name = pod["metadata"]["name"].as_str().unwrap_or("?");
                    let phase = pod["status"]["phase"].as_str().unwrap_or("?");
                    // A pod being deleted (a rollout's old one) may be gone before it is
                    // asked: it is shown as kubectl shows it, and not asked.
                    let terminating = !pod["metadata"]["deletionTimestamp"].is_null();
                    let serving = if terminating {
                        "(Terminating)".to_owned()
                    } else if phase == "Running" {
                        match canary::pod_index(&kubectl, name, &body) {
                            Ok(answer) => describe_index(&answer),
                            Err(err) => format!("(could not ask it: {err:#})"),
                        }
                    } else {
                        format!("({phase})")
                    };
                    println!("{:10}{name} serves {serving}", "pod");
                }
                Ok(())
            },
        );
    }

    /// The plan of `render`: the manifests of the image pushed from this tree.
    pub(crate) fn render_plan(&self, model: Option<&Models>) -> anyhow::Result<Plan<'a, Release>> {
        let renderer = self.renderer(model);
        renderer.check_settings()?;
        let mut plan = Plan::new();
        push::add_recorded(&mut plan, self.record(), self.reference(model)?, self.kind);
        renderer.add_render(&mut plan, &git::commit(self.sh)?, |yaml| {
            print!("{yaml}");
            Ok(())
        });
        Ok(plan)
    }

    /// The plan of `deploy`: the image pushed from this tree, applied and rolled out.
    pub(crate) fn deploy_plan(
        &self,
        model: Option<&Models>,
        rollout: Rollout,
    ) -> anyhow::Result<Plan<'a, Release>> {
        let renderer = self.renderer(model);
        renderer.check_settings()?;
        let mut plan = Plan::new();
        push::add_recorded(&mut plan, self.record(), self.reference(model)?, self.kind);
        self.kubectl
            .add_context_check(&mut plan, self.get_context.clone());
        self.add_gateway_class_check(&mut plan);
        self.add_deploy(&mut plan, &renderer, &git::commit(self.sh)?, rollout);
        Ok(plan)
    }

    /// Adds, with `traffic: gateway`: the cluster has the Gateway's class, so a wrong
    /// `gateway_class` (or a cluster without the Gateway API) is refused before anything
    /// is built, not found out when the Gateway never gets an address.
    fn add_gateway_class_check(&self, plan: &mut Plan<'a, Release>) {
        if self.settings.traffic != Traffic::Gateway {
            return;
        }
        let class = &self.settings.gateway_class;
        plan.read(
            self.kubectl.cluster_wide([
                "get",
                &format!("gatewayclasses.gateway.networking.k8s.io/{class}"),
                "--output",
                "name",
            ]),
            format!(
                "the cluster has no GatewayClass {class}: `kubectl get gatewayclasses` lists those it has (set gateway_class to one); on GKE, `gcloud container clusters update CLUSTER --gateway-api=standard` installs GKE's"
            ),
            |_, _| Ok(()),
        );
    }

    fn add_deploy(
        &self,
        plan: &mut Plan<'a, Release>,
        renderer: &Renderer<'a>,
        commit: &str,
        rollout: Rollout,
    ) {
        add_deploy(
            plan,
            renderer,
            &self.kubectl,
            &self.settings.app,
            self.state.join("rendered.yaml"),
            commit,
            rollout,
        );
    }

    /// The canary release: the new release beside the stable track, analysed; promoted
    /// (the stable Deployment takes its digest, waited on) or aborted (diagnosed, removed,
    /// and the task fails with the verdict). The stable Deployment is untouched until
    /// promotion.
    fn add_canary(
        &self,
        plan: &mut Plan<'a, Release>,
        renderer: &Renderer<'a>,
        rollout: Rollout,
        canary: &CanaryOptions,
        models: Vec<String>,
    ) -> anyhow::Result<()> {
        let (kubectl, app, traffic) = (&self.kubectl, self.settings.app.as_str(), self.settings.traffic);
        canary::add_read_stable(plan, kubectl, app, canary.percent, traffic);
        if traffic == Traffic::Gateway {
            canary::add_route_check(plan, kubectl, app);
        }
        let (source, manifest) = (
            self.state.join("canary-source.yaml"),
            self.state.join("canary.yaml"),
        );
        let commit = git::commit(self.sh)?;
        let written = source.clone();
        renderer.add_render(plan, &commit, move |yaml| {
            std::fs::write(&written, yaml).with_context(|| format!("write {}", written.display()))
        });
        plan.check(
            format!(
                "write {}: the app's Deployment as {app}{CANARY_SUFFIX}, labelled track=canary, with the pods its share needs",
                manifest.display()
            ),
            {
                let (app, manifest) = (app.to_owned(), manifest.clone());
                move |release| {
                    let yaml = std::fs::read_to_string(&source).with_context(|| format!("read {}", source.display()))?;
                    let replicas = release.canary_replicas.context("the stable track was not read")?;
                    std::fs::write(&manifest, canary::canary_manifest(&yaml, &app, replicas)?)
                        .with_context(|| format!("write {}", manifest.display()))
                }
            },
        );
        let file = manifest.display().to_string();
        plan.run(
            kubectl.cluster_wide([
                "apply",
                "--server-side",
                "--field-manager=cargo-xtask",
                "--force-conflicts",
                "--filename",
                &file,
            ]),
            "read the API server's message above",
        );
        let name = format!("deployment/{app}{CANARY_SUFFIX}");
        let timeout = format!("--timeout={}s", rollout.timeout);
        let selector = format!("app={app},{TRACK_LABEL}=canary");
        plan.run_or_else(
            kubectl.namespaced(["rollout", "status", &name, &timeout]),
            Some(image_pull_watch(kubectl, &selector)),
            |failed| {
                add_pod_diagnosis(failed, kubectl, &selector);
                canary::add_remove_canary(failed, kubectl, app, traffic, Served::Never);
                add_read_serving(failed, kubectl, app);
            },
            {
                let app = app.to_owned();
                move |release: &Release, failed: &[String]| {
                    let serving = release.serving.as_deref().unwrap_or("what it serves could not be read");
                    let others = if failed.is_empty() { String::new() } else { format!("; these steps failed too: {}", failed.join("; ")) };
                    format!(
                        "the canary's pods did not become ready (why: above); {}, and the stable track, untouched, serves {serving}{others}",
                        canary::removal(failed, &app)
                    )
                }
            },
        );
        if traffic == Traffic::Gateway {
            plan.run_or_else(
                canary::shift_traffic(kubectl, app, canary.percent),
                None,
                |failed| canary::add_remove_canary(failed, kubectl, app, traffic, Served::Never),
                {
                    let app = app.to_owned();
                    move |_: &Release, failed: &[String]| {
                        format!(
                            "the route did not take the canary's weight ({}); {}, and the stable track is untouched",
                            canary::shift_failed(&app),
                            canary::removal(failed, &app)
                        )
                    }
                },
            );
        }
        canary::add_analysis(plan, kubectl, app, models, canary);
        plan.when_checked(
            "read the canary's verdict".to_owned(),
            "the canary passed its analysis: promote it".to_owned(),
            |release: &mut Release| Ok(release.verdict.as_ref().is_some_and(|v| v.passed())),
            |promote| {
                self.add_deploy(promote, renderer, &commit, rollout);
                canary::add_remove_canary(promote, kubectl, app, traffic, Served::Maybe);
            },
        );
        plan.when_checked(
            "read the canary's verdict".to_owned(),
            "the canary failed its analysis: abort it".to_owned(),
            |release: &mut Release| Ok(release.verdict.as_ref().is_some_and(|v| !v.passed())),
            |abort| {
                // The canary goes even if its diagnosis cannot be read.
                abort.each(
                    |steps| {
                        add_pod_diagnosis(steps, kubectl, &selector);
                        canary::add_remove_canary(steps, kubectl, app, traffic, Served::Maybe);
                        add_read_serving(steps, kubectl, app);
                    },
                    "report the verdict, what became of the canary, and what the stable track serves",
                    {
                        let app = app.to_owned();
                        move |release: &mut Release, failed: &[String]| {
                            let verdict = release.verdict.as_ref().map(ToString::to_string).unwrap_or_default();
                            let serving = release.serving.as_deref().unwrap_or("what it serves could not be read");
                            bail!(
                                "the canary failed its analysis:\n{verdict}\n{}, and the stable track, untouched, serves {serving}. Fix the cause and ship again",
                                canary::removal(failed, &app)
                            )
                        }
                    },
                );
            },
        );
        Ok(())
    }

    /// Adds, for `tools`: ask the cluster (`kubectl auth can-i`) whether you may do what
    /// the plans do there; each refusal goes into the plan's list of what is missing.
    pub(crate) fn add_access_checks(&self, plan: &mut Plan<'a, Vec<String>>) {
        // Before cluster-up there is no context to ask: a pipeline checks its roles then.
        let context = self.kubectl.context.clone();
        plan.when(
            self.kubectl.context_probe(),
            format!("the kubeconfig has context {context}"),
            move |_, probe| {
                let found = has_context(probe, &context);
                if !found {
                    println!(
                        "{:40} NOT CHECKED: no such context yet (`cargo xtask cluster-up` fetches it)",
                        "cluster access"
                    );
                }
                Ok(found)
            },
            |then| self.add_can_i_checks(then),
        );
    }

    fn add_can_i_checks(&self, plan: &mut Plan<'a, Vec<String>>) {
        let namespace = &self.kubectl.namespace;
        let gateway: &[_] = match self.settings.traffic {
            Traffic::Pods => &[],
            Traffic::Gateway => &GATEWAY_PERMISSIONS,
        };
        let gke = self.settings.gke_gateway();
        let needed = PERMISSIONS
            .iter()
            .chain(gateway)
            .filter(|(_, resource, _)| gke || !resource.ends_with(".networking.gke.io"));
        for &(verb, resource, why) in needed {
            let (plural, subresource) = match resource.split_once('/') {
                Some((plural, sub)) => (plural, Some(format!("--subresource={sub}"))),
                None => (resource, None),
            };
            let ask = self.kubectl.namespaced(
                ["auth", "can-i", verb, plural]
                    .into_iter()
                    .map(str::to_owned)
                    .chain(subresource),
            );
            let shown = format!("may {verb} {resource} in {namespace}");
            plan.probe(ask, move |missing, answer| {
                match (answer.success, answer.stdout.trim()) {
                    (true, _) => println!("{shown:40} yes ({why})"),
                    // `no`, or `no - REASON` when the authorizer gave one.
                    (false, said) if said == "no" || said.starts_with("no - ") => {
                        let reason = said
                            .strip_prefix("no - ")
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default();
                        println!("{shown:40} NO{reason}: needed to {why}; ask your cluster's admin for it");
                        missing.push(format!("permission to {verb} {resource}"));
                    }
                    (false, _) => {
                        println!("{shown:40} UNKNOWN: {}", answer.stderr.trim());
                        missing.push(format!("an answer about {verb} {resource}"));
                    }
                }
                Ok(())
            });
        }
    }

    /// The plan of `promote`: the stable Deployment takes the canary's image and pod
    /// annotations (a JSON patch, the rollout waited on), then the canary goes.
    pub(crate) fn promote_plan(&self, timeout: u64) -> anyhow::Result<Plan<'a, Release>> {
        let mut plan = Plan::new();
        let (kubectl, app) = (&self.kubectl, self.settings.app.clone());
        kubectl.add_context_check(&mut plan, self.get_context.clone());
        let canary_name = format!("{app}{CANARY_SUFFIX}");
        plan.read(
            kubectl.namespaced(["get", "deployment", &canary_name, "--output", "json"]),
            format!("there is no canary of {app} to promote: `cargo xtask ship --canary PERCENT` starts one"),
            |release: &mut Release, json| {
                let canary: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
                let template = &canary["spec"]["template"];
                let image = &template["spec"]["containers"][0]["image"];
                let patch = serde_json::json!([
                    {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image},
                    {"op": "add", "path": "/spec/template/metadata/annotations",
                     "value": template["metadata"]["annotations"].as_object().cloned().unwrap_or_default()},
                    {"op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause",
                     "value": canary["metadata"]["annotations"]["kubernetes.io/change-cause"].as_str().unwrap_or("promoted from the canary")},
                ]);
                release.promotion = Some(patch.to_string());
                Ok(())
            },
        );
        let patch =
            Command::later(
                kubectl
                    .namespaced(["patch", "deployment", &app, "--type", "json", "--patch", "PATCH"])
                    .to_string()
                    .replace("PATCH", "<the canary's image and pod annotations>"),
                {
                    let (kubectl, app) = (kubectl.clone(), app.clone());
                    move |release: &Release| {
                        let patch = release.promotion.clone().context("the canary was not read")?;
                        Ok(kubectl.namespaced([
                            "patch",
                            "deployment",
                            &app,
                            "--type",
                            "json",
                            "--patch",
                            &patch,
                        ]))
                    }
                },
            );
        plan.run(patch, "read the API server's message above");
        let deployment = format!("deployment/{app}");
        let wait = format!("--timeout={timeout}s");
        plan.run(
            kubectl.namespaced(["rollout", "status", &deployment, &wait]),
            format!("the stable track did not take the canary's image: see `cargo xtask status`; `kubectl rollout undo {deployment}` goes back"),
        );
        canary::add_remove_canary(&mut plan, kubectl, &app, self.settings.traffic, Served::Maybe);
        self.add_report_serving(&mut plan, "promoted");
        Ok(plan)
    }

    /// The plan of `abort`: the canary goes; the stable track is untouched.
    pub(crate) fn abort_plan(&self) -> anyhow::Result<Plan<'a, Release>> {
        let mut plan = Plan::new();
        self.kubectl
            .add_context_check(&mut plan, self.get_context.clone());
        canary::add_remove_canary(
            &mut plan,
            &self.kubectl,
            &self.settings.app,
            self.settings.traffic,
            Served::Maybe,
        );
        self.add_report_serving(&mut plan, "aborted");
        Ok(plan)
    }

    /// Adds: read the stable Deployment and say what it serves, after `what`.
    fn add_report_serving(&self, plan: &mut Plan<'a, Release>, what: &'static str) {
        add_read_serving(plan, &self.kubectl, &self.settings.app);
        plan.check("say what the stable track serves".to_owned(), move |release| {
            println!(
                "{what}: the stable track serves {}",
                release.serving.as_deref().unwrap_or("?")
            );
            Ok(())
        });
    }

    /// The registry is the one `cargo xtask registry up` runs: start it if needed.
    fn uses_local_registry(&self) -> bool {
        let host = self.registry.as_deref().and_then(|r| r.split('/').next());
        host == Some(format!("localhost:{}", registry::DEFAULT_PORT).as_str())
    }
}

impl<'s> Target for Cluster<'s> {
    /// Image → push → (model image → push) → render, diff, apply → rollout → smoke; with
    /// a canary, the release runs beside the stable track and is analysed first.
    fn ship_plan(&self, options: &ShipOptions) -> anyhow::Result<Plan<'_, Release>> {
        let sh = self.sh;
        let model = options.model.as_ref();
        let names = model.map(Models::names).unwrap_or_default();
        if let Some(canary) = &options.canary
            && canary.check_rows.is_some()
            && names.len() > 1
        {
            bail!(
                "--check-rows gives one model's rows, and this release has {} models: without it, each model is checked with one row shaped as it declares",
                names.len()
            );
        }
        let renderer = self.renderer(model);
        renderer.check_settings()?;
        let mut plan = Plan::new();
        add_engine_check(sh, &mut plan);
        self.kubectl
            .add_context_check(&mut plan, self.get_context.clone());
        self.add_gateway_class_check(&mut plan);
        self.add_before_push(&mut plan)?;
        let image = Image::for_worktree(sh, self.repository()?)?;
        image.add_build(sh, &mut plan, options.from_source);
        push::add_push(sh, &mut plan, &image.repository, image.tag(), self.record());
        if let Some(model) = model {
            let model_image = ModelImage::new(model, image.tag(), self.state.join("model-image"))?;
            model_image.add_build_and_push(sh, &mut plan, &image.repository, self.record());
        }
        match &options.canary {
            None => self.add_deploy(&mut plan, &renderer, &git::commit(self.sh)?, options.rollout),
            Some(canary) => self.add_canary(&mut plan, &renderer, options.rollout, canary, names.clone())?,
        }
        self.add_smoke(&mut plan, Duration::from_secs(600), names)?;
        Ok(plan)
    }

    /// Deletes what the manifests created for the app (found by its label); the
    /// namespace stays, since other things may live in it.
    fn down_plan(&self) -> anyhow::Result<Plan<'_, Release>> {
        let mut plan = Plan::new();
        self.kubectl
            .add_context_check(&mut plan, self.get_context.clone());
        let selector = format!("app={}", self.settings.app);
        let mut kinds =
            "deployments,services,horizontalpodautoscalers,poddisruptionbudgets,networkpolicies".to_owned();
        if self.settings.traffic == Traffic::Gateway {
            kinds.push_str(",gateways.gateway.networking.k8s.io,httproutes.gateway.networking.k8s.io");
        }
        if self.settings.gke_gateway() {
            kinds.push_str(",healthcheckpolicies.networking.gke.io");
        }
        plan.run(
            self.kubectl.namespaced([
                "delete",
                &kinds,
                "--selector",
                &selector,
                "--ignore-not-found",
                "--wait=true",
                "--timeout=300s",
            ]),
            "read kubectl's error above; `kubectl get all --selector app=APP` shows what is left",
        );
        Ok(plan)
    }

    /// Adds: wait (bounded) for the Service's external address, then the smoke test.
    fn add_smoke<'p>(
        &'p self,
        plan: &mut Plan<'p, Release>,
        timeout: Duration,
        models: Vec<String>,
    ) -> anyhow::Result<()> {
        let (app, port, traffic) = (
            self.settings.app.clone(),
            self.settings.service_port,
            self.settings.traffic,
        );
        let kubectl = self.kubectl.clone();
        plan.check(
            format!(
                "wait up to {timeout:?} for {} {app} (context {}, namespace {}) to get an external address, then smoke test http://ADDRESS:{port}",
                entry(traffic).0, kubectl.context, kubectl.namespace
            ),
            move |_| {
                let host = wait_for_address(&kubectl, &app, traffic, timeout)?;
                let url = format!("http://{host}:{port}");
                smoke_test(&url, timeout, &models)?;
                println!("The service answers at {url}");
                print_try_it(&url, &models);
                Ok(())
            },
        );
        Ok(())
    }

    fn status_plan(&self) -> anyhow::Result<Plan<'_, Release>> {
        let mut plan = Plan::new();
        self.kubectl
            .add_context_check(&mut plan, self.get_context.clone());
        let app = self.settings.app.clone();
        let (kind, kubectl) = (self.kind, &self.kubectl);
        let (context, namespace) = (kubectl.context.clone(), kubectl.namespace.clone());
        plan.read(
            kubectl.namespaced(["get", "deployment", &app, "--output", "json"]),
            format!("nothing of {app} is deployed there: `cargo xtask ship --target {kind}`"),
            move |_, json| {
                let deployment: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
                print!("{}", describe_deployment(kind, &context, &namespace, &deployment));
                Ok(())
            },
        );
        let canary_name = format!("{app}{CANARY_SUFFIX}", app = self.settings.app);
        let stable_name = self.settings.app.clone();
        // With a gateway, the route's weights say each track's share; read with them.
        let mut get = vec![
            "get".to_owned(),
            format!("deployment/{stable_name}"),
            format!("deployment/{canary_name}"),
        ];
        if self.settings.traffic == Traffic::Gateway {
            get.push(canary::route(&stable_name));
        }
        get.extend(["--ignore-not-found", "--output", "json"].map(str::to_owned));
        plan.read(
            kubectl.namespaced(get),
            "see `kubectl get deployments`",
            move |_, json| {
                let list: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
                print!("{}", describe_tracks(&list, &canary_name));
                Ok(())
            },
        );
        self.add_pods_serving(&mut plan);
        let port = self.settings.service_port;
        let (kind, host) = entry(self.settings.traffic);
        plan.read(
            kubectl.namespaced(["get", kind, &self.settings.app, "--output", "json"]),
            format!("the Deployment runs but its {kind} is missing: ship again"),
            move |_, json| {
                let entry: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
                match host(&entry) {
                    Some(host) => println!("{:10}http://{host}:{port}", "address"),
                    None => println!("{:10}(no external address yet)", "address"),
                }
                Ok(())
            },
        );
        Ok(plan)
    }

    fn logs_plan(&self, follow: bool, tail: u32) -> anyhow::Result<Plan<'_, Release>> {
        let mut plan = Plan::new();
        self.kubectl
            .add_context_check(&mut plan, self.get_context.clone());
        let selector = format!("app={}", self.settings.app);
        let tail = format!("--tail={tail}");
        let mut args = vec![
            "logs",
            "--selector",
            &selector,
            "--all-containers",
            "--prefix",
            &tail,
        ];
        if follow {
            args.extend(["--follow", "--max-log-requests=20"]);
        }
        plan.run(
            self.kubectl.namespaced(args),
            format!("see `cargo xtask status --target {}`", self.kind),
        );
        Ok(plan)
    }
}

impl Publish for Cluster<'_> {
    fn image_repository(&self) -> anyhow::Result<String> {
        self.repository()
    }

    fn add_before_push<'p>(&'p self, plan: &mut Plan<'p, Release>) -> anyhow::Result<()> {
        if self.uses_local_registry() {
            self.local_registry
                .add_up(self.sh, plan, registry::DEFAULT_PORT)?;
        }
        Ok(())
    }
}

/// The one reader of a Service's load balancer address: the first ingress's `ip` (GKE,
/// AKS, kind's cloud provider), else its `hostname` (EKS) — never both joined — as a URL
/// writes it (an IPv6 address in brackets).
pub(crate) fn load_balancer_host(service: &Value) -> Option<String> {
    let ingress = &service["status"]["loadBalancer"]["ingress"][0];
    let address = ["ip", "hostname"]
        .iter()
        .find_map(|key| ingress[key].as_str().filter(|s| !s.is_empty()))?;
    Some(url_host(address))
}

/// The one reader of a Gateway's address: the first of `status.addresses` (an IP address
/// or a hostname), as a URL writes it.
pub(crate) fn gateway_host(gateway: &Value) -> Option<String> {
    let address = gateway["status"]["addresses"][0]["value"]
        .as_str()
        .filter(|s| !s.is_empty())?;
    Some(url_host(address))
}

/// An address as a URL's host: an IPv6 address in brackets.
fn url_host(address: &str) -> String {
    match address.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{address}]"),
        Err(_) => address.to_owned(),
    }
}

/// Where requests enter, by how traffic reaches the app: the kind of object that has the
/// address, and its reader.
fn entry(traffic: Traffic) -> (&'static str, fn(&Value) -> Option<String>) {
    match traffic {
        Traffic::Pods => ("service", load_balancer_host),
        // Named with its group: a mesh's `gateway` (Istio's) cannot be taken for it.
        Traffic::Gateway => ("gateways.gateway.networking.k8s.io", gateway_host),
    }
}

/// What `status` prints of a Deployment.
fn describe_deployment(kind: TargetKind, context: &str, namespace: &str, deployment: &Value) -> String {
    let metadata = &deployment["metadata"];
    let annotations = &metadata["annotations"];
    let status = &deployment["status"];
    let number = |value: &Value| value.as_u64().unwrap_or(0);
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:10}{value}\n"));
    line(
        "target",
        format!("{kind} (context {context}, namespace {namespace})"),
    );
    line(
        "image",
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
    );
    line(
        "model",
        deployment["spec"]["template"]["metadata"]["annotations"][MODEL_ANNOTATION]
            .as_str()
            .unwrap_or("(not recorded)")
            .to_owned(),
    );
    line(
        "replicas",
        format!(
            "{} ready of {} wanted, {} up to date",
            number(&status["readyReplicas"]),
            number(&deployment["spec"]["replicas"]),
            number(&status["updatedReplicas"])
        ),
    );
    line(
        "revision",
        format!(
            "{} ({})",
            annotations["deployment.kubernetes.io/revision"]
                .as_str()
                .unwrap_or("?"),
            annotations["kubernetes.io/change-cause"]
                .as_str()
                .unwrap_or("no change-cause")
        ),
    );
    out
}

/// The canary track, when there is one: its image, model, ready pods, and its share of
/// traffic: the route's weight for it when `list` holds the app's HTTPRoute, else its
/// ready pods' share beside the stable track's.
fn describe_tracks(list: &Value, canary_name: &str) -> String {
    let items: Vec<&Value> = match list.get("items") {
        Some(items) => items.as_array().into_iter().flatten().collect(),
        None if list.is_object() => vec![list],
        None => Vec::new(),
    };
    let ready = |d: &Value| d["status"]["readyReplicas"].as_u64().unwrap_or(0);
    let deployments: Vec<&Value> = items
        .iter()
        .copied()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    let Some(canary) = deployments.iter().find(|d| d["metadata"]["name"] == canary_name) else {
        return format!("{:10}none\n", "canary");
    };
    let stable_ready: u64 = deployments
        .iter()
        .filter(|d| d["metadata"]["name"] != canary_name)
        .map(|d| ready(d))
        .sum();
    let weights: Option<Vec<(String, u64)>> = items.iter().find(|o| o["kind"] == "HTTPRoute").map(|route| {
        route["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["name"].as_str().unwrap_or_default().to_owned(),
                    b["weight"].as_u64().unwrap_or(1),
                )
            })
            .collect()
    });
    let share = match weights {
        Some(weights) => {
            let total: u64 = weights.iter().map(|(_, w)| w).sum();
            let canary_weight: u64 = weights
                .iter()
                .filter(|(name, _)| name == canary_name)
                .map(|(_, w)| w)
                .sum();
            let percent = if total > 0 {
                canary_weight as f64 * 100.0 / total as f64
            } else {
                0.0
            };
            format!("the route sends it {percent:.0}% of requests")
        }
        None => {
            let total = stable_ready + ready(canary);
            let percent = if total > 0 {
                ready(canary) as f64 * 100.0 / total as f64
            } else {
                0.0
            };
            format!("{percent:.0}% of requests beside the stable track's {stable_ready}")
        }
    };
    let template = &canary["spec"]["template"];
    format!(
        "{:10}{} (image {}, model {}), {} of {} pods ready: {share}\n",
        "canary",
        canary_name,
        template["spec"]["containers"][0]["image"].as_str().unwrap_or("?"),
        template["metadata"]["annotations"][MODEL_ANNOTATION]
            .as_str()
            .unwrap_or("(not recorded)"),
        ready(canary),
        canary["spec"]["replicas"].as_u64().unwrap_or(0),
    )
}

/// Polls the Service (or, with `traffic: gateway`, the Gateway) until it reports an
/// address; returns it as a URL's host.
fn wait_for_address(
    kubectl: &Kubectl<'_>,
    app: &str,
    traffic: Traffic,
    timeout: Duration,
) -> anyhow::Result<String> {
    let (kind, host) = entry(traffic);
    let waited = poll_until(timeout, Duration::from_secs(2), || {
        let object = query(kubectl.namespaced(["get", kind, app, "--output", "json"]))
            .and_then(|json| serde_json::from_str::<Value>(&json).context("kubectl printed no JSON"));
        match object.map(|object| host(&object)) {
            Ok(Some(host)) => Poll::Ready(host),
            Ok(None) => Poll::Pending("no external address yet".into()),
            Err(err) => Poll::Failed(err),
        }
    });
    let why = match traffic {
        Traffic::Pods => "a cluster without a load-balancer controller, like plain kind, never gives one",
        Traffic::Gateway => {
            "a cluster without a Gateway controller never gives one: GKE's needs --gateway-api=standard, which `cargo xtask cluster-up` sets on the clusters it creates (an older cluster: `gcloud container clusters update CLUSTER --gateway-api=standard`)"
        }
    };
    match waited {
        Ok(address) => Ok(address),
        Err(WaitError::Failed(err)) => Err(err),
        Err(WaitError::TimedOut { .. }) => bail!(
            "{kind} {app} got no external address within {timeout:?}: see `kubectl describe {kind} {app} --context {} --namespace {}` ({why})",
            kubectl.context,
            kubectl.namespace
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_balancer_address_is_its_ip_else_its_hostname_as_a_url_writes_it() {
        let service =
            |ingress: Value| serde_json::json!({"status": {"loadBalancer": {"ingress": [ingress]}}});
        let both = service(serde_json::json!({"ip": "34.1.2.3", "hostname": "lb.example.com"}));
        assert_eq!(load_balancer_host(&both).as_deref(), Some("34.1.2.3"));
        let named = service(serde_json::json!({"hostname": "a1.elb.amazonaws.com"}));
        assert_eq!(
            load_balancer_host(&named).as_deref(),
            Some("a1.elb.amazonaws.com")
        );
        let six = service(serde_json::json!({"ip": "2600:1900::1"}));
        assert_eq!(load_balancer_host(&six).as_deref(), Some("[2600:1900::1]"));
        assert_eq!(load_balancer_host(&service(serde_json::json!({"ip": ""}))), None);
        assert_eq!(load_balancer_host(&serde_json::json!({"status": {}})), None);
    }
}
