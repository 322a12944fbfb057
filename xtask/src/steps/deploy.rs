//! Deploying to a cluster: render, show what will change (`kubectl diff --server-side`),
//! apply server-side — every time, since an apply of what the cluster already holds
//! changes nothing — and wait for the rollout. When the rollout fails, say why (each
//! unready pod's state, the namespace's warnings, the failing pod's log tail), and roll
//! back if asked. Every one of those commands is a step of the plan, so `--dry-run`
//! shows them and the tests run them.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::core::plan::{Command, Judge, Plan, Probe, Watch};
use crate::steps::kubectl::Kubectl;
use crate::steps::push::Release;
use crate::steps::render::Renderer;

/// The field manager server-side apply records for what we own.
const FIELD_MANAGER: &str = "--field-manager=cargo-xtask";
/// The manifests are the truth for every field they set: a field another manager changed
/// since (`kubectl rollout undo` takes the image, `kubectl scale` the count) is taken
/// back, where a plain apply would stop at the conflict after every rollback. Fields the
/// manifests leave alone stay with their owners: a count an autoscaler keeps is never
/// in them (`render` refuses one beside an autoscaler).
const FORCE_CONFLICTS: &str = "--force-conflicts";

/// How to wait for a rollout, and what to do when it fails: the flags `ship` and
/// `deploy` share.
#[derive(clap::Args, Clone, Copy, Debug)]
pub(crate) struct Rollout {
    /// Seconds to wait for a cluster's rollout (`kubectl rollout status --timeout`).
    #[arg(long = "rollout-timeout", visible_alias = "timeout", default_value_t = 300)]
    pub(crate) timeout: u64,
    /// On a cluster, if the new pods do not become ready, `kubectl rollout undo` back to
    /// the revision before.
    #[arg(long)]
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

/// Adds: render to `manifest`, diff, apply server-side, wait for the rollout; on failure,
/// say why and (if asked) roll back.
pub(crate) fn add_deploy<'a>(
    plan: &mut Plan<'a, Release>,
    renderer: &Renderer<'a>,
    kubectl: &Kubectl<'a>,
    app: &str,
    manifest: PathBuf,
    commit: &str,
    rollout: Rollout,
) {
    let written = manifest.clone();
    renderer.add_render(plan, commit, move |yaml| {
        std::fs::write(&written, yaml).with_context(|| format!("write {}", written.display()))
    });
    let file = manifest.display().to_string();
    plan.probe(
        kubectl.cluster_wide([
            "diff",
            "--server-side",
            FIELD_MANAGER,
            FORCE_CONFLICTS,
            "--filename",
            &file,
        ]),
        |_, probe: Probe| {
            report_diff(&probe);
            Ok(())
        },
    );
    plan.probe(
        kubectl.namespaced(["get", "deployment", app, "--ignore-not-found", "--output", "json"]),
        |release, probe: Probe| {
            release.timed_out_before = probe.success && timed_out(&probe.stdout);
            Ok(())
        },
    );
    plan.run(
        kubectl.cluster_wide([
            "apply",
            "--server-side",
            FIELD_MANAGER,
            FORCE_CONFLICTS,
            "--filename",
            &file,
        ]),
        "read the API server's message above",
    );
    let deployment = format!("deployment/{app}");
    let timeout = format!("--timeout={}s", rollout.timeout);
    let rollback = rollout.rollback_on_failure;
    plan.when_checked(
        "read whether the last rollout had timed out",
        format!("it had: its {TIMED_OUT} stays until this rollout progresses, and `kubectl rollout status` would stop at it"),
        |release| Ok(release.timed_out_before),
        |after_timeout| add_progress_wait(after_timeout, kubectl, &deployment, &timeout),
    );
    plan.run_or_else(
        kubectl.namespaced(["rollout", "status", &deployment, &timeout]),
        Some(image_pull_watch(kubectl, &format!("app={app}"))),
        |diagnose| add_diagnosis(diagnose, kubectl, app, &deployment, &timeout, rollback),
        move |release: &Release, failed: &[String]| conclude(release, failed, rollback),
    );
}

