//! A canary release on a cluster: the new release runs beside the stable one as a second
//! Deployment, `APP-canary` (its pods carry the app's label, and `track: canary`). With
//! `traffic: pods` it is behind the same Service, its share of traffic its share of ready
//! pods; with `traffic: gateway` the Gateway's HTTPRoute gives it exactly its percentage,
//! per request, once its pods are ready, and takes it back before it is removed. The
//! stable Deployment is not touched until promotion.
//!
//! The analysis knows it serves a model: over the window it reads both tracks' own
//! `/metrics` through the API server's pod proxy (no port-forward, no Prometheus) and
//! compares their request rates, 4xx and 5xx rates and latency quantiles; and it sends
//! the same check rows to a pod of each track, so a model that answers differently is
//! caught before users see it. Pass: the stable Deployment takes the canary's digest (a
//! normal rollout, waited on), then the canary goes. Fail: the canary's pods are
//! diagnosed, the canary goes, the stable track is untouched, and the task fails with the
//! figures that decided it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xshell::Cmd;

use crate::core::plan::{Plan, query};
use crate::core::settings::{STABLE_SUFFIX, Traffic};
use crate::steps::deploy::describe_serving;
use crate::steps::kubectl::Kubectl;
use crate::steps::push::Release;
use crate::steps::smoke::{INDEX_READY, REQUEST, escaped, score_request};
use crate::steps::tracks::{Figures, Snapshot, Thresholds, Verdict, agree, canary_replicas};

/// The API server's path to `path` on port `port` of `pod`: the pod proxy, which reaches
/// a pod wherever the xtask runs, through the credentials kubectl already has.
pub(crate) fn pod_proxy(namespace: &str, pod: &str, port: &str, path: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}")
}

/// What `pod` serves, as its answer to `POST /v2/repository/index` says, asked through the
/// pod proxy with the body in `request` (`INDEX_READY`: ready versions only).
pub(crate) fn pod_index(
    kubectl: &Kubectl<'_>,
    pod: &str,
    request: &std::path::Path,
) -> anyhow::Result<String> {
    let path = pod_proxy(&kubectl.namespace, pod, "http", "/v2/repository/index");
    let request = request.display().to_string();
    query(kubectl.cluster_wide(["create", "--raw", &path, "--filename", &request]))
}

/// A pod's own `/metrics`, read through the pod proxy.
fn pod_metrics(kubectl: &Kubectl<'_>, pod: &str) -> anyhow::Result<Snapshot> {
    let path = pod_proxy(&kubectl.namespace, pod, "metrics", "/metrics");
    query(kubectl.cluster_wide(["get", "--raw", &path])).map(|text| Snapshot::parse(&text))
}

/// The label that tells the tracks apart; stable pods do not carry it.
pub(crate) const TRACK_LABEL: &str = "track";
pub(crate) use crate::core::settings::CANARY_SUFFIX;

/// What `ship --canary` was asked for.
#[derive(Clone, Debug)]
pub(crate) struct CanaryOptions {
    /// The share of traffic asked for, in percent.
    pub(crate) percent: u8,
    /// How long the analysis watches both tracks.
    pub(crate) duration: Duration,
    /// Rows to send both tracks (a /score body, with `expected` answers or not), instead
    /// of the smoke row.
    pub(crate) check_rows: Option<PathBuf>,
    /// How far a canary's answer may be from the stable one's (or the expected one).
    pub(crate) tolerance: f64,
    pub(crate) thresholds: Thresholds,
}

/// The canary Deployment of `app` in the rendered manifests `yaml`: the app's Deployment
/// renamed, labelled `track: canary` (template and selector), with `replicas` pods. The
/// stable Deployment's own selector (`app`) cannot change, so it selects canary pods
/// too; each Deployment counts only the pods of ReplicaSets it owns.
pub(crate) fn canary_manifest(yaml: &str, app: &str, replicas: u64) -> anyhow::Result<String> {
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let mut value: Value =
            serde::Deserialize::deserialize(document).context("the rendered manifests are not YAML")?;
        if value["kind"] != "Deployment" || value["metadata"]["name"] != app {
            continue;
        }
        let name = format!("{app}{CANARY_SUFFIX}");
        value["metadata"]["name"] = json!(name);
        value["metadata"]["labels"][TRACK_LABEL] = json!("canary");
        value["spec"]["replicas"] = json!(replicas);
        value["spec"]["selector"]["matchLabels"][TRACK_LABEL] = json!("canary");
        value["spec"]["template"]["metadata"]["labels"][TRACK_LABEL] = json!("canary");
        return Ok(serde_yaml::to_string(&value)?);
    }
    bail!("the rendered manifests hold no Deployment {app:?}")
}

