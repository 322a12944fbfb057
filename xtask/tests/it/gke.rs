//! The gke target, with the real tools as far as they go without a cloud: real gcloud's
//! argument parser, real kubectl against a server that is not there, real kustomize (in
//! kubectl), and the Kubernetes schemas.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

const PROJECT: &str = "my-proj-1";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The Kubernetes minor GKE's regular channel runs as this is written.
const GKE_KUBERNETES: &str = "1.34.0";

const REPOSITORY: &str = "us-west1-docker.pkg.dev/my-proj-1/ml-images/score-service";

/// A state directory holding a push record of this very tree, as `push --target gke`
/// leaves it.
fn state_with_push(name: &str) -> PathBuf {
    let state = scratch_dir(name);
    let tag = pushed_tag(&state, &["push", "--target", "gke", "--project", PROJECT]);
    record_push(&state, &tag);
    state
}

/// The tag the image pushed by `args` carries, as its dry run says: this tree's (and
/// model's) tag, by the xtask's own rule.
fn pushed_tag(state: &Path, args: &[&str]) -> String {
    let mut dry_run = vec!["--dry-run"];
    dry_run.extend(args);
    let plan = stdout(&xtask_isolated(state, &dry_run));
    let prefix = format!("$ docker push {REPOSITORY}:");
    plan.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no push in {plan}"))
        .to_owned()
}

fn record_push(state: &Path, tag: &str) {
    std::fs::create_dir_all(state.join("gke")).unwrap();
    let record = serde_json::json!({
        "tag": tag,
        "image": format!("{REPOSITORY}:{tag}"),
        "pinned": format!("{REPOSITORY}@{DIGEST}"),
    });
    std::fs::write(state.join("gke/pushed.json"), record.to_string()).unwrap();
}

/// An empty gcloud configuration and Docker config, so nothing of this machine's leaks in
/// and nothing is written to it.
fn isolated(command: &mut Command, scratch: &Path) {
    let gcloud = scratch.join("gcloud");
    let docker = scratch.join("docker");
    std::fs::create_dir_all(&gcloud).unwrap();
    std::fs::create_dir_all(&docker).unwrap();
    command
        .env("CLOUDSDK_CONFIG", gcloud)
        .env("DOCKER_CONFIG", docker)
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1");
}

fn xtask_isolated(state: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .env("XTASK_STATE_DIR", state)
        .env_remove("XTASK_TARGET")
        .env_remove("CARGO");
    isolated(&mut command, state);
    let output = command.output().unwrap();
    eprintln!("xtask {args:?} -> {}\n{}", output.status, stderr(&output));
    output
}

fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect()
}

fn of_kind<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> Option<&'a serde_yaml::Value> {
    docs.iter().find(|doc| doc["kind"].as_str() == Some(kind))
}

fn render(state: &Path, overlay: &str) -> String {
    let output = xtask_isolated(state, &["render", "--project", PROJECT, "--overlay", overlay]);
    assert!(output.status.success(), "render {overlay}: {}", stderr(&output));
    stdout(&output)
}

#[test]
#[ignore = "needs kubectl (its built-in kustomize)"]
fn every_overlay_renders_with_the_recorded_digest() {
    let state = state_with_push("gke-render");
    // The autoscaler of prod owns the count: the manifests leave it out.
    for (overlay, replicas) in [("dev", Some(1)), ("prod", None)] {
        let yaml = render(&state, overlay);
        let docs = documents(&yaml);
        let deployment = of_kind(&docs, "Deployment").expect("a Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["image"].as_str(),
            Some(format!("us-west1-docker.pkg.dev/{PROJECT}/ml-images/score-service@{DIGEST}").as_str()),
            "{overlay}: the image is pinned by digest"
        );
        assert_eq!(deployment["spec"]["replicas"].as_u64(), replicas, "{overlay}");
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["annotations"]["score-service/model"].as_str(),
            Some("identity")
        );
        assert_eq!(
            deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
            Some(0)
        );
        let cause = deployment["metadata"]["annotations"]["kubernetes.io/change-cause"]
            .as_str()
            .unwrap();
        assert!(cause.contains(DIGEST) && cause.contains("commit "), "{cause}");
        for doc in &docs {
            if doc["kind"] != "Namespace" {
                assert_eq!(
                    doc["metadata"]["namespace"].as_str(),
                    Some("mlops"),
                    "{overlay}: {doc:?}"
                );
            }
        }
        let service = of_kind(&docs, "Service").unwrap();
        assert_eq!(service["spec"]["type"].as_str(), Some("LoadBalancer"));
        assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(5000));
        let namespace = of_kind(&docs, "Namespace").unwrap();
        assert_eq!(
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
            Some("restricted")
        );
        // Only the service port in, only DNS out.
        let policy = of_kind(&docs, "NetworkPolicy").expect("a NetworkPolicy");
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"]["app"].as_str(),
            Some("score-app")
        );
        assert_eq!(
            policy["spec"]["ingress"][0]["ports"][0]["port"].as_str(),
            Some("http")
        );
        let egress: Vec<u64> = policy["spec"]["egress"][0]["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|port| port["port"].as_u64().unwrap())
            .collect();
        assert_eq!(egress, [53, 53]);
        let has = |kind| of_kind(&docs, kind).is_some();
        assert_eq!(
            (has("HorizontalPodAutoscaler"), has("PodDisruptionBudget")),
            (overlay == "prod", overlay == "prod")
        );
    }
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/base/deployment.yaml");
    assert!(
        std::fs::read_to_string(manifests)
            .unwrap()
            .contains("image: score-service"),
        "base/ is never edited"
    );
}