/// Adds: wait until `deployment` progresses, whatever the outcome. Past a timed-out
/// rollout this lets `kubectl rollout status` judge the new one, not the old condition;
/// if it never progresses, `rollout status` reports the deadline at once.
fn add_progress_wait<'a>(
    plan: &mut Plan<'a, Release>,
    kubectl: &Kubectl<'a>,
    deployment: &str,
    timeout: &str,
) {
    plan.probe(
        kubectl.namespaced(["wait", deployment, "--for=condition=Progressing", timeout]),
        |_, _| Ok(()),
    );
}

/// The reason the deployment controller gives a rollout that made no progress within its
/// deadline. It keeps it, naming the ReplicaSet that timed out, until it sees progress —
/// even through a rollback or a new apply of an older template, where `kubectl rollout
/// status` would report it at once although the new rollout is going well.
const TIMED_OUT: &str = "ProgressDeadlineExceeded";

/// Whether the Deployment kubectl printed (nothing, when there is none) says its last
/// rollout timed out.
fn timed_out(json: &str) -> bool {
    serde_json::from_str::<Value>(json).is_ok_and(|deployment| {
        deployment["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Progressing" && c["reason"] == TIMED_OUT)
    })
}

/// Waiting reasons a pod does not recover from by itself: the kubelet keeps retrying the
/// pull, so a rollout would fail only at its deadline, minutes later.
const CANNOT_PULL: [&str; 3] = ["ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"];

/// A watch of the pods `selector` picks, for a rollout wait: it stops the wait at the first
/// pod of the release's image that cannot pull it.
pub(crate) fn image_pull_watch<'a>(kubectl: &Kubectl<'a>, selector: &str) -> Watch<'a, Release> {
    Watch::new(
        kubectl.namespaced([
            "get",
            "pods",
            "--selector",
            selector,
            "--watch",
            "--output",
            "json",
        ]),
        format!(
            "a pod of this release that cannot pull its image ({})",
            CANNOT_PULL.join(", ")
        ),
        |release: &Release| {
            let image = release.pushed()?.pinned.clone();
            Ok(Box::new(move |pod: &Value| cannot_pull(pod, &image)) as Judge)
        },
    )
}

/// Why `pod`, if it runs `image`, cannot start: the kubelet has given up pulling it for now.
fn cannot_pull(pod: &Value, image: &str) -> Option<String> {
    let runs_image = pod["spec"]["containers"]
        .as_array()?
        .iter()
        .any(|container| container["image"] == image);
    if !runs_image || !pod["metadata"]["deletionTimestamp"].is_null() {
        return None;
    }
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find_map(|status| {
            let waiting = &status["state"]["waiting"];
            let reason = waiting["reason"].as_str()?;
            CANNOT_PULL.contains(&reason).then(|| {
                format!(
                    "pod {} cannot pull {image}: {reason}: {}",
                    pod["metadata"]["name"].as_str().unwrap_or("?"),
                    waiting["message"].as_str().unwrap_or("(no message)")
                )
            })
        })
}

/// What a failed rollout left, from what was read of the cluster after it (and after the
/// rollback, if one ran), never from what the steps meant to do.
fn conclude(release: &Release, failed: &[String], rollback: bool) -> String {
    let serving = release
        .serving
        .as_deref()
        .unwrap_or("what it serves could not be read (see above)");
    let failures = if failed.is_empty() {
        String::new()
    } else {
        format!("; these steps failed too: {}", failed.join("; "))
    };
    match rollback {
        true if failed
            .iter()
            .any(|f| f.contains("rollout undo") || f.contains("rollout status")) =>
        {
            format!(
                "the new pods did not become ready (why: above), and the rollback did not complete{failures}. Read after it, the cluster serves {serving}. Roll back by hand (`kubectl rollout history` lists the revisions), then ship again"
            )
        }
        true => format!(
            "the new pods did not become ready (why: above); rolled back, and read after it the cluster serves {serving}{failures}. Fix the cause and ship again"
        ),
        false => format!(
            "the new pods did not become ready (why: above); the cluster serves {serving}{failures}. Fix the cause and ship again, or roll back with --rollback-on-failure"
        ),
    }
}

