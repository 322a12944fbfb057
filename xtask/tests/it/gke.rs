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

/// A state directory holding a push record, as `push --target gke` leaves it.
fn state_with_push(name: &str) -> PathBuf {
    let state = scratch_dir(name);
    let repository = format!("us-west1-docker.pkg.dev/{PROJECT}/ml-images/score-service");
    std::fs::create_dir_all(state.join("gke")).unwrap();
    let record = serde_json::json!({
        "tag": "abc",
        "image": format!("{repository}:abc"),
        "pinned": format!("{repository}@{DIGEST}"),
    });
    std::fs::write(state.join("gke/pushed.json"), record.to_string()).unwrap();
    state
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
fn every_overlay_renders_with_the_recorded_digest() {
    let state = state_with_push("gke-render");
    for (overlay, replicas) in [("dev", 1), ("prod", 3)] {
        let yaml = render(&state, overlay);
        let docs = documents(&yaml);
        let deployment = of_kind(&docs, "Deployment").expect("a Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["image"].as_str(),
            Some(format!("us-west1-docker.pkg.dev/{PROJECT}/ml-images/score-service@{DIGEST}").as_str()),
            "{overlay}: the image is pinned by digest"
        );
        assert_eq!(
            deployment["spec"]["replicas"].as_u64(),
            Some(replicas),
            "{overlay}"
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
fn settings_rename_and_resize_what_is_rendered() {
    let state = state_with_push("gke-render-settings");
    let output = xtask_isolated(
        &state,
        &[
            "render",
            "--project",
            PROJECT,
            "--overlay",
            "prod",
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
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler").unwrap();
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"].as_str(), Some("fraud"));
    assert_eq!(
        of_kind(&docs, "Deployment").unwrap()["spec"]["replicas"].as_u64(),
        Some(5)
    );
    assert_eq!(
        of_kind(&docs, "Service").unwrap()["spec"]["ports"][0]["port"].as_u64(),
        Some(8080)
    );
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
    for overlay in ["dev", "prod", "with-model"] {
        let file = state.join(format!("{overlay}.yaml"));
        std::fs::write(&file, render(&state, overlay)).unwrap();
        let output = Command::new(&validator)
            .args(["--strict", "--kubernetes-version", GKE_KUBERNETES])
            .arg(&file)
            .output()
            .unwrap();
        let report = format!("{}{}", stdout(&output), stderr(&output));
        assert!(output.status.success(), "{overlay} fails validation:\n{report}");
        let resources = match overlay {
            "prod" => 5,
            "with-model" => 4,
            _ => 3,
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
}

#[test]
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

fn dry_run_plans(state: &Path) -> String {
    let plans = [
        vec!["--dry-run", "cluster-up", "--project", PROJECT],
        vec![
            "--dry-run",
            "cluster-up",
            "--project",
            PROJECT,
            "--mode",
            "autopilot",
            "--location",
            "us-west1",
        ],
        vec!["--dry-run", "cluster-down", "--project", PROJECT],
        vec!["--dry-run", "ship", "--target", "gke", "--project", PROJECT],
        vec!["--dry-run", "deploy", "--project", PROJECT],
    ];
    let mut all = String::new();
    for args in plans {
        let output = xtask_isolated(state, &args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        all.push_str(&stdout(&output));
    }
    all
}

#[test]
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

#[test]
fn every_kubectl_command_in_the_plans_fails_for_the_connection_not_its_flags() {
    let state = state_with_push("gke-kubectl-contract");
    // A kubeconfig for a server nobody listens on.
    let kubeconfig = state.join("kubeconfig");
    let server = format!("https://127.0.0.1:{}", free_port());
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: nobody\n  user:\n    token: not-a-secret\ncontexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\n\
             current-context: nowhere\n"
        ),
    )
    .unwrap();
    // The apply step reads the rendered manifests: render them where the plan expects.
    std::fs::write(state.join("gke/rendered.yaml"), render(&state, "dev")).unwrap();

    let commands = commands_in_plan(&dry_run_plans(&state), "kubectl");
    let talking: Vec<_> = commands
        .into_iter()
        .filter(|argv| argv[1] != "kustomize")
        .collect();
    assert!(talking.len() >= 4, "{talking:?}");
    for argv in talking {
        let output = Command::new(&argv[0])
            .args(&argv[1..])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        let err = stderr(&output);
        assert!(!output.status.success(), "{argv:?} succeeded against nothing");
        assert!(
            err.contains("connection refused"),
            "{argv:?} failed for another reason than the connection:\n{err}"
        );
    }
}

#[test]
fn the_pipelines_do_their_work_through_cargo_xtask() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workflow: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("ci/github-actions.yml")).unwrap()).unwrap();
    let runs = |job: &str| -> Vec<String> {
        workflow["jobs"][job]["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|step| step["run"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(runs("test"), ["cargo xtask ci"]);
    assert_eq!(
        runs("kind"),
        [
            "cargo xtask registry up",
            "cargo xtask ship --target kube --context kind-score --registry localhost:5001",
            "cargo xtask status --target kube --context kind-score"
        ]
    );
    // Every action pinned to a full commit, and checkout keeping no credentials.
    let mut uses = 0;
    for job in workflow["jobs"].as_mapping().unwrap().values() {
        for step in job["steps"].as_sequence().unwrap() {
            let Some(action) = step["uses"].as_str() else {
                continue;
            };
            uses += 1;
            let pin = action.rsplit_once('@').map_or("", |(_, pin)| pin);
            assert!(
                pin.len() == 40 && pin.bytes().all(|b| b.is_ascii_hexdigit()),
                "{action} is not pinned by commit"
            );
            if action.starts_with("actions/checkout@") {
                assert_eq!(
                    step["with"]["persist-credentials"].as_bool(),
                    Some(false),
                    "{action}"
                );
            }
        }
    }
    assert!(uses >= 6, "{uses} actions");
    assert_eq!(
        runs("ship"),
        [
            "cargo xtask tools",
            "cargo xtask cluster-up",
            "cargo xtask ship --target gke"
        ]
    );
    assert_eq!(
        workflow["jobs"]["ship"]["permissions"]["id-token"].as_str(),
        Some("write"),
        "keyless auth"
    );

    let build: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("ci/cloudbuild.yaml")).unwrap()).unwrap();
    let script: Vec<String> = build["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|step| {
            step["args"][1]
                .as_str()
                .unwrap_or("")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|line| line.starts_with("cargo "))
        .collect();
    assert_eq!(
        script,
        [
            "cargo xtask ci",
            "cargo xtask tools",
            "cargo xtask cluster-up",
            "cargo xtask ship --target gke"
        ]
    );
}

#[test]
fn deploy_and_ship_plans_list_every_command_in_order() {
    let state = state_with_push("gke-plans");
    let s = state.display();
    let deploy = xtask_isolated(
        &state,
        &["--dry-run", "deploy", "--project", PROJECT, "--timeout", "120"],
    );
    assert!(deploy.status.success());
    assert_eq!(
        stdout(&deploy).lines().collect::<Vec<_>>(),
        [
            format!(
                "# write {s}/gke/render/kustomization.yaml (overlay dev, image pinned to the digest recorded by push)"
            ),
            format!("$ kubectl kustomize {s}/gke/render"),
            format!(
                "$ kubectl apply --server-side --field-manager=cargo-xtask --filename {s}/gke/rendered.yaml"
            ),
            "$ kubectl rollout status deployment/score-app --namespace mlops --timeout=120s".to_owned(),
        ]
    );

    let ship = xtask_isolated(
        &state,
        &["--dry-run", "ship", "--target", "gke", "--project", PROJECT],
    );
    assert!(ship.status.success());
    let plan = stdout(&ship);
    // The static binary is built for the machine's own architecture, as the image is.
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let repository = format!("us-west1-docker.pkg.dev/{PROJECT}/ml-images/score-service");
    let shape: Vec<String> = plan
        .lines()
        .map(|line| {
            // Tags change with every commit: keep what comes before them.
            line.split(&format!("{repository}:"))
                .next()
                .unwrap()
                .trim_end()
                .to_owned()
        })
        .collect();
    assert_eq!(
        shape,
        [
            "# check that the Docker engine answers".to_owned(),
            "$ gcloud artifacts docker images describe".to_owned(),
            "# only if".to_owned(),
            format!("  $ cargo build --release --locked --package score-service --target {triple} --config \"target.{triple}.rustflags=[\\\"-C\\\", \\\"target-feature=+crt-static\\\"]\""),
            format!("  # copy target/{triple}/release/score-service to dist/score-service"),
            "  $ docker build --target prebuilt --tag".to_owned(),
            "  $ docker push".to_owned(),
            "  $ docker image inspect --format \"{{json .RepoDigests}}\"".to_owned(),
            "$ kubectl get deployment score-app --namespace mlops --output=jsonpath={.spec.template.spec.containers[0].image}".to_owned(),
            "# only if the cluster does not run the recorded digest yet:".to_owned(),
            format!("  # write {s}/gke/render/kustomization.yaml (overlay dev, image pinned to the digest recorded by push)"),
            format!("  $ kubectl kustomize {s}/gke/render"),
            format!("  $ kubectl apply --server-side --field-manager=cargo-xtask --filename {s}/gke/rendered.yaml"),
            "  $ kubectl rollout status deployment/score-app --namespace mlops --timeout=300s".to_owned(),
            "# wait up to 600s for service score-app in mlops to get an external IP, then smoke test http://IP:5000".to_owned(),
        ],
        "{plan}"
    );
}

#[test]
fn the_with_model_overlay_mounts_its_model_from_a_config_map() {
    let state = state_with_push("gke-with-model");
    let docs = documents(&render(&state, "with-model"));
    let config_map = of_kind(&docs, "ConfigMap").expect("a ConfigMap");
    let name = config_map["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("score-model-"),
        "the name carries a content hash: {name}"
    );
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/overlays/with-model/model.onnx");
    let encoded = config_map["binaryData"]["model.onnx"]
        .as_str()
        .unwrap()
        .replace('\n', "");
    let decoded = Command::new("base64")
        .arg("--decode")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(encoded.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        decoded.stdout,
        std::fs::read(model).unwrap(),
        "the ConfigMap holds the model's bytes"
    );
    let pod = &of_kind(&docs, "Deployment").unwrap()["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"].as_str(),
        Some(name),
        "the volume follows the hashed name"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["volumeMounts"][0]["mountPath"].as_str(),
        Some("/models")
    );
    let env: Vec<_> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert!(env.contains(&("SCORE_MODEL", "/models/model.onnx")), "{env:?}");
}

#[test]
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
