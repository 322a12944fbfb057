//! The rehearsal: the cluster half of the tutorial, end to end, with every tool real
//! except the clouds. Real gcloud creates the cluster against a fake of Google's APIs,
//! which hands it the address and CA of a fake Kubernetes API (`fake-kube`); the real
//! gke-gcloud-auth-plugin gives kubectl its token; the real Docker engine builds the
//! images, a real registry stands in for Artifact Registry, and the fake's kubelet runs
//! the pods in Docker from that registry, by digest. A second, decoy cluster is the
//! kubeconfig's current context throughout: nothing may reach it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine;
use fake_kube::registry::LocalRegistry;
use fake_kube::{ClusterOptions, FakeCluster, Kubelet, RunningCluster};
use serde_json::Value;

use crate::fake_gke::{ClusterEndpoint, FakeGoogleCloud};
use crate::support::*;

const PROJECT: &str = "my-proj-1";
const TOKEN: &str = "fake-access-token";
const GKE_CONTEXT: &str = "gke_my-proj-1_us-west1-b_k8s-ml-cluster";
const DECOY_CONTEXT: &str = "decoy";

/// The digest a registry itself serves for `name:tag`.
fn registry_digest(registry: &LocalRegistry, name: &str, tag: &str) -> String {
    let accept =
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let (status, headers) =
        http_head(&registry.address, &format!("/v2/{name}/manifests/{tag}"), accept).unwrap();
    assert_eq!(status, 200, "{name}:{tag} is not in the registry: {headers}");
    headers
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case("docker-content-digest")
                .then(|| value.trim().to_owned())
        })
        .expect("a Docker-Content-Digest header")
}

/// HEAD `path`: the status and the response's head.
fn http_head(address: &str, path: &str, accept: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address.replace("localhost", "127.0.0.1"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "HEAD {path} HTTP/1.1\r\nHost: {address}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = String::new();
    stream.read_to_string(&mut head)?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head))
}

/// A fake cluster with the given kubelet, answering to `token`.
fn cluster(options: ClusterOptions) -> RunningCluster {
    FakeCluster::start_blocking(options).expect("start a fake cluster")
}

