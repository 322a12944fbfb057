//! The `gke` target: `deploy` (render, server-side apply, wait for the rollout, explain a
//! failed one), `ship --target gke` (image → push to Artifact Registry → deploy → smoke,
//! each skipped when already done) and `smoke --target gke`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::image::Image;
use crate::plan::{Plan, Probe, query};
use crate::push::{self, Pushed};
use crate::render::{Renderer, recorded_push};
use crate::settings::{Settings, SettingsArgs};
use crate::target::Target;

/// The field manager server-side apply records for what we own.
const FIELD_MANAGER: &str = "cargo-xtask";

#[derive(Args, Debug)]
pub(crate) struct DeployCmd {
    /// Seconds to wait for the rollout.
    #[arg(long, default_value_t = 300)]
    timeout: u64,

    /// If the rollout fails, `kubectl rollout undo` back to the previous revision.
    #[arg(long)]
    rollback_on_failure: bool,
}

impl DeployCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool, settings: &SettingsArgs) -> anyhow::Result<()> {
        let (settings, _) = Settings::resolve(sh, settings)?;
        recorded_push(sh)?;
        let commit = crate::git::commit(sh)?;
        let renderer = Renderer::new(sh, &settings);
        let mut plan = Plan::new();
        add_deploy(sh, &mut plan, &renderer, &settings, &commit, self.rollout());
        plan.execute(dry_run)
    }

    fn rollout(&self) -> Rollout {
        Rollout {
            timeout: self.timeout,
            rollback_on_failure: self.rollback_on_failure,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Rollout {
    pub(crate) timeout: u64,
    pub(crate) rollback_on_failure: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            timeout: 300,
            rollback_on_failure: false,
        }
    }
}

/// Adds: render, apply server-side, wait for the rollout; on failure, say why.
pub(crate) fn add_deploy<'a>(
    sh: &'a Shell,
    plan: &mut Plan<'a>,
    renderer: &Renderer<'a>,
    settings: &Settings,
    commit: &str,
    rollout: Rollout,
) {
    let manifest = crate::state_dir(sh).join("gke/rendered.yaml");
    let written = manifest.clone();
    renderer.add_render(plan, commit, move |yaml| {
        std::fs::write(&written, yaml).with_context(|| format!("write {}", written.display()))
    });
    plan.run(
        cmd!(
            sh,
            "kubectl apply --server-side --field-manager={FIELD_MANAGER} --filename {manifest}"
        ),
        "check `kubectl config current-context` (cluster-up fetches the credentials) and the error above",
    );
    let namespace = settings.namespace.clone();
    let app = settings.app.clone();
    let deployment = format!("deployment/{app}");
    let timeout = format!("--timeout={}s", rollout.timeout);
    plan.run_or_else(
        cmd!(
            sh,
            "kubectl rollout status {deployment} --namespace {namespace} {timeout}"
        ),
        "the pods above did not become ready; fix the cause and deploy again",
        move || explain_failed_rollout(sh, &namespace, &app, rollout.rollback_on_failure),
    );
}

/// Per pod that is not ready: why it waits, its recent events, its last log lines. Then,
/// if asked, roll back.
fn explain_failed_rollout(sh: &Shell, namespace: &str, app: &str, rollback: bool) -> anyhow::Result<()> {
    let selector = format!("app={app}");
    let pods = query(cmd!(
        sh,
        "kubectl get pods --namespace {namespace} --selector {selector} --output json"
    ))?;
    let pods: Value = serde_json::from_str(&pods).context("kubectl printed no JSON")?;
    for pod in pods["items"].as_array().into_iter().flatten() {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?");
        let statuses = pod["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !statuses.is_empty() && statuses.iter().all(|c| c["ready"] == true) {
            continue;
        }
        eprintln!(
            "pod {name}: phase {}",
            pod["status"]["phase"].as_str().unwrap_or("?")
        );
        for status in &statuses {
            for (state, detail) in status["state"].as_object().into_iter().flatten() {
                let reason = detail["reason"].as_str().unwrap_or("");
                let message = detail["message"].as_str().unwrap_or("");
                eprintln!(
                    "  container {}: {state} {reason} {message}",
                    status["name"].as_str().unwrap_or("?")
                );
            }
        }
        let field = format!("involvedObject.name={name}");
        let events = query(cmd!(
            sh,
            "kubectl get events --namespace {namespace} --field-selector {field} --sort-by=.lastTimestamp"
        ))
        .unwrap_or_default();
        for line in events.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
            eprintln!("  {line}");
        }
        let logs = query(cmd!(
            sh,
            "kubectl logs {name} --namespace {namespace} --all-containers --tail=20"
        ))
        .unwrap_or_default();
        for line in logs.lines() {
            eprintln!("  | {line}");
        }
    }
    if rollback {
        let deployment = format!("deployment/{app}");
        cmd!(sh, "kubectl rollout undo {deployment} --namespace {namespace}").run()?;
    }
    Ok(())
}