/// Adds the analysis: the figures of both tracks over the window, the check rows, and the
/// verdict (in `release.verdict`), printed whatever it is.
pub(crate) fn add_analysis<'a>(
    plan: &mut Plan<'a, Release>,
    kubectl: &Kubectl<'a>,
    app: &str,
    models: Vec<String>,
    options: &CanaryOptions,
) {
    let proxy = |pod: &str, port: &str, path: &str| pod_proxy(&kubectl.namespace, pod, port, path);
    let rows = match &options.check_rows {
        Some(file) => format!("the rows of {}", file.display()),
        None if models.len() > 1 => format!(
            "each of its {} models one row shaped as it declares (the smoke rows; a model the stable track does not serve must answer, and one it serves must agree)",
            models.len()
        ),
        None => "one row shaped as the model declares (the smoke row)".to_owned(),
    };
    let description = format!(
        "analyse for {:?}: list both tracks' ready pods ($ kubectl get pods --selector app={app}); send {rows} to one pod of each track ($ kubectl create --raw {} --filename ROWS); read each pod's /metrics through the API server's pod proxy before and after the window ($ kubectl get --raw {}); fail on answers that differ by more than {} (relative), fewer than {} canary requests, a 5xx rate over stable's by {} percentage points, a 4xx rate by {}, or a p99 latency over {}x stable's and {} ms more",
        options.duration,
        proxy("POD", "http", "/score"),
        proxy("POD", "metrics", "/metrics"),
        options.tolerance,
        options.thresholds.min_requests,
        options.thresholds.max_server_error_rate * 100.0,
        options.thresholds.max_client_error_rate * 100.0,
        options.thresholds.max_latency_ratio,
        options.thresholds.latency_slack_ms,
    );
    let analysis = Analysis {
        kubectl: kubectl.clone(),
        app: app.to_owned(),
        models,
        options: options.clone(),
    };
    plan.check(description, move |release| {
        // An analysis that cannot run is a verdict too: the canary is not promoted, and
        // the abort below still removes it.
        let verdict = analysis
            .run()
            .unwrap_or_else(|err| Verdict::unable(format!("the analysis could not run: {err:#}")));
        println!("canary analysis over {:?}:\n{verdict}", analysis.options.duration);
        release.verdict = Some(verdict);
        Ok(())
    });
}

/// What the analysis needs, owned so the step can run later.
struct Analysis<'a> {
    kubectl: Kubectl<'a>,
    app: String,
    /// The release's models: with several, each is checked on `/score/{name}`.
    models: Vec<String>,
    options: CanaryOptions,
}

