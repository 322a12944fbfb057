//! Deploying to a cluster: render, apply server-side, wait for the rollout; when it
//! fails, say why (each unready pod's waiting reason, events and log tail), and roll back
//! if asked.

use anyhow::Context;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::core::paths::state_dir;
use crate::core::plan::{Plan, query};
use crate::core::settings::Settings;
use crate::steps::push::Release;
use crate::steps::render::Renderer;

/// The field manager server-side apply records for what we own.
const FIELD_MANAGER: &str = "cargo-xtask";

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
    plan: &mut Plan<'a, Release>,
    renderer: &Renderer<'a>,
    settings: &Settings,
    commit: &str,
    rollout: Rollout,
) {
    let manifest = state_dir(sh).join("gke/rendered.yaml");
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
        move |_| explain_failed_rollout(sh, &namespace, &app, rollout.rollback_on_failure),
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