/// Where one rehearsal keeps its state, and how it runs the xtask and kubectl.
struct Stage {
    scratch: PathBuf,
    kubeconfig: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl Stage {
    fn new(name: &str, decoy: &RunningCluster) -> Stage {
        let scratch = scratch_dir(name);
        for dir in ["gcloud", "docker", "kube-cache", "state"] {
            std::fs::create_dir_all(scratch.join(dir)).unwrap();
        }
        std::fs::write(scratch.join("token"), TOKEN).unwrap();
        // The decoy is the current context from the start.
        let kubeconfig = scratch.join("kubeconfig");
        std::fs::write(&kubeconfig, decoy.kubeconfig(DECOY_CONTEXT, "decoy-token")).unwrap();
        Stage {
            scratch,
            kubeconfig,
            extra_env: Vec::new(),
        }
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("XTASK_STATE_DIR", self.scratch.join("state"))
            .env_remove("XTASK_TARGET")
            .env_remove("CARGO")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.scratch.join("kube-cache"))
            .env("CLOUDSDK_CONFIG", self.scratch.join("gcloud"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", self.scratch.join("token"))
            // What gke-gcloud-auth-plugin hands kubectl.
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN", TOKEN)
            .env("DOCKER_CONFIG", self.scratch.join("docker"));
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        command
    }

    fn xtask(&self, args: &[&str]) -> Output {
        let started = Instant::now();
        let output = self.command(env!("CARGO_BIN_EXE_xtask"), args).output().unwrap();
        eprintln!(
            "=== cargo xtask {} -> {} in {:.1?}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            output.status,
            started.elapsed(),
            stdout(&output),
            stderr(&output)
        );
        output
    }

    fn xtask_ok(&self, args: &[&str]) -> Output {
        let output = self.xtask(args);
        assert!(output.status.success(), "cargo xtask {args:?} failed");
        output
    }

    fn kubectl_json(&self, context: &str, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["--context", context, "--output", "json"]);
        let output = self.command("kubectl", &full).output().unwrap();
        assert!(output.status.success(), "kubectl {full:?}: {}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn deployment(&self, context: &str, namespace: &str) -> Value {
        self.kubectl_json(
            context,
            &["get", "deployment", "score-app", "--namespace", namespace],
        )
    }
}

fn progressing_reason(deployment: &Value) -> String {
    deployment["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing")
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn image_of(deployment: &Value) -> String {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn pushed_tag(stage: &Stage, target: &str) -> String {
    let record = std::fs::read_to_string(stage.scratch.join(format!("state/{target}/pushed.json"))).unwrap();
    serde_json::from_str::<Value>(&record).unwrap()["tag"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
#[ignore = "needs a Docker engine, docker-registry, gcloud with gke-gcloud-auth-plugin, and kubectl"]
fn rehearsal_gke_cluster_up_ship_rescale_crash_rollback_and_down() {
    let decoy = cluster(ClusterOptions {
        kubelet: Kubelet::Simulated,
        ..ClusterOptions::new("decoy-token")
    });
    let kube = cluster(ClusterOptions {
        // A crashing rollout is declared failed in seconds, not the default ten minutes.
        progress_deadline: Some(Duration::from_secs(10)),
        ..ClusterOptions::new(TOKEN)
    });
    let cloud = FakeGoogleCloud::start_with(ClusterEndpoint {
        address: kube.url().trim_start_matches("https://").to_owned(),
        ca_base64: base64::engine::general_purpose::STANDARD.encode(kube.ca_pem()),
    });
    let mut stage = Stage::new("rehearsal-gke", &decoy);
    let endpoint = cloud.endpoint();
    for api in ["CONTAINER", "SERVICEUSAGE", "ARTIFACTREGISTRY"] {
        stage
            .extra_env
            .push((format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"), endpoint.clone()));
    }
    let registry = LocalRegistry::start(&stage.scratch);
    // The local registry stands in for Artifact Registry, under the same path.
    let stand_in = format!("{}/{PROJECT}/ml-images", registry.address);
    let started = Instant::now();

    // cluster-up: real gcloud creates the cluster and fetches its credentials, which
    // makes it the current context. Put the decoy back: ship must not depend on that.
    stage.xtask_ok(&["cluster-up", "--project", PROJECT]);
    let use_decoy = stage
        .command("kubectl", &["config", "use-context", DECOY_CONTEXT])
        .output()
        .unwrap();
    assert!(use_decoy.status.success());
    let kubeconfig = std::fs::read_to_string(&stage.kubeconfig).unwrap();
    assert!(
        kubeconfig.contains("command: gke-gcloud-auth-plugin"),
        "{kubeconfig}"
    );

    // The first ship: build, push, render, diff, apply, rollout, smoke through the LB.
    let ship = [
        "ship",
        "--target",
        "gke",
        "--project",
        PROJECT,
        "--registry",
        &stand_in,
        "--rollout-timeout",
        "120",
    ];
    let first = stage.xtask_ok(&ship);
    assert!(
        stdout(&first).contains("smoke test passed: http://127."),
        "{}",
        stdout(&first)
    );
    let deployment = stage.deployment(GKE_CONTEXT, "mlops");
    let digest = registry_digest(
        &registry,
        &format!("{PROJECT}/ml-images/score-service"),
        &pushed_tag(&stage, "gke"),
    );
    let pinned = format!("{stand_in}/score-service@{digest}");
    assert_eq!(
        image_of(&deployment),
        pinned,
        "the Deployment runs exactly what the registry holds"
    );
    assert_eq!(deployment["spec"]["replicas"], 1, "the dev overlay's count");

    // Another replica count: applied, though the image is the same.
    let two = [&ship[..], &["--replicas", "2"]].concat();
    let rescaled = stage.xtask_ok(&two);
    assert!(
        stdout(&rescaled).contains("+  replicas: 2"),
        "the diff shows the change"
    );
    let deployment = stage.deployment(GKE_CONTEXT, "mlops");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["status"]["readyReplicas"], 2);
    // Kept, not rebuilt: a rebuild by the legacy builder is a new digest whenever its
    // cache misses (the other rehearsal builds the same Dockerfile at the same time).
    assert_eq!(image_of(&deployment), pinned, "the same tree, the same image");

    // Unchanged: applied again, and nothing changes.
    let unchanged = stage.xtask_ok(&two);
    assert!(
        stderr(&unchanged).contains("the cluster already holds exactly these manifests"),
        "{}",
        stderr(&unchanged)
    );
    assert_eq!(
        stage.deployment(GKE_CONTEXT, "mlops")["metadata"]["generation"],
        deployment["metadata"]["generation"]
    );

    // A model the service refuses at start: the pods crash; the deploy says why, and
    // rolls back to the revision that works.
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo/knn_cdist.onnx");
    let crash = [
        &two[..],
        &["--model", broken.to_str().unwrap(), "--rollback-on-failure"],
    ]
    .concat();
    let crashed = stage.xtask(&crash);
    assert!(!crashed.status.success());
    let why = stderr(&crashed);
    for expected in [
        "it failed; finding out why",
        "restarts:",
        "BackOff",
        "operator CDist (node \\\"",
        &format!("$ kubectl rollout undo deployment/score-app --context {GKE_CONTEXT} --namespace mlops"),
        // What the cluster serves is read from it after the rollback, not presumed.
        "rolled back, and read after it the cluster serves revision 3",
        &format!("image {pinned}), 2 of 2 pods ready"),
    ] {
        assert!(why.contains(expected), "{expected:?} missing from:\n{why}");
    }
    // The namespace's warnings, sorted by kubectl (the fake carries each row's object),
    // are printed, not an empty list.
    let warnings = why
        .split("warnings in the namespace, latest last:")
        .nth(1)
        .unwrap_or_default();
    assert!(
        warnings
            .lines()
            .take(13)
            .any(|line| line.contains("Warning") && line.contains("BackOff")),
        "no warning events in:\n{why}"
    );
    assert_eq!(
        image_of(&stage.deployment(GKE_CONTEXT, "mlops")),
        pinned,
        "rolled back"
    );
    stage.xtask_ok(&["smoke", "--target", "gke", "--project", PROJECT]);

    // The default path: --rollout-timeout ends the wait before the deadline. No rollback
    // was asked: the old pods still serve, and the error says so, read from the cluster.
    let settings = [
        "--target",
        "gke",
        "--project",
        PROJECT,
        "--registry",
        &stand_in,
        "--replicas",
        "2",
    ];
    let short = [
        &["ship"][..],
        &settings,
        &["--model", broken.to_str().unwrap(), "--rollout-timeout", "4"],
    ]
    .concat();
    let timed_out = stage.xtask(&short);
    assert!(!timed_out.status.success());
    let why = stderr(&timed_out);
    for expected in [
        "timed out waiting for the condition",
        "the new pods did not become ready (why: above); the cluster serves revision",
        "2 of 2 pods ready, 1 up to date",
    ] {
        assert!(why.contains(expected), "{expected:?} missing from:\n{why}");
    }
    stage.xtask_ok(&["smoke", "--target", "gke", "--project", PROJECT]);
    // Left alone, the stalled rollout reaches its deadline (10 s here) …
    let deadline = Instant::now() + Duration::from_secs(60);
    while progressing_reason(&stage.deployment(GKE_CONTEXT, "mlops")) != "ProgressDeadlineExceeded" {
        assert!(Instant::now() < deadline, "the stalled rollout never timed out");
        std::thread::sleep(Duration::from_millis(500));
    }
    // … which the controller keeps through the next apply of the working template until
    // that shows progress: the same ship, run again, waits for progress and completes.
    let again = stage.xtask_ok(&[&["ship"][..], &settings, &["--rollout-timeout", "120"]].concat());
    let said = stderr(&again);
    assert!(
        said.contains("# it had: its ProgressDeadlineExceeded stays until this rollout progresses")
            && said.contains("$ kubectl wait deployment/score-app --for=condition=Progressing"),
        "{said}"
    );
    let deployment = stage.deployment(GKE_CONTEXT, "mlops");
    assert_eq!(
        (
            image_of(&deployment),
            deployment["status"]["readyReplicas"].clone()
        ),
        (pinned.clone(), 2.into())
    );

    // An image the registry does not hold (deleted by a clean-up policy, say): the kubelet
    // retries the pull for ever, so the wait is stopped at ImagePullBackOff, within
    // seconds, and rolled back.
    let record = stage.scratch.join("state/gke/pushed.json");
    let pushed = std::fs::read_to_string(&record).unwrap();
    let digest = pinned.rsplit_once('@').unwrap().1.to_owned();
    let missing = format!("sha256:{}", "0".repeat(64));
    std::fs::write(&record, pushed.replace(&digest, &missing)).unwrap();
    let deploy = [
        &["deploy"][..],
        &settings,
        &["--rollout-timeout", "120", "--rollback-on-failure"],
    ]
    .concat();
    let unpullable = stage.xtask(&deploy);
    assert!(!unpullable.status.success());
    let why = stderr(&unpullable);
    for expected in [
        "failed with a stop by its watch: pod score-app-",
        &format!("cannot pull {stand_in}/score-service@{missing}: ImagePullBackOff"),
        "rolled back, and read after it the cluster serves revision",
        &format!("image {pinned}), 2 of 2 pods ready"),
    ] {
        assert!(why.contains(expected), "{expected:?} missing from:\n{why}");
    }
    assert!(!why.contains("exceeded its progress deadline"), "{why}");
    // With the image back in the record, the same deploy completes.
    std::fs::write(&record, &pushed).unwrap();
    stage.xtask_ok(&deploy);
    assert_eq!(image_of(&stage.deployment(GKE_CONTEXT, "mlops")), pinned);

    // What runs where, and its logs.
    let status = stage.xtask_ok(&["status", "--target", "gke", "--project", PROJECT]);
    let status = stdout(&status);
    assert!(
        status.contains(&pinned) && status.contains("2 ready of 2 wanted"),
        "{status}"
    );
    assert!(
        status.contains("model     identity") && status.contains("address   http://127."),
        "{status}"
    );
    let logs = stage.xtask_ok(&["logs", "--target", "gke", "--project", PROJECT, "--tail", "5"]);
    assert!(
        stdout(&logs).contains("\"message\":\"listening\""),
        "{}",
        stdout(&logs)
    );

    stage.xtask_ok(&["down", "--target", "gke", "--project", PROJECT]);
    let gone = stage
        .command(
            "kubectl",
            &[
                "get",
                "deployment",
                "score-app",
                "--namespace",
                "mlops",
                "--context",
                GKE_CONTEXT,
            ],
        )
        .output()
        .unwrap();
    assert!(stderr(&gone).contains("not found"), "{}", stderr(&gone));
    stage.xtask_ok(&["cluster-down", "--yes", "--project", PROJECT]);
    let deleted = cloud.requests();
    assert!(
        deleted
            .iter()
            .any(|r| r
                .starts_with("DELETE /v1/projects/my-proj-1/locations/us-west1-b/clusters/k8s-ml-cluster")),
        "{deleted:#?}"
    );
    eprintln!("rehearsal took {:.1?}", started.elapsed());
    eprintln!("the fake API's request log:\n  {}", kube.requests().join("\n  "));
    assert_eq!(
        decoy.requests(),
        Vec::<String>::new(),
        "nothing reached the decoy context"
    );
    kube.shutdown();
}

#[test]
#[ignore = "needs a Docker engine, docker-registry and kubectl"]
fn rehearsal_kube_ships_a_20_megabyte_model_to_any_cluster() {
    let decoy = cluster(ClusterOptions {
        kubelet: Kubelet::Simulated,
        ..ClusterOptions::new("decoy-token")
    });
    // An EKS-like cluster: its load balancers report a hostname, not an IP.
    let kube = cluster(ClusterOptions {
        load_balancer_hostname: true,
        ..ClusterOptions::new("kube-token")
    });
    let stage = Stage::new("rehearsal-kube", &decoy);
    // Add the cluster's context beside the decoy, which stays current.
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&stage.kubeconfig).unwrap()).unwrap();
    let other: serde_yaml::Value = serde_yaml::from_str(&kube.kubeconfig("eks-like", "kube-token")).unwrap();
    for list in ["clusters", "users", "contexts"] {
        let extra = other[list].as_sequence().unwrap().clone();
        config[list].as_sequence_mut().unwrap().extend(extra);
    }
    std::fs::write(&stage.kubeconfig, serde_yaml::to_string(&config).unwrap()).unwrap();
    let registry = LocalRegistry::start(&stage.scratch);
    let model = stage.scratch.join("wide_linear.onnx");
    write_ballast_model(&model, 20 << 20);

    let target = [
        "--target",
        "kube",
        "--context",
        "eks-like",
        "--registry",
        &registry.address,
        "--namespace",
        "serving",
    ];
    let ship = [&["ship", "--model", model.to_str().unwrap()][..], &target].concat();
    let shipped = stage.xtask_ok(&ship);
    assert!(
        stdout(&shipped).contains("smoke test passed: http://localhost:"),
        "{}",
        stdout(&shipped)
    );
    let deployment = stage.deployment("eks-like", "serving");
    let digest = registry_digest(&registry, "score-service", &pushed_tag(&stage, "kube"));
    assert_eq!(
        image_of(&deployment),
        format!("{}/score-service@{digest}", registry.address)
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["score-service/model"],
        "wide_linear"
    );

    let status = stage.xtask_ok(&[&["status"][..], &target].concat());
    let status = stdout(&status);
    assert!(
        status.contains("model     wide_linear") && status.contains("address   http://localhost:5000"),
        "{status}"
    );
    let logs = stage.xtask_ok(&[&["logs", "--tail", "5"][..], &target].concat());
    assert!(
        stdout(&logs).contains("wide_linear"),
        "the start-up line names the model: {}",
        stdout(&logs)
    );

    // A model repository: the directory travels as the model image's layer, and the smoke
    // test asks each model for a row.
    let repository = stage.scratch.join("repository");
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo");
    for (model, file) in [
        ("fraud", "linear_regression.onnx"),
        ("churn", "logistic_multiclass.onnx"),
    ] {
        std::fs::create_dir_all(repository.join(model).join("1")).unwrap();
        std::fs::copy(zoo.join(file), repository.join(model).join("1/model.onnx")).unwrap();
    }
    let ship = [
        &["ship", "--model-repository", repository.to_str().unwrap()][..],
        &target,
    ]
    .concat();
    let shipped = stdout(&stage.xtask_ok(&ship));
    for passed in [
        "/score/churn answered {\"score\":[",
        "/score/fraud answered {\"score\":[",
    ] {
        assert!(shipped.contains(passed), "{passed:?} missing from:\n{shipped}");
    }
    let deployment = stage.deployment("eks-like", "serving");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["score-service/model"],
        "churn, fraud"
    );
    let status = stdout(&stage.xtask_ok(&[&["status"][..], &target].concat()));
    assert!(status.contains("model     churn, fraud"), "{status}");
    // Each pod says, through the pod proxy, what it serves (a rollout's old pod, still
    // terminating, is shown as such and not asked).
    let pods: Vec<&str> = status
        .lines()
        .filter(|line| line.starts_with("pod ") && !line.ends_with(" serves (Terminating)"))
        .collect();
    assert!(!pods.is_empty(), "{status}");
    assert!(
        pods.iter().all(|line| line.ends_with(" serves churn 1, fraud 1")),
        "{status}"
    );

    // Several files: each travels in the model image, named by its file.
    let (fraud, churn) = (
        zoo.join("linear_regression.onnx"),
        zoo.join("logistic_multiclass.onnx"),
    );
    let (fraud, churn) = (fraud.to_str().unwrap(), churn.to_str().unwrap());
    let ship = [&["ship", "--model", fraud, "--model", churn][..], &target].concat();
    let shipped = stdout(&stage.xtask_ok(&ship));
    for passed in [
        "/score/linear_regression answered {\"score\":[",
        "/score/logistic_multiclass answered {\"score\":[",
    ] {
        assert!(shipped.contains(passed), "{passed:?} missing from:\n{shipped}");
    }
    stage.xtask_ok(&[&["down"][..], &target].concat());
    assert_eq!(
        decoy.requests(),
        Vec::<String>::new(),
        "nothing reached the decoy context"
    );
    kube.shutdown();
}

/// An ONNX linear regressor over 4 features (`Y = X · W`), carrying `size` bytes of
/// incompressible weights besides, as a large model does: written here, byte by byte, in
/// ONNX's protobuf encoding.
fn write_ballast_model(path: &Path, size: usize) {
    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    fn int_field(out: &mut Vec<u8>, field: u64, value: u64) {
        varint(out, field << 3);
        varint(out, value);
    }
    fn tensor(name: &str, dims: &[u64], raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for dim in dims {
            int_field(&mut out, 1, *dim);
        }
        int_field(&mut out, 2, 1); // FLOAT
        bytes_field(&mut out, 8, name.as_bytes());
        bytes_field(&mut out, 9, raw);
        out
    }
    fn value_info(name: &str, dims: [Result<u64, &str>; 2]) -> Vec<u8> {
        let mut shape = Vec::new();
        for dim in dims {
            let mut dimension = Vec::new();
            match dim {
                Ok(value) => int_field(&mut dimension, 1, value),
                Err(param) => bytes_field(&mut dimension, 2, param.as_bytes()),
            }
            bytes_field(&mut shape, 1, &dimension);
        }
        let mut tensor_type = Vec::new();
        int_field(&mut tensor_type, 1, 1); // FLOAT
        bytes_field(&mut tensor_type, 2, &shape);
        let mut type_proto = Vec::new();
        bytes_field(&mut type_proto, 1, &tensor_type);
        let mut out = Vec::new();
        bytes_field(&mut out, 1, name.as_bytes());
        bytes_field(&mut out, 2, &type_proto);
        out
    }
    let floats = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    // xorshift: weights that no compression shrinks, so the image carries every byte.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let ballast: Vec<f32> = (0..size / 4)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let mut node = Vec::new();
    bytes_field(&mut node, 1, b"X");
    bytes_field(&mut node, 1, b"W");
    bytes_field(&mut node, 2, b"Y");
    bytes_field(&mut node, 3, b"linear");
    bytes_field(&mut node, 4, b"MatMul");
    let mut graph = Vec::new();
    bytes_field(&mut graph, 1, &node);
    bytes_field(&mut graph, 2, b"wide_linear");
    bytes_field(
        &mut graph,
        5,
        &tensor("W", &[4, 1], &floats(&[0.5, 1.0, -1.0, 2.0])),
    );
    bytes_field(
        &mut graph,
        5,
        &tensor("ballast", &[ballast.len() as u64], &floats(&ballast)),
    );
    bytes_field(&mut graph, 11, &value_info("X", [Err("N"), Ok(4)]));
    bytes_field(&mut graph, 12, &value_info("Y", [Err("N"), Ok(1)]));
    let mut opset = Vec::new();
    bytes_field(&mut opset, 1, b"");
    int_field(&mut opset, 2, 13);
    let mut model = Vec::new();
    int_field(&mut model, 1, 8); // IR version
    bytes_field(&mut model, 2, b"xtask rehearsal");
    bytes_field(&mut model, 7, &graph);
    bytes_field(&mut model, 8, &opset);
    std::fs::write(path, model).unwrap();
}