impl Analysis<'_> {
    fn proxy(&self, pod: &str, port: &str, path: &str) -> String {
        pod_proxy(&self.kubectl.namespace, pod, port, path)
    }

    /// Both tracks' ready pods: (stable, canary).
    fn pods(&self) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let selector = format!("app={}", self.app);
        let json =
            query(
                self.kubectl
                    .namespaced(["get", "pods", "--selector", &selector, "--output", "json"]),
            )?;
        let pods: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
        let (mut stable, mut canary) = (Vec::new(), Vec::new());
        for pod in pods["items"].as_array().into_iter().flatten() {
            let ready = pod["status"]["conditions"].as_array().is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if !ready || !pod["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            match pod["metadata"]["labels"][TRACK_LABEL].as_str() {
                Some("canary") => canary.push(name),
                _ => stable.push(name),
            }
        }
        if stable.is_empty() || canary.is_empty() {
            bail!(
                "no ready pod in the {} track: the analysis needs both (see `cargo xtask status`)",
                if stable.is_empty() { "stable" } else { "canary" }
            );
        }
        Ok((stable, canary))
    }

    /// Each pod's `/metrics`, in the order of `pods`.
    fn metrics(&self, pods: &[String]) -> anyhow::Result<Vec<Snapshot>> {
        pods.iter().map(|pod| pod_metrics(&self.kubectl, pod)).collect()
    }

    /// The body of the check request, and the answer expected of the canary, if given.
    /// The smoke row is shaped as the canary's model `model` declares (the new one).
    fn check_body(&self, canary_pod: &str, model: Option<&str>) -> anyhow::Result<(String, Option<Value>)> {
        if let Some(file) = &self.options.check_rows {
            let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
            let rows: Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            if rows.get("X").is_none() {
                bail!(
                    "{} has no \"X\": give the rows as a /score body, with \"expected\" answers or not",
                    file.display()
                );
            }
            return Ok((json!({"X": rows["X"]}).to_string(), rows.get("expected").cloned()));
        }
        let Some(model) = model else {
            return Ok((REQUEST.to_owned(), None));
        };
        let metadata: Value = serde_json::from_str(&self.metadata(canary_pod, model)?)
            .context("the model's metadata is not JSON")?;
        let inputs = metadata["inputs"].as_array().cloned().unwrap_or_default();
        Ok((score_request(&inputs).to_string(), None))
    }

    /// `model`'s metadata as `pod` serves it, through the proxy.
    fn metadata(&self, pod: &str, model: &str) -> anyhow::Result<String> {
        let path = self.proxy(pod, "http", &format!("/v2/models/{}", escaped(model)));
        query(self.kubectl.cluster_wide(["get", "--raw", &path]))
    }

    /// The models `pod` serves, as its repository index says (ready versions only).
    fn served(&self, pod: &str, file: &std::path::Path) -> anyhow::Result<Vec<String>> {
        std::fs::write(file, INDEX_READY).with_context(|| format!("write {}", file.display()))?;
        let index: Value = serde_json::from_str(&pod_index(&self.kubectl, pod, file)?)
            .with_context(|| format!("pod {pod}'s repository index is not JSON"))?;
        let entries = index
            .as_array()
            .with_context(|| format!("pod {pod}'s repository index is not a list: {index}"))?;
        Ok(entries
            .iter()
            .filter_map(|entry| entry["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// POSTs the body in `file` to `path` of `pod`, through the proxy.
    fn post(&self, pod: &str, path: &str, file: &std::path::Path) -> anyhow::Result<Value> {
        let path = self.proxy(pod, "http", path);
        let file = file.display().to_string();
        let answer = query(
            self.kubectl
                .cluster_wide(["create", "--raw", &path, "--filename", &file]),
        )?;
        serde_json::from_str(&answer).with_context(|| format!("pod {pod} answered {answer:?}"))
    }

    /// Sends the check rows to a pod of each track and compares the answers: on `/score`
    /// for one model where the stable track serves one; else each model's own row on
    /// `/score/{name}`, where a model the stable track does not serve has only to answer.
    fn check(&self, stable_pod: &str, canary_pod: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let file = std::env::temp_dir().join(format!("xtask-canary-rows-{}.json", std::process::id()));
        let compared = (|| match self.models.as_slice() {
            [] => self.check_one(stable_pod, canary_pod, None, "/score", &file),
            // Rows from a file are a `/score` body.
            [model] if self.options.check_rows.is_some() => {
                self.check_one(stable_pod, canary_pod, Some(model), "/score", &file)
            }
            models => {
                let served = self.served(stable_pod, &file)?;
                match models {
                    // One model in place of one, renamed or not: what `/score`'s clients
                    // get, compared.
                    [model] if served.len() == 1 => {
                        self.check_one(stable_pod, canary_pod, Some(model), "/score", &file)
                    }
                    _ => self.check_each(stable_pod, canary_pod, models, &served, &file),
                }
            }
        })();
        let _ = std::fs::remove_file(&file);
        compared
    }

    /// Each model's check row on `/score/{name}`, each line named by its model: compared
    /// where the stable track serves the model (`served`), answered where it is new.
    fn check_each(
        &self,
        stable_pod: &str,
        canary_pod: &str,
        models: &[String],
        served: &[String],
        file: &std::path::Path,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let (mut checks, mut disagreements) = (Vec::new(), Vec::new());
        for model in models {
            let path = format!("/score/{}", escaped(model));
            let (shown, disagreed) = if served.contains(model) {
                self.check_one(stable_pod, canary_pod, Some(model), &path, file)
                    .with_context(|| format!("model {model}"))?
            } else {
                self.check_new(canary_pod, model, &path, file)?
            };
            checks.extend(shown.into_iter().map(|line| format!("{model}: {line}")));
            disagreements.extend(disagreed.into_iter().map(|line| format!("{model}: {line}")));
        }
        Ok((checks, disagreements))
    }

    /// The check rows of `model` on `path` of both tracks, compared.
    fn check_one(
        &self,
        stable_pod: &str,
        canary_pod: &str,
        model: Option<&str>,
        path: &str,
        file: &std::path::Path,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let (body, expected) = self.check_body(canary_pod, model)?;
        std::fs::write(file, &body).with_context(|| format!("write {}", file.display()))?;
        let (stable, canary) = (
            self.post(stable_pod, path, file),
            self.post(canary_pod, path, file),
        );
        compare_answers(&body, expected, stable, canary, self.options.tolerance)
    }

    /// The check row of a model only the canary serves: it must answer.
    fn check_new(
        &self,
        canary_pod: &str,
        model: &str,
        path: &str,
        file: &std::path::Path,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let (body, _) = self.check_body(canary_pod, Some(model))?;
        std::fs::write(file, &body).with_context(|| format!("write {}", file.display()))?;
        Ok(match self.post(canary_pod, path, file) {
            Ok(answer) => (
                vec![format!(
                    "{body} -> canary {answer} (new: the stable track does not serve it)"
                )],
                Vec::new(),
            ),
            Err(err) => (
                vec![format!("{body} -> canary: no answer")],
                vec![format!("the canary did not answer the check rows: {err:#}")],
            ),
        })
    }

    fn run(&self) -> anyhow::Result<Verdict> {
        let (stable, canary) = self.pods()?;
        let (checks, disagreements) = self.check(&stable[0], &canary[0])?;
        // Read after the check rows, so their answers (a 4xx, say) are not in the figures.
        let before = (self.metrics(&stable)?, self.metrics(&canary)?);
        eprintln!("# watching both tracks for {:?}", self.options.duration);
        std::thread::sleep(self.options.duration);
        let after = (self.metrics(&stable)?, self.metrics(&canary)?);
        let duration = self.options.duration;
        Ok(Verdict::decide(
            Figures::of(&Snapshot::window(&before.0, &after.0), duration),
            Figures::of(&Snapshot::window(&before.1, &after.1), duration),
            &self.options.thresholds,
            checks,
            disagreements,
        ))
    }
}

/// The check rows' answers compared: the lines to show, and the disagreements. The canary
/// must answer, and agree with the `expected` answers if the rows give them, else with the
/// stable track's; without expected answers, a stable track that cannot answer leaves
/// nothing to compare with.
fn compare_answers(
    body: &str,
    expected: Option<Value>,
    stable: anyhow::Result<Value>,
    canary: anyhow::Result<Value>,
    tolerance: f64,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let shown = |answer: &anyhow::Result<Value>| match answer {
        Ok(answer) => answer.to_string(),
        Err(err) => format!("no answer ({err:#})"),
    };
    let mut checks = vec![format!(
        "{body} -> stable {}, canary {}",
        shown(&stable),
        shown(&canary)
    )];
    let reference = match (expected, stable) {
        (Some(expected), _) => {
            checks.push(format!("expected {expected}"));
            (expected, "the expected answer")
        }
        (None, Ok(stable)) => (stable, "the stable track's"),
        // A new model may take rows the old one refuses: then only expected answers
        // can say whether the canary is right.
        (None, Err(err)) => bail!(
            "the stable track did not answer the check rows ({err:#}): if the new model takes other input, give the answers it must give as \"expected\" beside \"X\" in --check-rows FILE (which takes one model's rows: canary a model of several alone)"
        ),
    };
    let disagreement = match canary {
        Err(err) => Some(format!("the canary did not answer the check rows: {err:#}")),
        Ok(canary) if !agree(&canary, &reference.0, tolerance) => Some(format!(
            "the canary answered {canary} where {} is {} (beyond a tolerance of {tolerance})",
            reference.1, reference.0
        )),
        Ok(_) => None,
    };
    Ok((checks, disagreement.into_iter().collect()))
}

/// Adds: read the stable Deployment, which a canary needs beside it, and keep its count.
pub(crate) fn add_read_stable<'a>(
    plan: &mut Plan<'a, Release>,
    kubectl: &Kubectl<'a>,
    app: &str,
    percent: u8,
    traffic: Traffic,
) {
    plan.read(
        kubectl.namespaced(["get", "deployment", app, "--output", "json"]),
        format!("there is no stable release of {app} to compare a canary with: ship without --canary first"),
        move |release, json| {
            let deployment: Value = serde_json::from_str(&json).context("kubectl printed no JSON")?;
            let stable = deployment["spec"]["replicas"].as_u64().unwrap_or(1).max(1);
            let (replicas, share) = canary_replicas(stable, percent);
            let split = match traffic {
                Traffic::Pods => format!(
                    "{:.0}% of requests (asked {percent}%: traffic follows ready pods)",
                    share * 100.0
                ),
                Traffic::Gateway => format!("the route sends it {percent}% of requests"),
            };
            eprintln!(
                "# the stable track serves {}; the canary gets {replicas} pod(s) beside its {stable}: {split}",
                describe_serving(&deployment)
            );
            release.canary_replicas = Some(replicas);
            Ok(())
        },
    );
}

/// The JSON patch that gives the canary `percent` of the app's HTTPRoute's requests and
/// the stable track the rest. Its `test` operations refuse a route whose first rule does
/// not weight the two tracks' Services, stable first, as the manifests write it.
pub(crate) fn route_weights(app: &str, percent: u8) -> String {
    let backend = |index: usize| format!("/spec/rules/0/backendRefs/{index}");
    json!([
        {"op": "test", "path": format!("{}/name", backend(0)), "value": format!("{app}{STABLE_SUFFIX}")},
        {"op": "test", "path": format!("{}/name", backend(1)), "value": format!("{app}{CANARY_SUFFIX}")},
        {"op": "replace", "path": format!("{}/weight", backend(0)), "value": 100 - u32::from(percent)},
        {"op": "replace", "path": format!("{}/weight", backend(1)), "value": percent},
    ])
    .to_string()
}

/// The app's HTTPRoute, named with its group: another API's `httproute` (a mesh's) cannot
/// be taken for it.
pub(crate) fn route(app: &str) -> String {
    format!("httproutes.gateway.networking.k8s.io/{app}")
}

/// With `traffic: gateway`: the command that gives the canary `percent` of requests.
pub(crate) fn shift_traffic<'a>(kubectl: &Kubectl<'a>, app: &str, percent: u8) -> Cmd<'a> {
    kubectl.namespaced([
        "patch",
        &route(app),
        "--type",
        "json",
        "--patch",
        &route_weights(app, percent),
    ])
}