#[test]
#[ignore = "needs kubectl (its built-in kustomize)"]
fn settings_rename_and_resize_what_is_rendered() {
    let state = state_with_push("gke-render-settings");
    let output = xtask_isolated(
        &state,
        &[
            "render",
            "--project",
            PROJECT,
            "--overlay",
            "dev",
            "--app",
            "fraud",
            "--namespace",
            "risk",
            "--service-port",
            "8080",
            "--replicas",
            "5",
        ],
    );
    assert!(output.status.success());
    let docs = documents(&stdout(&output));
    for doc in &docs {
        let text = serde_yaml::to_string(doc).unwrap();
        assert!(
            !text.contains("score-app") && !text.contains("mlops"),
            "old names remain in {text}"
        );
    }
    assert_eq!(
        of_kind(&docs, "Deployment").unwrap()["spec"]["replicas"].as_u64(),
        Some(5)
    );
    assert_eq!(
        of_kind(&docs, "Service").unwrap()["spec"]["ports"][0]["port"].as_u64(),
        Some(8080)
    );
    assert_eq!(
        of_kind(&docs, "NetworkPolicy").unwrap()["spec"]["podSelector"]["matchLabels"]["app"].as_str(),
        Some("fraud")
    );

    // Behind a Gateway: the route weights each track's Service, renamed with the app.
    let gateway = xtask_isolated(
        &state,
        &[
            "render",
            "--project",
            PROJECT,
            "--app",
            "fraud",
            "--service-port",
            "8080",
            "--traffic",
            "gateway",
            "--gateway-class",
            "gke-l7-rilb",
        ],
    );
    assert!(gateway.status.success());
    let text = stdout(&gateway);
    assert!(!text.contains("score-app"), "old names remain in {text}");
    let docs = documents(&text);
    let listener = &of_kind(&docs, "Gateway").unwrap()["spec"];
    assert_eq!(listener["gatewayClassName"].as_str(), Some("gke-l7-rilb"));
    assert_eq!(listener["listeners"][0]["port"].as_u64(), Some(8080));
    let backends = &of_kind(&docs, "HTTPRoute").unwrap()["spec"]["rules"][0]["backendRefs"];
    assert_eq!(backends[0]["name"].as_str(), Some("fraud-stable"));
    assert_eq!(backends[1]["name"].as_str(), Some("fraud-canary"));
    let services: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("Service"))
        .collect();
    let app = services
        .iter()
        .find(|s| s["metadata"]["name"].as_str() == Some("fraud"))
        .unwrap();
    assert_eq!(
        app["spec"]["type"].as_str(),
        Some("ClusterIP"),
        "only the route reaches the pods"
    );
    assert_eq!(
        of_kind(&docs, "Deployment").unwrap()["spec"]["template"]["metadata"]["labels"]["track"].as_str(),
        Some("stable")
    );
    // GKE's load balancer checks /readyz, where its own default would ask `/`.
    let checks: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("HealthCheckPolicy"))
        .map(|d| {
            (
                d["spec"]["targetRef"]["name"].as_str().unwrap().to_owned(),
                d["spec"]["default"]["config"]["httpHealthCheck"]["requestPath"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("fraud-canary".to_owned(), "/readyz".to_owned()),
            ("fraud-stable".to_owned(), "/readyz".to_owned())
        ]
    );
    let envoy = xtask_isolated(
        &state,
        &[
            "render",
            "--project",
            PROJECT,
            "--traffic",
            "gateway",
            "--gateway-class",
            "eg",
        ],
    );
    assert!(envoy.status.success());
    assert!(
        !stdout(&envoy).contains("HealthCheckPolicy"),
        "GKE's policy only with GKE's classes"
    );

    let prod = xtask_isolated(
        &state,
        &[
            "render",
            "--project",
            PROJECT,
            "--overlay",
            "prod",
            "--app",
            "fraud",
        ],
    );
    assert!(prod.status.success());
    let docs = documents(&stdout(&prod));
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler").unwrap();
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"].as_str(), Some("fraud"));

    // A count beside the autoscaler would fight it: refused before anything runs.
    for command in ["render", "deploy", "ship"] {
        let mut args = vec![
            "--dry-run",
            command,
            "--project",
            PROJECT,
            "--overlay",
            "prod",
            "--replicas",
            "5",
        ];
        if command == "ship" {
            args.extend(["--target", "gke"]);
        }
        let output = xtask_isolated(&state, &args);
        assert!(!output.status.success(), "{command}");
        assert_eq!(stdout(&output), "", "{command}: no plan");
        assert!(
            stderr(&output).contains("overlay prod scales the Deployment with an autoscaler (HorizontalPodAutoscaler score-app, 3 to 10 replicas)"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
#[ignore = "needs kubernetes-validate in target/venv (cargo xtask ci installs it)"]
fn manifests_validate_against_the_kubernetes_schemas() {
    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv/bin/kubernetes-validate");
    assert!(
        validator.exists(),
        "{} is missing: run `cargo xtask ci`",
        validator.display()
    );
    let state = state_with_push("gke-validate");
    for overlay in ["dev", "prod", "gateway"] {
        let file = state.join(format!("{overlay}.yaml"));
        let yaml = match overlay {
            // The Gateway API's kinds and GKE's policy are no part of Kubernetes' own
            // schemas: the rest of what `traffic: gateway` renders is checked here, those
            // by fake-kube's checks in the gateway rehearsal.
            "gateway" => {
                let output =
                    xtask_isolated(&state, &["render", "--project", PROJECT, "--traffic", "gateway"]);
                assert!(output.status.success());
                documents(&stdout(&output))
                    .iter()
                    .filter(|doc| {
                        !matches!(
                            doc["kind"].as_str(),
                            Some("Gateway" | "HTTPRoute" | "HealthCheckPolicy")
                        )
                    })
                    .map(|doc| format!("---\n{}", serde_yaml::to_string(doc).unwrap()))
                    .collect()
            }
            _ => render(&state, overlay),
        };
        std::fs::write(&file, yaml).unwrap();
        let output = Command::new(&validator)
            .args(["--strict", "--kubernetes-version", GKE_KUBERNETES])
            .arg(&file)
            .output()
            .unwrap();
        let report = format!("{}{}", stdout(&output), stderr(&output));
        assert!(output.status.success(), "{overlay} fails validation:\n{report}");
        let resources = match overlay {
            "prod" | "gateway" => 6,
            _ => 4,
        };
        assert_eq!(report.matches("passed").count(), resources, "{report}");
    }
}

#[test]
fn bad_settings_are_refused_before_anything_runs() {
    let state = state_with_push("gke-bad-settings");
    let output = xtask_isolated(
        &state,
        &[
            "--dry-run",
            "cluster-up",
            "--project",
            PROJECT,
            "--location",
            "us-west1b",
        ],
    );
    assert!(!output.status.success());
    assert_eq!(stdout(&output), "", "no plan is printed");
    assert!(
        stderr(&output).contains(r#"location = "us-west1b" (from flag): is neither a zone"#),
        "{}",
        stderr(&output)
    );
    let output = xtask_isolated(
        &state,
        &[
            "--dry-run",
            "cluster-up",
            "--project",
            PROJECT,
            "--mode",
            "autopilot",
        ],
    );
    assert!(
        stderr(&output)
            .contains(r#"autopilot needs a region, but location = "us-west1-b" is a zone: use "us-west1""#)
    );
    // --check-rows gives one model's rows: with several models, it is refused up front.
    let repository = state.join("repository");
    for model in ["fraud", "churn"] {
        std::fs::create_dir_all(repository.join(model).join("1")).unwrap();
        std::fs::write(repository.join(model).join("1/model.onnx"), b"").unwrap();
    }
    let rows = state.join("rows.json");
    std::fs::write(&rows, r#"{"X": [[0, 0, 0, 0, 0, 0]]}"#).unwrap();
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo");
    let (one, other) = (zoo.join("linear_svr.onnx"), zoo.join("linear_regression.onnx"));
    let several = [
        &["--model-repository", repository.to_str().unwrap()][..],
        &[
            "--model",
            one.to_str().unwrap(),
            "--model",
            other.to_str().unwrap(),
        ],
    ];
    for models in several {
        let ship = [
            "--dry-run",
            "ship",
            "--target",
            "gke",
            "--project",
            PROJECT,
            "--canary",
            "20",
            "--check-rows",
            rows.to_str().unwrap(),
        ];
        let output = xtask_isolated(&state, &[&ship[..], models].concat());
        assert!(!output.status.success());
        assert_eq!(stdout(&output), "", "no plan is printed");
        assert!(
            stderr(&output).contains("--check-rows gives one model's rows, and this release has 2 models"),
            "{}",
            stderr(&output)
        );
    }
    // /score's model must be one of those shipped.
    let output = xtask_isolated(
        &state,
        &[
            "--dry-run",
            "ship",
            "--target",
            "gke",
            "--project",
            PROJECT,
            "--model",
            one.to_str().unwrap(),
            "--default-model",
            "fraud",
        ],
    );
    assert!(!output.status.success());
    assert_eq!(stdout(&output), "", "no plan is printed");
    assert!(
        stderr(&output).contains(r#"--default-model "fraud" is none of the models shipped (linear_svr)"#),
        "{}",
        stderr(&output)
    );
}

#[test]
#[ignore = "needs gcloud"]
fn config_names_where_each_value_came_from() {
    let state = scratch_dir("gke-config");
    let mut gcloud = Command::new("gcloud");
    gcloud.args(["config", "set", "project", PROJECT]);
    isolated(&mut gcloud, &state);
    assert!(gcloud.output().unwrap().status.success());

    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["config", "--cluster", "from-flag"])
        .env("XTASK_NAMESPACE", "from-env");
    isolated(&mut command, &state);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    assert!(
        line("cluster").contains("from-flag") && line("cluster").ends_with("(flag)"),
        "{text}"
    );
    assert!(
        line("namespace").contains("from-env")
            && line("namespace").ends_with("(environment XTASK_NAMESPACE)")
    );
    assert!(line("location").contains("us-west1-b") && line("location").ends_with("(deploy.yaml)"));
    assert!(line("project").contains(PROJECT) && line("project").ends_with("(gcloud config get project)"));
}

/// Every `$ PROGRAM …` line of a dry-run plan, as argv (the plan quotes arguments that
/// hold spaces with double quotes).
fn commands_in_plan(plan: &str, program: &str) -> Vec<Vec<String>> {
    plan.lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("$ "))
        .filter(|line| line.starts_with(&format!("{program} ")))
        .map(|line| {
            let mut args = Vec::new();
            let mut current = String::new();
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ' ' if !quoted => args.push(std::mem::take(&mut current)),
                    c => current.push(c),
                }
            }
            args.push(current);
            args
        })
        .collect()
}

/// The context the kube plans name.
const KUBE_CONTEXT: &str = "kind-like";
const GKE_CONTEXT: &str = "gke_my-proj-1_us-west1-b_k8s-ml-cluster";

/// The dry-run plans of every task that talks to gcloud or a cluster, concatenated.
fn dry_run_plans(state: &Path) -> String {
    dry_run_plans_each(state)
        .into_iter()
        .map(|(_, plan)| plan)
        .collect()
}

/// The dry-run plan of every task that talks to gcloud or a cluster, with its arguments.
fn dry_run_plans_each(state: &Path) -> Vec<(Vec<&'static str>, String)> {
    let gke = ["--target", "gke", "--project", PROJECT];
    let kube = [
        "--target",
        "kube",
        "--context",
        KUBE_CONTEXT,
        "--registry",
        "localhost:5001",
    ];
    let plans = [
        vec!["cluster-up", "--project", PROJECT],
        vec![
            "cluster-up",
            "--project",
            PROJECT,
            "--mode",
            "autopilot",
            "--location",
            "us-west1",
        ],
        vec!["cluster-down", "--project", PROJECT],
        [&["ship", "--rollback-on-failure"][..], &gke].concat(),
        [&["deploy", "--rollback-on-failure"][..], &gke].concat(),
        [&["status"][..], &gke].concat(),
        [&["logs"][..], &gke].concat(),
        [&["logs", "--follow"][..], &gke].concat(),
        [&["down"][..], &gke].concat(),
        [&["ship", "--rollback-on-failure"][..], &kube].concat(),
        [&["deploy"][..], &kube].concat(),
        [&["status"][..], &kube].concat(),
        [&["logs"][..], &kube].concat(),
        [&["down"][..], &kube].concat(),
    ];
    let mut all = Vec::new();
    for args in plans {
        let dry_run = [&["--dry-run"][..], &args].concat();
        let output = xtask_isolated(state, &dry_run);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        all.push((args, stdout(&output)));
    }
    all
}

#[test]
#[ignore = "needs gcloud"]
fn every_gcloud_command_in_the_plans_gets_past_gclouds_argument_parser() {
    let state = state_with_push("gke-gcloud-contract");
    let commands = commands_in_plan(&dry_run_plans(&state), "gcloud");
    assert!(commands.len() >= 12, "{commands:?}");
    for argv in commands {
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        isolated(&mut command, &state.join("fresh"));
        let output = command.output().unwrap();
        let err = stderr(&output);
        // 2 is gcloud's exit status for a command line it cannot parse.
        assert_ne!(output.status.code(), Some(2), "{argv:?} does not parse:\n{err}");
        assert!(
            output.status.success() || err.contains("You do not currently have an active account selected"),
            "{argv:?} failed for another reason than having no account:\n{err}"
        );
    }
}

/// Every kubectl command of every plan, in order, run by the real kubectl against a fake
/// Kubernetes API (its containers simulated): each must name its context and succeed —
/// the diagnosis and the rollback of a failed rollout, the logs and the teardown included.
#[test]
#[ignore = "needs kubectl"]
fn every_kubectl_command_in_the_plans_runs_against_a_kubernetes_api() {
    let state = state_with_push("gke-kubectl-contract");
    let token = "kubectl-contract-token";
    let cluster = fake_kube::FakeCluster::start_blocking(fake_kube::ClusterOptions {
        kubelet: fake_kube::Kubelet::Simulated,
        ..fake_kube::ClusterOptions::new(token)
    })
    .unwrap();
    // One kubeconfig with both contexts the plans name, each its own user.
    let kubeconfig = state.join("kubeconfig");
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&cluster.kubeconfig(GKE_CONTEXT, token)).unwrap();
    let other: serde_yaml::Value = serde_yaml::from_str(&cluster.kubeconfig(KUBE_CONTEXT, token)).unwrap();
    for list in ["clusters", "users", "contexts"] {
        let extra = other[list].as_sequence().unwrap().clone();
        config[list].as_sequence_mut().unwrap().extend(extra);
    }
    std::fs::write(&kubeconfig, serde_yaml::to_string(&config).unwrap()).unwrap();
    let cache = state.join("kube-cache");

    // What the apply steps read: the rendered manifests, where the plans expect them; the
    // kube target's push record, so its plans pin an image.
    let rendered = render(&state, "dev");
    std::fs::write(state.join("gke/rendered.yaml"), &rendered).unwrap();
    let kube_tag = {
        let plan = stdout(&xtask_isolated(
            &state,
            &[
                "--dry-run",
                "push",
                "--target",
                "kube",
                "--context",
                KUBE_CONTEXT,
                "--registry",
                "localhost:5001",
            ],
        ));
        plan.lines()
            .find_map(|line| line.strip_prefix("$ docker push localhost:5001/score-service:"))
            .unwrap()
            .to_owned()
    };
    std::fs::create_dir_all(state.join("kube")).unwrap();
    std::fs::write(
        state.join("kube/pushed.json"),
        serde_json::json!({
            "tag": kube_tag,
            "image": format!("localhost:5001/score-service:{kube_tag}"),
            "pinned": format!("localhost:5001/score-service@{DIGEST}"),
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(state.join("kube/rendered.yaml"), &rendered).unwrap();

    let kubectl = |args: &[String]| {
        let mut command = Command::new(&args[0]);
        command
            .args(&args[1..])
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBECACHEDIR", &cache)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().unwrap()
    };
    // A first revision with another image, so `rollout undo` has one to go back to.
    let earlier = state.join("earlier.yaml");
    std::fs::write(&earlier, rendered.replace(DIGEST, &DIGEST.replace('0', "f"))).unwrap();
    let mut ran = Vec::new();
    let mut count = 0;
    for (task, plan) in dry_run_plans_each(&state) {
        if task[0] == "ship" {
            // A revision before the one shipped, so `rollout undo` has one to go back to.
            let context = if task.contains(&"kube") {
                KUBE_CONTEXT
            } else {
                GKE_CONTEXT
            };
            let applied = kubectl(
                &[
                    "kubectl",
                    "apply",
                    "--server-side",
                    "--field-manager=cargo-xtask",
                    "--context",
                    context,
                    "--filename",
                ]
                .map(String::from)
                .into_iter()
                .chain([earlier.display().to_string()])
                .collect::<Vec<_>>(),
            )
            .wait_with_output()
            .unwrap();
            assert!(
                applied.status.success(),
                "{}",
                String::from_utf8_lossy(&applied.stderr)
            );
        }
        let commands: Vec<Vec<String>> = commands_in_plan(&plan, "kubectl")
            .into_iter()
            .filter(|argv| argv[1] != "kustomize")
            // The pod a failed rollout's logs come from is only known then.
            .filter(|argv| !argv.iter().any(|arg| arg.starts_with('<')))
            .collect();
        count += commands.len();
        for argv in commands {
            {
                let context = argv
                    .iter()
                    .position(|arg| arg == "--context")
                    .map(|at| argv[at + 1].as_str());
                assert!(
                    context == Some(GKE_CONTEXT) || context == Some(KUBE_CONTEXT),
                    "{argv:?} does not name its context"
                );
            }
            let mut child = kubectl(&argv);
            if argv.iter().any(|arg| arg == "--follow") {
                // Streaming, as it should: give it a moment to fail, then stop it.
                std::thread::sleep(std::time::Duration::from_secs(3));
                let still_running = child.try_wait().unwrap().is_none();
                let _ = child.kill();
                let output = child.wait_with_output().unwrap();
                assert!(
                    still_running || output.status.success(),
                    "{argv:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                continue;
            }
            let output = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&output.stderr);
            // kubectl diff exits 1 when there are differences.
            let diff_found = argv[1] == "diff" && output.status.code() == Some(1);
            assert!(
                output.status.success() || diff_found,
                "{task:?}: {argv:?} failed:\n{err}"
            );
            ran.push(argv[1..3].join(" "));
        }
    }
    assert!(count >= 30, "{count} commands: {ran:?}");
    for expected in [
        "diff --server-side",
        "apply --server-side",
        "rollout status",
        "rollout undo",
        "get pods",
        "get events",
        "logs --selector",
        "delete deployments,services,horizontalpodautoscalers,poddisruptionbudgets,networkpolicies",
    ] {
        assert!(ran.iter().any(|r| r == expected), "{expected} never ran: {ran:?}");
    }
    let requests = cluster.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("PATCH /apis/apps/v1/namespaces/mlops/deployments/score-app?")),
        "{requests:#?}"
    );
    cluster.shutdown();
}

#[test]
fn deploy_and_ship_plans_list_every_command_in_order() {
    let state = state_with_push("gke-plans");
    let s = state.display();
    let context = format!("--context {GKE_CONTEXT}");
    let deploy = xtask_isolated(
        &state,
        &["--dry-run", "deploy", "--project", PROJECT, "--timeout", "120"],
    );
    assert!(deploy.status.success());
    let plan = stdout(&deploy);
    let lines: Vec<&str> = plan.lines().collect();
    assert_eq!(
        lines[..5],
        [
            format!(
                "# read {s}/gke/pushed.json: it must record the push of {REPOSITORY}:{}",
                pushed_tag(&state, &["push", "--target", "gke", "--project", PROJECT])
            ),
            format!("$ kubectl config get-contexts {GKE_CONTEXT} --output name {context}"),
            format!(
                "# write {s}/gke/render/kustomization.yaml (overlay dev, image pinned to the digest recorded by push)"
            ),
            format!("$ kubectl kustomize {s}/gke/render --kubeconfig /dev/null"),
            format!(
                "$ kubectl diff --server-side --field-manager=cargo-xtask --force-conflicts --filename {s}/gke/rendered.yaml {context}"
            ),
        ]
    );
    let watch = format!(
        "# while it runs: $ kubectl get pods --selector app=score-app --watch --output json {context} --namespace mlops &, stopping it at a pod of this release that cannot pull its image (ImagePullBackOff, ErrImageNeverPull, InvalidImageName)"
    );
    assert_eq!(
        lines[5..],
        [
            format!("$ kubectl get deployment score-app --ignore-not-found --output json {context} --namespace mlops"),
            format!(
                "$ kubectl apply --server-side --field-manager=cargo-xtask --force-conflicts --filename {s}/gke/rendered.yaml {context}"
            ),
            "# read whether the last rollout had timed out".to_owned(),
            "# only if it had: its ProgressDeadlineExceeded stays until this rollout progresses, and `kubectl rollout status` would stop at it:".to_owned(),
            format!(
                "  $ kubectl wait deployment/score-app --for=condition=Progressing --timeout=120s {context} --namespace mlops"
            ),
            format!(
                "$ kubectl rollout status deployment/score-app --timeout=120s {context} --namespace mlops"
            ),
            watch.clone(),
            "# if it fails:".to_owned(),
            format!(
                "  $ kubectl get pods --selector app=score-app --output json {context} --namespace mlops"
            ),
            format!(
                "  $ kubectl get events --field-selector type=Warning --sort-by=.lastTimestamp {context} --namespace mlops"
            ),
            format!(
                "  $ kubectl logs <the first pod not ready> --all-containers --tail=20 {context} --namespace mlops"
            ),
            // Last, whatever became of the rest: what the cluster serves, read from it.
            format!("  $ kubectl get deployment score-app --output json {context} --namespace mlops"),
        ]
    );

    let ship = xtask_isolated(
        &state,
        &[
            "--dry-run",
            "ship",
            "--target",
            "gke",
            "--project",
            PROJECT,
            "--rollback-on-failure",
        ],
    );
    assert!(ship.status.success());
    let plan = stdout(&ship);
    // The static binary is built for the machine's own architecture, as the image is.
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let shape: Vec<String> = plan
        .lines()
        .map(|line| {
            // Tags change with every commit: keep what comes before them (in an image
            // reference, or in the build context's path).
            let line = line.split(&format!("{REPOSITORY}:")).next().unwrap();
            line.split("image-context/").next().unwrap().trim_end().to_owned()
        })
        .collect();
    assert_eq!(
        shape,
        [
            "# check that the Docker engine answers".to_owned(),
            format!("$ kubectl config get-contexts {GKE_CONTEXT} --output name {context}"),
            format!(
                "$ cargo build --release --locked --package score-service --target {triple} --config \"target.{triple}.rustflags=[\\\"-C\\\", \\\"target-feature=+crt-static\\\"]\""
            ),
            format!("$ cargo metadata --format-version 1 --locked --filter-platform {triple}"),
            format!("# copy target/{triple}/release/score-service and its SBOM into the build context {s}/"),
            "$ docker image inspect --format {{.Id}}".to_owned(),
            "# only if".to_owned(),
            "  $ docker build --target prebuilt --file Dockerfile --tag".to_owned(),
            "  $ docker image inspect --format {{.Id}}".to_owned(),
            "$ docker push".to_owned(),
            format!(
                "# write {s}/gke/render/kustomization.yaml (overlay dev, image pinned to the digest recorded by push)"
            ),
            format!("$ kubectl kustomize {s}/gke/render --kubeconfig /dev/null"),
            format!(
                "$ kubectl diff --server-side --field-manager=cargo-xtask --force-conflicts --filename {s}/gke/rendered.yaml {context}"
            ),
            format!("$ kubectl get deployment score-app --ignore-not-found --output json {context} --namespace mlops"),
            format!(
                "$ kubectl apply --server-side --field-manager=cargo-xtask --force-conflicts --filename {s}/gke/rendered.yaml {context}"
            ),
            "# read whether the last rollout had timed out".to_owned(),
            "# only if it had: its ProgressDeadlineExceeded stays until this rollout progresses, and `kubectl rollout status` would stop at it:".to_owned(),
            format!(
                "  $ kubectl wait deployment/score-app --for=condition=Progressing --timeout=300s {context} --namespace mlops"
            ),
            format!(
                "$ kubectl rollout status deployment/score-app --timeout=300s {context} --namespace mlops"
            ),
            watch,
            "# if it fails:".to_owned(),
            format!(
                "  $ kubectl get pods --selector app=score-app --output json {context} --namespace mlops"
            ),
            format!(
                "  $ kubectl get events --field-selector type=Warning --sort-by=.lastTimestamp {context} --namespace mlops"
            ),
            format!(
                "  $ kubectl logs <the first pod not ready> --all-containers --tail=20 {context} --namespace mlops"
            ),
            format!("  $ kubectl rollout undo deployment/score-app {context} --namespace mlops"),
            format!(
                "  $ kubectl wait deployment/score-app --for=condition=Progressing --timeout=300s {context} --namespace mlops"
            ),
            format!(
                "  $ kubectl rollout status deployment/score-app --timeout=300s {context} --namespace mlops"
            ),
            format!("  $ kubectl get deployment score-app --output json {context} --namespace mlops"),
            format!(
                "# wait up to 600s for service score-app (context {GKE_CONTEXT}, namespace mlops) to get an external address, then smoke test http://ADDRESS:5000"
            ),
        ],
        "{plan}"
    );
}

#[test]
#[ignore = "needs gcloud, kubectl and the docker client"]
fn a_model_ships_as_an_image_built_on_the_service_image() {
    let state = scratch_dir("gke-model-image");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/logistic_regression.onnx");
    let model = model.to_str().unwrap();
    let ship = ["ship", "--target", "gke", "--project", PROJECT, "--model", model];
    let tag = pushed_tag(&state, &ship);
    let service_tag = pushed_tag(&state, &["push", "--target", "gke", "--project", PROJECT]);
    assert!(
        tag.starts_with(&format!("{service_tag}-model-")),
        "the model image's tag extends the service's: {tag}"
    );
    let plan = stdout(&xtask_isolated(&state, &[&["--dry-run"][..], &ship].concat()));
    let build = format!(
        "$ docker build --tag {REPOSITORY}:{tag} --build-arg BASE=<the service image's pinned digest> {}/gke/model-image",
        state.display()
    );
    let pushes: Vec<&str> = plan.lines().filter(|l| l.starts_with("$ docker push")).collect();
    assert_eq!(pushes.len(), 2, "the service image, then the model image: {plan}");
    assert!(plan.contains(&build), "{plan}");
    assert!(
        plan.find(&build) > plan.find(pushes[0]),
        "built on the pushed service image: {plan}"
    );

    // render pins the model image and names the model for `status`.
    record_push(&state, &tag);
    let output = xtask_isolated(&state, &["render", "--project", PROJECT, "--model", model]);
    assert!(output.status.success());
    let docs = documents(&stdout(&output));
    let deployment = of_kind(&docs, "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["score-service/model"].as_str(),
        Some("logistic_regression")
    );
    // Without --model, the record (of the model image) is not this tree's service image.
    let output = xtask_isolated(&state, &["render", "--project", PROJECT]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "records {REPOSITORY}:{tag}, but this tree with these settings is {REPOSITORY}:{service_tag}"
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn render_and_deploy_pin_only_this_trees_push_and_dry_run_without_one() {
    let state = scratch_dir("gke-render-record");
    // A fresh clone: nothing pushed. Dry runs still show their plans.
    for task in ["render", "deploy"] {
        let output = xtask_isolated(&state, &["--dry-run", task, "--project", PROJECT]);
        assert!(output.status.success(), "{task}: {}", stderr(&output));
        assert!(stdout(&output).contains("/gke/pushed.json: it must record the push of"));
        let output = xtask_isolated(&state, &[task, "--project", PROJECT]);
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains("no image is pushed for gke yet"),
            "{}",
            stderr(&output)
        );
    }
    // A push of another commit, or for another project's registry, is refused.
    for image in [
        format!("{REPOSITORY}:0123abcd"),
        format!(
            "us-west1-docker.pkg.dev/another-proj/ml-images/score-service:{}",
            pushed_tag(&state, &["push", "--target", "gke", "--project", PROJECT])
        ),
    ] {
        std::fs::create_dir_all(state.join("gke")).unwrap();
        let record =
            serde_json::json!({"tag": "x", "image": image, "pinned": format!("{REPOSITORY}@{DIGEST}")});
        std::fs::write(state.join("gke/pushed.json"), record.to_string()).unwrap();
        let output = xtask_isolated(&state, &["render", "--project", PROJECT]);
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains(&format!(
                "records {image}, but this tree with these settings is {REPOSITORY}:"
            )),
            "{}",
            stderr(&output)
        );
        assert_eq!(stdout(&output), "", "nothing rendered");
    }
}

#[test]
#[ignore = "needs gcloud"]
fn config_without_a_project_lists_the_other_settings_and_the_gcloud_fallback() {
    let state = scratch_dir("gke-config-no-project");
    let output = xtask_isolated(&state, &["config"]);
    assert!(!output.status.success());
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|l| l.starts_with("project ") && l.ends_with("(not set)")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("cluster ") && l.ends_with("(deploy.yaml)")),
        "{text}"
    );
    assert!(
        stderr(&output).contains("`gcloud config set project ID`"),
        "{}",
        stderr(&output)
    );
}