/// What a Deployment serves, as read from it: its revision and change-cause, image, and
/// how many of its pods are ready and up to date.
pub(crate) fn describe_serving(deployment: &Value) -> String {
    let annotations = &deployment["metadata"]["annotations"];
    let status = &deployment["status"];
    let count = |value: &Value| value.as_u64().unwrap_or(0);
    let cause = annotations["kubernetes.io/change-cause"]
        .as_str()
        .unwrap_or("no change-cause");
    let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("?");
    // Our change-cause names the image already; another tool's may not.
    let image = if cause.contains(&format!("image {image}")) {
        String::new()
    } else {
        format!(", image {image}")
    };
    format!(
        "revision {} ({cause}){image}, {} of {} pods ready, {} up to date",
        annotations["deployment.kubernetes.io/revision"]
            .as_str()
            .unwrap_or("?"),
        count(&status["readyReplicas"]),
        count(&deployment["spec"]["replicas"]),
        count(&status["updatedReplicas"]),
    )
}

/// What `kubectl diff` found: nothing (0), changes (1, printed), or no answer (>1).
fn report_diff(probe: &Probe) {
    match probe.code {
        Some(0) => {
            eprintln!("# the cluster already holds exactly these manifests: applying them changes nothing")
        }
        Some(1) => {
            print!("{}", probe.stdout);
            eprintln!("# applying the changes above");
        }
        _ => eprintln!(
            "# kubectl diff could not compare ({}); applying, which reports any real problem",
            probe.stderr.trim()
        ),
    }
}

/// The steps that say why a rollout failed, then roll back if asked.
fn add_diagnosis<'a>(
    plan: &mut Plan<'a, Release>,
    kubectl: &Kubectl<'a>,
    app: &str,
    deployment: &str,
    timeout: &str,
    rollback: bool,
) {
    add_pod_diagnosis(plan, kubectl, &format!("app={app}"));
    if rollback {
        plan.run(
            kubectl.namespaced(["rollout", "undo", deployment]),
            "roll back by hand: `kubectl rollout history` lists the revisions",
        );
        // Past a timed-out rollout the condition stays until the rollback progresses.
        add_progress_wait(plan, kubectl, deployment, timeout);
        plan.run(
            kubectl.namespaced(["rollout", "status", deployment, timeout]),
            "the previous revision did not become ready either: see `kubectl get pods`",
        );
    }
    // Last, whatever became of the steps above: what the cluster serves now.
    add_read_serving(plan, kubectl, app);
}

/// Adds: read what the app's Deployment serves now (into `release.serving`), for the last
/// word of a task that changed it or meant to.
pub(crate) fn add_read_serving<'a>(plan: &mut Plan<'a, Release>, kubectl: &Kubectl<'a>, app: &str) {
    plan.read(
        kubectl.namespaced(["get", "deployment", app, "--output", "json"]),
        "see `kubectl get deployment`",
        |release, json| {
            let deployment: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
            release.serving = Some(describe_serving(&deployment));
            Ok(())
        },
    );
}

/// The steps that say why pods (those `selector` picks) are not ready: each unready
/// pod's state, the namespace's warnings, latest last, and the failing pod's log tail.
pub(crate) fn add_pod_diagnosis<'a>(plan: &mut Plan<'a, Release>, kubectl: &Kubectl<'a>, selector: &str) {
    plan.read(
        kubectl.namespaced(["get", "pods", "--selector", selector, "--output", "json"]),
        "see `kubectl get pods`",
        |release, json| {
            release.failing_pod = report_unready_pods(&json)?;
            Ok(())
        },
    );
    plan.read(
        kubectl.namespaced([
            "get",
            "events",
            "--field-selector",
            "type=Warning",
            "--sort-by=.lastTimestamp",
        ]),
        "see `kubectl get events`",
        |_, events| {
            let lines: Vec<&str> = events.lines().collect();
            eprintln!("warnings in the namespace, latest last:");
            for line in &lines[lines.len().saturating_sub(12)..] {
                eprintln!("  {line}");
            }
            Ok(())
        },
    );
    let logs = Command::later(
        kubectl
            .namespaced(["logs", "POD", "--all-containers", "--tail=20"])
            .to_string()
            .replace(" POD ", " <the first pod not ready> "),
        {
            let kubectl = kubectl.clone();
            move |release: &Release| {
                let pod = release
                    .failing_pod
                    .clone()
                    .context("every pod is ready or gone: no log to read")?;
                Ok(kubectl.namespaced(["logs", &pod, "--all-containers", "--tail=20"]))
            }
        },
    );
    plan.read(logs, "see `kubectl logs`", |release, logs| {
        eprintln!(
            "the last log lines of pod {}:",
            release.failing_pod.as_deref().unwrap_or("?")
        );
        for line in logs.lines() {
            eprintln!("  | {line}");
        }
        Ok(())
    });
}