/// `ship --target gke`: each step skipped when already done.
pub(crate) fn ship_plan<'a>(
    sh: &'a Shell,
    settings: &'a Settings,
    renderer: &'a Renderer<'a>,
    from_source: bool,
) -> anyhow::Result<Plan<'a>> {
    let image = Image::for_worktree(sh, settings.image_repository())?;
    let record = push::record_path(sh, Target::Gke);
    let mut plan = Plan::new();
    crate::docker::add_engine_check(sh, &mut plan);

    // Image and push, unless Artifact Registry already holds this tree's tag; either way
    // the digest is recorded for the deploy below.
    let reference = image.reference();
    let digest_format = "--format=value(image_summary.digest)";
    let found = Pushed {
        tag: image.tag().to_owned(),
        image: reference.clone(),
        pinned: String::new(),
    };
    let (repository, found_record) = (image.repository.clone(), record.clone());
    plan.when(
        cmd!(
            sh,
            "gcloud artifacts docker images describe {reference} {digest_format}"
        ),
        format!("{reference} is not in Artifact Registry yet"),
        move |probe: &Probe| {
            if probe.success {
                let digest = probe.stdout.trim();
                if !digest.starts_with("sha256:") {
                    bail!("gcloud printed {digest:?}, not a digest");
                }
                let pushed = Pushed {
                    pinned: format!("{repository}@{digest}"),
                    ..found
                };
                std::fs::create_dir_all(found_record.parent().expect("sits in a directory"))?;
                std::fs::write(&found_record, serde_json::to_string_pretty(&pushed)?)?;
                return Ok(false);
            }
            if probe.says_not_found() {
                return Ok(true);
            }
            Err(crate::cluster::gcloud_error(probe))
        },
        |then| {
            image.add_build(sh, then, from_source);
            push::add_push(sh, then, &image, record.clone());
        },
    );

    // Deploy, unless the Deployment already runs exactly that digest.
    let namespace = settings.namespace.clone();
    let app = settings.app.clone();
    let jsonpath = "--output=jsonpath={.spec.template.spec.containers[0].image}";
    let deployed_record = record.clone();
    let commit = image.revision.commit.clone();
    plan.when(
        cmd!(
            sh,
            "kubectl get deployment {app} --namespace {namespace} {jsonpath}"
        ),
        "the cluster does not run the recorded digest yet",
        move |probe: &Probe| {
            let pinned = push::read_record(&deployed_record)
                .map(|p| p.pinned)
                .unwrap_or_default();
            if probe.success {
                return Ok(probe.stdout.trim() != pinned);
            }
            if probe.says_not_found() {
                return Ok(true);
            }
            bail!("kubectl cannot read the deployment: {}", probe.stderr.trim())
        },
        |then| add_deploy(sh, then, renderer, settings, &commit, Rollout::default()),
    );
    add_gke_smoke(sh, &mut plan, settings, Duration::from_secs(600), None);
    Ok(plan)
}

/// Adds: wait (bounded) for the Service's external IP, then the tutorial request.
pub(crate) fn add_gke_smoke<'a>(
    sh: &'a Shell,
    plan: &mut Plan<'a>,
    settings: &Settings,
    timeout: Duration,
    model: Option<String>,
) {
    let (namespace, app, port) = (
        settings.namespace.clone(),
        settings.app.clone(),
        settings.service_port,
    );
    plan.check(
        format!("wait up to {timeout:?} for service {app} in {namespace} to get an external IP, then smoke test http://IP:{port}"),
        move || {
            let ip = wait_for_external_ip(sh, &namespace, &app, timeout)?;
            crate::smoke::smoke_test(&format!("http://{ip}:{port}"), timeout, model.as_deref())
        },
    );
}

fn wait_for_external_ip(sh: &Shell, namespace: &str, app: &str, timeout: Duration) -> anyhow::Result<String> {
    let jsonpath = "--output=jsonpath={.status.loadBalancer.ingress[0].ip}";
    let started = Instant::now();
    loop {
        let ip = query(cmd!(
            sh,
            "kubectl get service {app} --namespace {namespace} {jsonpath}"
        ))?;
        if !ip.trim().is_empty() {
            return Ok(ip.trim().to_owned());
        }
        if started.elapsed() > timeout {
            bail!(
                "service {app} got no external IP within {timeout:?}: see `kubectl describe service {app} --namespace {namespace}`"
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}