/// Adds, with `traffic: gateway`, before a canary starts: the route the canary's share
/// will be moved on exists (a stable track shipped with `traffic: pods` has none).
pub(crate) fn add_route_check<'a>(plan: &mut Plan<'a, Release>, kubectl: &Kubectl<'a>, app: &str) {
    plan.read(
        kubectl.namespaced(["get", &route(app), "--output", "name"]),
        format!(
            "there is no route {}: ship once with --traffic gateway and no canary, which creates the Gateway and its route, then the canary",
            route(app)
        ),
        |_, _| Ok(()),
    );
}

/// Where to look when the route does not take a weight.
pub(crate) fn shift_failed(app: &str) -> String {
    format!(
        "see `kubectl get {} --output yaml`: its first rule must weight {app}{STABLE_SUFFIX} and {app}{CANARY_SUFFIX}, as manifests/components/gateway/route.yaml does",
        route(app)
    )
}

/// Whether the route may have sent the canary requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Its pods never became ready, or the route never took its weight.
    Never,
    /// It was given its share.
    Maybe,
}

/// How long a canary behind a gateway must answer no request before it is removed, and
/// the longest that wait may take: a cloud's load balancer applies a route's weights a
/// while after the API server stores them (GKE's, up to a few minutes).
const QUIET: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Adds: take the canary's share of requests back (with `traffic: gateway`), then, if it
/// was `served`, wait until it answers no more, then delete the canary Deployment (and so
/// its pods), waiting until they are gone. Where the route could not be moved back, or
/// requests keep coming, the canary is kept: they would otherwise be routed to nothing.
pub(crate) fn add_remove_canary<'a>(
    plan: &mut Plan<'a, Release>,
    kubectl: &Kubectl<'a>,
    app: &str,
    traffic: Traffic,
    served: Served,
) {
    let canary = format!("deployment/{app}{CANARY_SUFFIX}");
    let delete = move |plan: &mut Plan<'a, Release>| {
        plan.run(
            kubectl.namespaced([
                "delete",
                &canary,
                "--ignore-not-found",
                "--wait=true",
                "--timeout=120s",
            ]),
            format!("delete it by hand: `kubectl delete {canary}`"),
        );
    };
    match traffic {
        Traffic::Pods => delete(plan),
        Traffic::Gateway => {
            plan.read(shift_traffic(kubectl, app, 0), shift_failed(app), |release, _| {
                release.canary_unrouted = true;
                Ok(())
            });
            plan.when_checked(
                "read whether the route took the canary's share back",
                "the route sends the canary nothing",
                |release: &mut Release| Ok(release.canary_unrouted),
                |then| {
                    if served == Served::Maybe {
                        add_wait_for_drain(then, kubectl, app);
                    }
                    delete(then);
                },
            );
        }
    }
}