/// Prints each pod that is not ready: its phase, and each container's state with reason,
/// message, restarts and last exit. Returns the pod to read logs from: one that has
/// crashed if any, else the first unready one, else (all ready: a canary that answers
/// wrong, say) the first.
fn report_unready_pods(json: &str) -> anyhow::Result<Option<String>> {
    let pods: Value = serde_json::from_str(json).context("kubectl printed no JSON")?;
    let first = pods["items"][0]["metadata"]["name"].as_str().map(str::to_owned);
    let mut chosen: Option<(bool, String)> = None;
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
            "pod {name}: {}",
            pod["status"]["phase"].as_str().unwrap_or("unknown phase")
        );
        let mut crashed = false;
        for status in &statuses {
            let restarts = status["restartCount"].as_u64().unwrap_or(0);
            crashed |= restarts > 0;
            for (state, detail) in status["state"].as_object().into_iter().flatten() {
                eprintln!(
                    "  container {}: {state} {} {} (restarts: {restarts})",
                    status["name"].as_str().unwrap_or("?"),
                    detail["reason"].as_str().unwrap_or(""),
                    detail["message"].as_str().unwrap_or("")
                );
            }
            if let Some(last) = status["lastState"]["terminated"].as_object() {
                eprintln!(
                    "    last run: exit code {} ({})",
                    last.get("exitCode").and_then(Value::as_i64).unwrap_or(-1),
                    last.get("reason").and_then(Value::as_str).unwrap_or("")
                );
            }
        }
        if chosen.as_ref().is_none_or(|(had_crash, _)| crashed && !had_crash) {
            chosen = Some((crashed, name.to_owned()));
        }
    }
    Ok(chosen.map(|(_, name)| name).or(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_of_the_release_that_cannot_pull_its_image_stops_the_wait() {
        let pod = |image: &str, reason: &str, deleting: bool| {
            json!({
                "metadata": {"name": "web-1", "deletionTimestamp": deleting.then_some("2026-12-07T00:00:00Z")},
                "spec": {"containers": [{"name": "score", "image": image}]},
                "status": {"containerStatuses": [{"name": "score", "state": {"waiting": {"reason": reason, "message": "manifest unknown"}}}]},
            })
        };
        let new = "r/web@sha256:02";
        assert_eq!(
            cannot_pull(&pod(new, "ImagePullBackOff", false), new).as_deref(),
            Some("pod web-1 cannot pull r/web@sha256:02: ImagePullBackOff: manifest unknown")
        );
        // The first failure is retried; another image's pods, and pods going away, are not ours.
        assert_eq!(cannot_pull(&pod(new, "ErrImagePull", false), new), None);
        assert_eq!(
            cannot_pull(&pod("r/web@sha256:01", "ImagePullBackOff", false), new),
            None
        );
        assert_eq!(cannot_pull(&pod(new, "ImagePullBackOff", true), new), None);
        assert_eq!(cannot_pull(&pod(new, "ContainerCreating", false), new), None);
    }

    #[test]
    fn a_timed_out_rollout_is_read_from_the_progressing_condition() {
        let deployment = |reason: &str| {
            json!({"status": {"conditions": [
                {"type": "Available", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "reason": reason},
            ]}})
            .to_string()
        };
        assert!(timed_out(&deployment("ProgressDeadlineExceeded")));
        assert!(!timed_out(&deployment("NewReplicaSetAvailable")));
        assert!(!timed_out(""), "no Deployment yet");
    }
}
