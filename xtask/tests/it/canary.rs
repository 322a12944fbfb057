//! Canary releases, rehearsed on a fake cluster whose kubelet runs the pods in Docker
//! (with real kubectl, a real registry and the real service): a release that answers as
//! the stable one does is promoted; one that answers differently, and one that is slower,
//! are aborted with the stable track untouched. Traffic flows through the load balancer
//! the whole time, as users' would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fake_kube::registry::LocalRegistry;
use fake_kube::{ClusterOptions, FakeCluster, Kubelet};
use serde_json::Value;

use crate::support::*;

fn models() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo")
}

/// Sends the same 6-feature row to `address` over and over until `stop`, counting answers
/// by whether they were 200.
fn send_traffic(address: String, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>, failed: Arc<AtomicU64>) {
    let body = r#"{"X": [[0.1, -0.2, 0.3, 0.4, -0.5, 0.6]]}"#;
    while !stop.load(Ordering::Relaxed) {
        let outcome = (|| -> std::io::Result<bool> {
            let mut stream = TcpStream::connect(&address)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                stream,
                "POST /score HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer.starts_with("HTTP/1.1 200"))
        })();
        match outcome {
            Ok(true) => answered.fetch_add(1, Ordering::Relaxed),
            _ => failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// An ONNX model over 6 features, `depth` 512x512 matrix products deep: the same input
/// as the zoo's regressors, about 40 µs a row per product on this machine.
fn write_slow_model(path: &Path, depth: usize) {
    use prost_free::*;
    let hidden = 512u64;
    let identity: Vec<f32> = (0..hidden * hidden)
        .map(|i| if i / hidden == i % hidden { 1.0 } else { 0.0 })
        .collect();
    let input: Vec<f32> = (0..6 * hidden)
        .map(|i| if i % hidden < 6 { 0.1 } else { 0.0 })
        .collect();
    let output: Vec<f32> = vec![0.01; hidden as usize];
    let mut graph = Vec::new();
    let mut previous = "X".to_owned();
    let mut names = vec![("W_in", "X", "h0".to_owned())];
    for layer in 1..=depth {
        names.push(("W", "", format!("h{layer}")));
    }
    for (index, (weights, _, out)) in names.iter().enumerate() {
        let input = if index == 0 {
            "X".to_owned()
        } else {
            previous.clone()
        };
        bytes_field(&mut graph, 1, &node(&[&input, weights], out, "MatMul"));
        previous = out.clone();
    }
    bytes_field(&mut graph, 1, &node(&[&previous, "W_out"], "Y", "MatMul"));
    bytes_field(&mut graph, 2, b"slow");
    bytes_field(&mut graph, 5, &tensor("W_in", &[6, hidden], &input));
    bytes_field(&mut graph, 5, &tensor("W", &[hidden, hidden], &identity));
    bytes_field(&mut graph, 5, &tensor("W_out", &[hidden, 1], &output));
    bytes_field(&mut graph, 11, &value_info("X", 6));
    bytes_field(&mut graph, 12, &value_info("Y", 1));
    let mut opset = Vec::new();
    bytes_field(&mut opset, 1, b"");
    int_field(&mut opset, 2, 13);
    let mut model = Vec::new();
    int_field(&mut model, 1, 8);
    bytes_field(&mut model, 7, &graph);
    bytes_field(&mut model, 8, &opset);
    std::fs::write(path, model).unwrap();
}

/// Just enough of ONNX's protobuf encoding to write a graph of MatMuls.
mod prost_free {
    pub(super) fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    pub(super) fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    pub(super) fn int_field(out: &mut Vec<u8>, field: u64, value: u64) {
        varint(out, field << 3);
        varint(out, value);
    }
    pub(super) fn node(inputs: &[&str], output: &str, op: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for input in inputs {
            bytes_field(&mut out, 1, input.as_bytes());
        }
        bytes_field(&mut out, 2, output.as_bytes());
        bytes_field(&mut out, 4, op.as_bytes());
        out
    }
    pub(super) fn tensor(name: &str, dims: &[u64], values: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for dim in dims {
            int_field(&mut out, 1, *dim);
        }
        int_field(&mut out, 2, 1);
        bytes_field(&mut out, 8, name.as_bytes());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_field(&mut out, 9, &raw);
        out
    }
    /// A float input or output `[N, width]`.
    pub(super) fn value_info(name: &str, width: u64) -> Vec<u8> {
        let mut shape = Vec::new();
        let mut batch = Vec::new();
        bytes_field(&mut batch, 2, b"N");
        bytes_field(&mut shape, 1, &batch);
        let mut fixed = Vec::new();
        int_field(&mut fixed, 1, width);
        bytes_field(&mut shape, 1, &fixed);
        let mut tensor_type = Vec::new();
        int_field(&mut tensor_type, 1, 1);
        bytes_field(&mut tensor_type, 2, &shape);
        let mut type_proto = Vec::new();
        bytes_field(&mut type_proto, 1, &tensor_type);
        let mut out = Vec::new();
        bytes_field(&mut out, 1, name.as_bytes());
        bytes_field(&mut out, 2, &type_proto);
        out
    }
}

fn xtask(scratch: &Path, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_STATE_DIR", scratch.join("state"))
        .env_remove("XTASK_TARGET")
        .env_remove("CARGO")
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", scratch.join("kube-cache"))
        .env("DOCKER_CONFIG", scratch.join("docker"))
        .output()
        .unwrap();
    eprintln!(
        "=== cargo xtask {} -> {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

/// Runs the xtask as `xtask` does, and runs `act` once, when its stderr first shows a line
/// holding `marker`: a fault injected at a known point of the plan.
fn xtask_with_fault(
    scratch: &Path,
    kubeconfig: &Path,
    args: &[&str],
    marker: &str,
    act: impl FnOnce(),
) -> std::process::Output {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_STATE_DIR", scratch.join("state"))
        .env_remove("XTASK_TARGET")
        .env_remove("CARGO")
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", scratch.join("kube-cache"))
        .env("DOCKER_CONFIG", scratch.join("docker"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut text = Vec::new();
        out.read_to_end(&mut text).unwrap();
        text
    });
    let mut stderr_text = Vec::new();
    let mut act = Some(act);
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).split(b'\n') {
        let line = line.unwrap();
        if String::from_utf8_lossy(&line).contains(marker)
            && let Some(act) = act.take()
        {
            act();
        }
        stderr_text.extend(line);
        stderr_text.push(b'\n');
    }
    let output = std::process::Output {
        status: child.wait().unwrap(),
        stdout: reading.join().unwrap(),
        stderr: stderr_text,
    };
    eprintln!(
        "=== cargo xtask {} (a fault at {marker:?}) -> {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        output.status,
        stdout(&output),
        stderr(&output)
    );
    assert!(act.is_none(), "the plan never reached {marker:?}");
    output
}

/// Deletes pods as a node's loss or an eviction would, without waiting.
fn delete_pods(kubeconfig: &Path, pods: &[String]) {
    let output = std::process::Command::new("kubectl")
        .args([
            "delete",
            "pods",
            "--wait=false",
            "--context",
            "canary",
            "--namespace",
            "mlops",
        ])
        .args(pods)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl delete pods: {}",
        stderr(&output)
    );
}

/// The pods `selector` picks, newest first.
fn pods(kubeconfig: &Path, selector: &str) -> Vec<String> {
    let list = kubectl_json(kubeconfig, &["get", "pods", "--selector", selector]);
    let mut pods: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| {
            (
                pod["metadata"]["creationTimestamp"].as_str().unwrap().to_owned(),
                pod["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pods.sort();
    pods.into_iter().rev().map(|(_, name)| name).collect()
}

fn kubectl_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let output = std::process::Command::new("kubectl")
        .args(args)
        .args(["--context", "canary", "--namespace", "mlops", "--output", "json"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(output.status.success(), "kubectl {args:?}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stable_image(kubeconfig: &Path) -> String {
    kubectl_json(kubeconfig, &["get", "deployment", "score-app"])["spec"]["template"]["spec"]["containers"][0]
        ["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn deployments(kubeconfig: &Path) -> Vec<String> {
    kubectl_json(kubeconfig, &["get", "deployments"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A fake cluster whose kubelet runs pods in Docker, a registry beside it, and a scratch
/// directory with the kubeconfig (context `canary`) the xtask is given.
struct Stage {
    kube: fake_kube::RunningCluster,
    scratch: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    registry: LocalRegistry,
}

impl Stage {
    fn start(name: &str) -> Stage {
        let kube = FakeCluster::start_blocking(ClusterOptions {
            kubelet: Kubelet::Docker,
            ..ClusterOptions::new("canary-token")
        })
        .unwrap();
        let scratch = scratch_dir(name);
        for dir in ["docker", "kube-cache", "state"] {
            std::fs::create_dir_all(scratch.join(dir)).unwrap();
        }
        let kubeconfig = scratch.join("kubeconfig");
        std::fs::write(&kubeconfig, kube.kubeconfig("canary", "canary-token")).unwrap();
        let registry = LocalRegistry::start(&scratch);
        Stage {
            kube,
            scratch,
            kubeconfig,
            registry,
        }
    }
}

/// The flags that point the xtask at a stage's cluster and registry, and `more`.
fn target_flags<'a>(registry: &'a LocalRegistry, more: &[&'a str]) -> Vec<&'a str> {
    [
        &[
            "--target",
            "kube",
            "--context",
            "canary",
            "--registry",
            &registry.address,
        ][..],
        more,
    ]
    .concat()
}

/// `ship` of `model` on two pods, with `target` and `extra` flags.
fn ship_two(
    scratch: &Path,
    kubeconfig: &Path,
    target: &[&str],
    model: &Path,
    extra: &[&str],
) -> std::process::Output {
    let args = [
        &["ship", "--replicas", "2", "--model", model.to_str().unwrap()][..],
        target,
        extra,
    ]
    .concat();
    xtask(scratch, kubeconfig, &args)
}

/// Users' requests, sent to `address` without pause until stopped, counted.
struct Traffic {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Traffic {
    fn start(address: String) -> Traffic {
        let (stop, answered, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = std::thread::spawn({
            let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
            move || send_traffic(address, stop, answered, failed)
        });
        Traffic {
            stop,
            answered,
            failed,
            thread,
        }
    }

    /// Stops, and says how many requests were answered 200 and how many were not.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.answered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[test]
#[ignore = "needs a Docker engine, docker-registry and kubectl"]
fn rehearsal_canary_promotes_a_release_that_agrees_and_aborts_one_that_answers_differently_or_slower() {
    let Stage {
        kube,
        scratch,
        kubeconfig,
        registry,
    } = Stage::start("rehearsal-canary");
    let target = target_flags(&registry, &[]);
    let ship = |model: &Path, extra: &[&str]| ship_two(&scratch, &kubeconfig, &target, model, extra);

    // The stable track: a linear regression over 6 features, two pods.
    let stable = ship(&models().join("linear_regression.onnx"), &[]);
    assert!(stable.status.success());
    let service = kubectl_json(&kubeconfig, &["get", "service", "score-app"]);
    let address = format!(
        "{}:5000",
        service["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .unwrap()
    );
    let traffic = Traffic::start(address);
    let canary = ["--canary", "50", "--canary-duration", "6s"];

    // A release that answers as the stable one does (the same model, retrained to the
    // same weights, under another name): a new image, promoted.
    let before = stable_image(&kubeconfig);
    let same = scratch.join("linear_regression_v2.onnx");
    std::fs::copy(models().join("linear_regression.onnx"), &same).unwrap();
    let promoted = ship(&same, &canary);
    assert!(promoted.status.success());
    let out = stdout(&promoted);
    for expected in ["| stable |", "| canary |", "verdict: PASS"] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    assert!(stderr(&promoted).contains("the canary passed its analysis: promote it: yes"));
    assert!(
        stderr(&promoted).contains("the canary gets 2 pod(s) beside its 2: 50% of requests"),
        "{}",
        stderr(&promoted)
    );
    let after = stable_image(&kubeconfig);
    assert_ne!(after, before, "the stable track took the canary's image");
    assert_eq!(deployments(&kubeconfig), ["score-app"], "the canary is gone");

    // A release that answers differently: aborted, the stable track untouched.
    let wrong = ship(&models().join("linear_svr.onnx"), &canary);
    assert!(!wrong.status.success());
    let why = format!("{}{}", stdout(&wrong), stderr(&wrong));
    for expected in [
        "verdict: FAIL",
        "the canary answered",
        "the canary failed its analysis: abort it: yes",
        "the stable track, untouched, serves revision",
    ] {
        assert!(why.contains(expected), "{expected:?} missing from:\n{why}");
    }
    assert_eq!(stable_image(&kubeconfig), after, "the stable track is untouched");
    assert_eq!(deployments(&kubeconfig), ["score-app"], "the canary is gone");

    // A release that answers within any tolerance, but slower: aborted on its latency.
    let slow = scratch.join("slow.onnx");
    // 400 deep, about 16 ms a row: far past the p99 a busy 2-core machine gives the
    // stable track (5-6 ms seen in CI with builds beside it, where 48 deep, 2 ms, hid).
    write_slow_model(&slow, 400);
    let slower = ship(
        &slow,
        &[
            &canary[..],
            &["--agree-within", "1e12", "--latency-slack-ms", "1"],
        ]
        .concat(),
    );
    assert!(!slower.status.success());
    let why = format!("{}{}", stdout(&slower), stderr(&slower));
    assert!(
        why.contains("verdict: FAIL") && why.contains("p99 latency"),
        "{why}"
    );
    assert_eq!(stable_image(&kubeconfig), after, "the stable track is untouched");
    assert_eq!(deployments(&kubeconfig), ["score-app"]);

    // A pod lost in the middle of a rollout: its ReplicaSet replaces it, and the rollout
    // completes.
    let third = scratch.join("linear_regression_v3.onnx");
    std::fs::copy(models().join("linear_regression.onnx"), &third).unwrap();
    let args = [
        &["ship", "--replicas", "2", "--model", third.to_str().unwrap()][..],
        &target,
    ]
    .concat();
    let rolled = xtask_with_fault(&scratch, &kubeconfig, &args, "$ kubectl rollout status", || {
        let newest = pods(&kubeconfig, "app=score-app");
        delete_pods(&kubeconfig, &newest[..1]);
    });
    assert!(rolled.status.success());
    let rolled_out = stable_image(&kubeconfig);
    assert_ne!(rolled_out, after, "the rollout completed");

    // Canary pods lost in the middle of the analysis: what they counted is gone, so no
    // verdict can be reached; the canary is not promoted, and goes; the stable track is
    // untouched. The same ship, run again, completes.
    let fourth = scratch.join("linear_regression_v4.onnx");
    std::fs::copy(models().join("linear_regression.onnx"), &fourth).unwrap();
    let args = [
        &["ship", "--replicas", "2", "--model", fourth.to_str().unwrap()][..],
        &target,
        &canary,
    ]
    .concat();
    let lost = xtask_with_fault(&scratch, &kubeconfig, &args, "# watching both tracks", || {
        delete_pods(&kubeconfig, &pods(&kubeconfig, "app=score-app,track=canary"));
    });
    assert!(!lost.status.success());
    let why = format!("{}{}", stdout(&lost), stderr(&lost));
    for expected in [
        "the analysis could not run",
        // Why, as kubectl said it: the pod whose metrics it asked for is gone.
        "Error from server (NotFound): pods \"score-app-canary-",
        "the canary failed its analysis: abort it: yes",
        "the canary was removed, and the stable track, untouched, serves revision",
    ] {
        assert!(why.contains(expected), "{expected:?} missing from:\n{why}");
    }
    assert_eq!(
        stable_image(&kubeconfig),
        rolled_out,
        "the stable track is untouched"
    );
    assert_eq!(deployments(&kubeconfig), ["score-app"], "the canary is gone");
    let again = xtask(&scratch, &kubeconfig, &args);
    assert!(again.status.success());
    assert_ne!(stable_image(&kubeconfig), rolled_out, "promoted");

    // A release of two models, /score serving one of them: each is checked on
    // /score/{name} with a row shaped as it declares. The stable track serves neither,
    // so each has only to answer: promoted.
    let pair = scratch.join("pair");
    std::fs::create_dir_all(&pair).unwrap();
    let (fraud, churn) = (pair.join("fraud.onnx"), pair.join("churn.onnx"));
    std::fs::copy(models().join("linear_regression.onnx"), &fraud).unwrap();
    std::fs::copy(models().join("linear_regression.onnx"), &churn).unwrap();
    let two = || {
        let more = ["--model", churn.to_str().unwrap(), "--default-model", "fraud"];
        ship(&fraud, &[&more[..], &canary].concat())
    };
    let single = stable_image(&kubeconfig);
    let both = two();
    let out = format!("{}{}", stdout(&both), stderr(&both));
    assert!(both.status.success(), "{out}");
    for expected in [
        "fraud: {\"X\"",
        "churn: {\"X\"",
        "(new: the stable track does not serve it)",
        "verdict: PASS",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let pair_image = stable_image(&kubeconfig);
    assert_ne!(pair_image, single, "promoted");
    // churn retrained to answer differently: both tracks serve it now, so its answers are
    // compared, and the release is aborted, naming it.
    std::fs::copy(models().join("linear_svr.onnx"), &churn).unwrap();
    let differs = two();
    let why = format!("{}{}", stdout(&differs), stderr(&differs));
    assert!(!differs.status.success(), "{why}");
    assert!(
        why.contains("verdict: FAIL") && why.contains("churn: the canary answered"),
        "{why}"
    );
    assert!(!why.contains("fraud: the canary"), "fraud agreed: {why}");
    assert_eq!(
        stable_image(&kubeconfig),
        pair_image,
        "the stable track is untouched"
    );
    assert_eq!(deployments(&kubeconfig), ["score-app"], "the canary is gone");
    // Back to fraud alone: the stable track serves it among two, so it is compared on
    // /score/fraud (the stable track's /score is fraud too, but need not be).
    let alone = ship(&fraud, &canary);
    let out = format!("{}{}", stdout(&alone), stderr(&alone));
    assert!(alone.status.success(), "{out}");
    assert!(
        out.contains("check: fraud: {\"X\"") && out.contains("verdict: PASS"),
        "{out}"
    );
    assert_ne!(stable_image(&kubeconfig), pair_image, "promoted");

    // By hand: abort with no canary says so, and what the stable track serves.
    let status = xtask(&scratch, &kubeconfig, &[&["status"][..], &target].concat());
    assert!(stdout(&status).contains("canary    none"), "{}", stdout(&status));
    let aborted = xtask(&scratch, &kubeconfig, &[&["abort"][..], &target].concat());
    assert!(aborted.status.success());
    assert!(stdout(&aborted).contains("aborted: the stable track serves revision"));
    let promote = xtask(&scratch, &kubeconfig, &[&["promote"][..], &target].concat());
    assert!(!promote.status.success());
    assert!(stderr(&promote).contains("there is no canary of score-app to promote"));

    let (answered, failed) = traffic.stop();
    eprintln!("traffic through the load balancer: {answered} answered 200, {failed} not");
    assert!(answered > 500, "{answered} requests answered");
    xtask(&scratch, &kubeconfig, &[&["down"][..], &target].concat());
    kube.shutdown();
}

/// The route's weights, stable's and canary's.
fn route_weights(kubeconfig: &Path) -> (u64, u64) {
    let route = kubectl_json(kubeconfig, &["get", "httproute", "score-app"]);
    let backends = &route["spec"]["rules"][0]["backendRefs"];
    assert_eq!(backends[0]["name"], "score-app-stable", "{route}");
    assert_eq!(backends[1]["name"], "score-app-canary", "{route}");
    (
        backends[0]["weight"].as_u64().unwrap(),
        backends[1]["weight"].as_u64().unwrap(),
    )
}

/// The requests a verdict's table says `track` answered.
fn requests_of(verdict: &str, track: &str) -> f64 {
    let row = format!("| {track} | ");
    let line = verdict
        .lines()
        .find(|line| line.starts_with(&row))
        .unwrap_or_else(|| panic!("no {track} row in:\n{verdict}"));
    line[row.len()..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs a Docker engine, docker-registry and kubectl"]
fn rehearsal_canary_through_a_gateway_gets_its_weight_of_requests_then_is_promoted_or_aborted() {
    let Stage {
        kube,
        scratch,
        kubeconfig,
        registry,
    } = Stage::start("rehearsal-gateway");
    let target = target_flags(&registry, &["--traffic", "gateway"]);
    let ship = |model: &Path, extra: &[&str]| ship_two(&scratch, &kubeconfig, &target, model, extra);

    // A class the cluster does not have: refused before anything is built or applied.
    let no_class = ship(
        &models().join("linear_regression.onnx"),
        &["--gateway-class", "gke-l7-typo"],
    );
    assert!(!no_class.status.success());
    assert!(
        stderr(&no_class).contains("the cluster has no GatewayClass gke-l7-typo"),
        "the missing class is not named (its output is above)"
    );
    assert!(!stderr(&no_class).contains("$ docker build"), "nothing was built");

    // The stable track behind a Gateway: the smoke test went through it, and the app's
    // Service is no load balancer of its own.
    let stable = ship(&models().join("linear_regression.onnx"), &[]);
    assert!(stable.status.success());
    let gateway = kubectl_json(&kubeconfig, &["get", "gateway", "score-app"]);
    let address = format!(
        "{}:5000",
        gateway["status"]["addresses"][0]["value"].as_str().unwrap()
    );
    assert!(
        stdout(&stable).contains(&format!("The service answers at http://{address}")),
        "the stable ship does not give the Gateway's address {address} (its output is above)"
    );
    let service = kubectl_json(&kubeconfig, &["get", "service", "score-app"]);
    assert_eq!(service["spec"]["type"], "ClusterIP");
    let tools = xtask(&scratch, &kubeconfig, &[&["tools"][..], &target].concat());
    assert!(
        stdout(&tools).contains("may patch httproutes.gateway.networking.k8s.io in mlops yes"),
        "tools does not ask whether routes may be patched (its output is above)"
    );
    assert_eq!(route_weights(&kubeconfig), (100, 0));
    let traffic = Traffic::start(address);
    // One canary pod beside two stable ones: a third of the pods, a fifth of requests.
    let canary = ["--canary", "20", "--canary-duration", "6s"];

    let before = stable_image(&kubeconfig);
    let same = scratch.join("linear_regression_v2.onnx");
    std::fs::copy(models().join("linear_regression.onnx"), &same).unwrap();
    let promoted = ship(&same, &canary);
    assert!(
        promoted.status.success(),
        "the canary ship failed (its output is above)"
    );
    let (out, err) = (stdout(&promoted), stderr(&promoted));
    assert!(
        out.contains("verdict: PASS"),
        "the canary did not pass (its output is above)"
    );
    assert!(
        err.contains("the canary gets 1 pod(s) beside its 2: the route sends it 20% of requests")
            && err.contains("patch httproutes.gateway.networking.k8s.io/score-app --type json")
            && err.contains("# the canary answered no request for 10s"),
        "the canary's plan or drain is not as expected (its output is above)"
    );
    // 20% by weight, not the 33% the pods' share would give.
    let share = requests_of(&out, "canary") / (requests_of(&out, "canary") + requests_of(&out, "stable"));
    assert!(
        (0.1..0.28).contains(&share),
        "the canary's share of requests: {share}"
    );
    assert_ne!(stable_image(&kubeconfig), before, "promoted");
    assert_eq!(
        route_weights(&kubeconfig),
        (100, 0),
        "every request back on the stable track"
    );
    assert_eq!(deployments(&kubeconfig), ["score-app"], "the canary is gone");

    // One that answers differently: aborted, the route moved back before the canary went.
    let after = stable_image(&kubeconfig);
    let wrong = ship(&models().join("linear_svr.onnx"), &canary);
    assert!(!wrong.status.success());
    let why = format!("{}{}", stdout(&wrong), stderr(&wrong));
    for expected in [
        "verdict: FAIL",
        "the canary failed its analysis: abort it: yes",
        "the canary was removed, and the stable track, untouched, serves revision",
    ] {
        assert!(
            why.contains(expected),
            "{expected:?} missing from the abort's output above"
        );
    }
    assert_eq!(stable_image(&kubeconfig), after, "the stable track is untouched");
    assert_eq!(route_weights(&kubeconfig), (100, 0));
    assert_eq!(deployments(&kubeconfig), ["score-app"]);

    let status = xtask(&scratch, &kubeconfig, &[&["status"][..], &target].concat());
    assert!(
        stdout(&status).contains("canary    none"),
        "status shows a canary (its output is above)"
    );

    let (answered, failed) = traffic.stop();
    eprintln!("traffic through the gateway: {answered} answered 200, {failed} not");
    assert!(answered > 200, "{answered} requests answered");
    assert_eq!(failed, 0, "no request failed through promotion and abort");
    let down = xtask(&scratch, &kubeconfig, &[&["down"][..], &target].concat());
    assert!(down.status.success());
    kube.shutdown();
}