/// The step that waits until the canary's pods have answered no request for [`QUIET`],
/// read from their own `/metrics` through the pod proxy: the load balancer has applied
/// the route. Named in `removal`.
const DRAIN: &str = "wait until the canary's pods answer no request";

fn add_wait_for_drain<'a>(plan: &mut Plan<'a, Release>, kubectl: &Kubectl<'a>, app: &str) {
    let (kubectl, selector) = (kubectl.clone(), format!("app={app},{TRACK_LABEL}=canary"));
    plan.check(
        format!(
            "{DRAIN} for {QUIET:?} (at most {DRAIN_TIMEOUT:?}; $ kubectl get pods --selector {selector}, $ kubectl get --raw {}): the load balancer has applied the route",
            pod_proxy(&kubectl.namespace, "POD", "metrics", "/metrics")
        ),
        move |_| {
            // Requests the canary's pods have answered, or None when it has none.
            let answered = || -> anyhow::Result<Option<f64>> {
                let list: Value = serde_json::from_str(&query(kubectl.namespaced([
                    "get",
                    "pods",
                    "--selector",
                    &selector,
                    "--output",
                    "json",
                ]))?)?;
                let pods = list["items"].as_array().cloned().unwrap_or_default();
                if pods.is_empty() {
                    return Ok(None);
                }
                let mut total = 0.0;
                for pod in &pods {
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    total += pod_metrics(&kubectl, name)?.by_status.values().sum::<f64>();
                }
                Ok(Some(total))
            };
            let start = std::time::Instant::now();
            let Some(first) = answered()? else {
                eprintln!("# the canary has no pods: nothing to wait for");
                return Ok(());
            };
            let (mut last, mut since) = (Some(first), std::time::Instant::now());
            while since.elapsed() < QUIET {
                if start.elapsed() > DRAIN_TIMEOUT {
                    bail!(
                        "the canary still answered requests {DRAIN_TIMEOUT:?} after the route took its share back"
                    );
                }
                std::thread::sleep(Duration::from_secs(1));
                let now = answered()?;
                if now != last {
                    (last, since) = (now, std::time::Instant::now());
                }
            }
            eprintln!(
                "# the canary answered no request for {QUIET:?}, {:.0?} after the route took its share back",
                start.elapsed()
            );
            Ok(())
        },
    );
}

/// What became of the canary, from which clean-up steps `failed`: removed, or kept where
/// the route could not take its share back, or left where its deletion failed.
pub(crate) fn removal(failed: &[String], app: &str) -> String {
    let route = route(app);
    if let Some(step) = failed
        .iter()
        .find(|step| step.contains(&format!(" patch {route} ")))
    {
        return format!(
            "the route could NOT be moved back to the stable track ({step}), so the canary was KEPT to answer the requests it may still get: move them with `kubectl patch {route} --type json --patch '{}'`, then `cargo xtask abort`",
            route_weights(app, 0)
        );
    }
    if let Some(step) = failed.iter().find(|step| step.contains(DRAIN)) {
        return format!(
            "the route takes no request to the canary, but the canary's pods were not seen to stop answering ({step}), so the canary was KEPT: once the load balancer has applied the route, `cargo xtask abort` removes it"
        );
    }
    match failed
        .iter()
        .find(|step| step.contains(&format!(" delete deployment/{app}{CANARY_SUFFIX} ")))
    {
        Some(step) => format!(
            "the canary could NOT be removed ({step}): delete it by hand, `kubectl delete deployment/{app}{CANARY_SUFFIX}`, so it stops taking traffic"
        ),
        None => "the canary was removed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_is_the_apps_deployment_renamed_and_labelled() {
        let rendered = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  replicas: 4\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: score\n        image: r/i@sha256:01\n";
        let canary: Value = serde_yaml::from_str(&canary_manifest(rendered, "web", 1).unwrap()).unwrap();
        assert_eq!(canary["metadata"]["name"], "web-canary");
        assert_eq!(canary["spec"]["replicas"], 1);
        assert_eq!(
            canary["spec"]["selector"]["matchLabels"],
            json!({"app": "web", "track": "canary"})
        );
        assert_eq!(
            canary["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web", "track": "canary"})
        );
        assert_eq!(
            canary["spec"]["template"]["spec"]["containers"][0]["image"],
            "r/i@sha256:01"
        );
        assert!(canary_manifest(rendered, "other", 1).is_err());
    }

    #[test]
    fn check_rows_compare_with_the_expected_answers_else_the_stable_tracks() {
        let body = r#"{"X": [[1, 2]]}"#;
        let refused = || Err(anyhow::anyhow!("400: X holds rows of shape [2]"));
        // Expected answers given: the stable track need not answer (a new input shape).
        let (checks, disagreements) = compare_answers(
            body,
            Some(json!({"score": [3]})),
            refused(),
            Ok(json!({"score": [3]})),
            1e-6,
        )
        .unwrap();
        assert!(disagreements.is_empty(), "{disagreements:?}");
        assert!(
            checks[0].contains("stable no answer (400: X holds rows"),
            "{checks:?}"
        );
        let (_, disagreements) = compare_answers(
            body,
            Some(json!({"score": [3]})),
            refused(),
            Ok(json!({"score": [4]})),
            1e-6,
        )
        .unwrap();
        assert!(
            disagreements[0].contains("where the expected answer is"),
            "{disagreements:?}"
        );
        // None given: the stable track's answer is the reference, and without it there is none.
        let (_, disagreements) = compare_answers(
            body,
            None,
            Ok(json!({"score": [3.0]})),
            Ok(json!({"score": [3.5]})),
            1e-6,
        )
        .unwrap();
        assert!(
            disagreements[0].contains("where the stable track's is"),
            "{disagreements:?}"
        );
        let err = compare_answers(body, None, refused(), Ok(json!({"score": [3]})), 1e-6).unwrap_err();
        assert!(
            err.to_string()
                .contains("give the answers it must give as \"expected\""),
            "{err}"
        );
        // A canary that cannot answer disagrees.
        let (_, disagreements) =
            compare_answers(body, None, Ok(json!({"score": [3]})), refused(), 1e-6).unwrap();
        assert!(
            disagreements[0].contains("the canary did not answer the check rows: 400"),
            "{disagreements:?}"
        );
    }

    #[test]
    fn the_route_patch_moves_both_weights_and_tests_the_backends_first() {
        let patch: Value = serde_json::from_str(&route_weights("score-app", 10)).unwrap();
        assert_eq!(patch[0]["op"], "test");
        assert_eq!(patch[0]["value"], "score-app-stable");
        assert_eq!(patch[1]["value"], "score-app-canary");
        assert_eq!(
            (patch[2]["value"].as_u64(), patch[3]["value"].as_u64()),
            (Some(90), Some(10))
        );
        let failed = [format!(
            "$ kubectl patch httproutes.gateway.networking.k8s.io/score-app --type json --patch {} --context c (exit status: 1)",
            route_weights("score-app", 0)
        )];
        let said = removal(&failed, "score-app");
        assert!(
            said.starts_with("the route could NOT be moved back") && said.contains("the canary was KEPT"),
            "{said}"
        );
        let failed = [format!(
            "# {DRAIN} for 10s (…) (the canary still answered requests 300s after …)"
        )];
        let said = removal(&failed, "score-app");
        assert!(
            said.contains("not seen to stop answering") && said.contains("KEPT"),
            "{said}"
        );
    }

    #[test]
    fn the_canary_is_said_removed_only_when_its_deletion_did_not_fail() {
        assert_eq!(removal(&[], "web"), "the canary was removed");
        let failed = ["$ kubectl get events --namespace n (exit status 1)".to_owned()];
        assert_eq!(removal(&failed, "web"), "the canary was removed");
        let failed = ["$ kubectl delete deployment/web-canary --ignore-not-found --wait=true --timeout=120s --namespace n (timed out)".to_owned()];
        assert!(
            removal(&failed, "web").starts_with("the canary could NOT be removed"),
            "{}",
            removal(&failed, "web")
        );
    }
}
