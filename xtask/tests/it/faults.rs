//! Faults, rehearsed on a fake cluster whose kubelet runs the pods in Docker, with real
//! kubectl, a real registry and the real service: the registry down during a push, and the
//! API server failing (500), turning clients away (429 with Retry-After) and timing out
//! (504). Each fault either passes unnoticed because the client retries as it should, or
//! ends the ship with a non-zero exit naming the command and the cause, the stable track
//! serving as before; and the same command, run again, completes.

use std::path::Path;

use fake_kube::registry::LocalRegistry;
use fake_kube::{ClusterOptions, FakeCluster, Fault, FaultAnswer, Kubelet};
use serde_json::Value;

use crate::support::*;

fn stable_image(kubeconfig: &Path) -> String {
    let output = std::process::Command::new("kubectl")
        .args([
            "get",
            "deployment",
            "score-app",
            "--context",
            "faults",
            "--namespace",
            "mlops",
            "--output",
            "json",
        ])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let deployment: Value = serde_json::from_slice(&output.stdout).unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
#[ignore = "needs a Docker engine, docker-registry and kubectl"]
fn rehearsal_faults_fail_clearly_and_the_same_command_then_completes() {
    let kube = FakeCluster::start_blocking(ClusterOptions {
        kubelet: Kubelet::Docker,
        ..ClusterOptions::new("faults-token")
    })
    .unwrap();
    let scratch = scratch_dir("rehearsal-faults");
    for dir in ["docker", "kube-cache", "state"] {
        std::fs::create_dir_all(scratch.join(dir)).unwrap();
    }
    let kubeconfig = scratch.join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig("faults", "faults-token")).unwrap();
    let registry = LocalRegistry::start(&scratch);
    let address = registry.address.clone();
    let port: u16 = address.rsplit_once(':').unwrap().1.parse().unwrap();
    // Each release a model of its own name, so each is a new image to push and roll out.
    let ship = |release: &str| {
        let model = scratch.join(format!("{release}.onnx"));
        let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo/linear_regression.onnx");
        std::fs::copy(zoo, &model).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args([
                "ship",
                "--target",
                "kube",
                "--context",
                "faults",
                "--registry",
                &address,
            ])
            .args(["--replicas", "1", "--model", model.to_str().unwrap()])
            .env("XTASK_STATE_DIR", scratch.join("state"))
            .env_remove("XTASK_TARGET")
            .env_remove("CARGO")
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBECACHEDIR", scratch.join("kube-cache"))
            .env("DOCKER_CONFIG", scratch.join("docker"))
            .output()
            .unwrap();
        eprintln!(
            "=== cargo xtask ship ({release}) -> {}\n--- stdout\n{}--- stderr\n{}",
            output.status,
            stdout(&output),
            stderr(&output)
        );
        output
    };
    let failed_naming = |output: &std::process::Output, expected: &[&str]| {
        assert!(!output.status.success());
        let why = stderr(output);
        for expected in expected {
            assert!(why.contains(expected), "{expected:?} missing from:\n{why}");
        }
    };

    assert!(ship("first").status.success());
    let serving = stable_image(&kubeconfig);

    // The registry down during the push: nothing reaches the cluster.
    drop(registry);
    let refused = ship("second");
    failed_naming(
        &refused,
        &["$ docker push", "failed with exit status", "connection refused"],
    );
    assert_eq!(
        stable_image(&kubeconfig),
        serving,
        "the stable track is untouched"
    );
    let registry = LocalRegistry::start_on(&scratch, port);
    assert!(
        ship("second").status.success(),
        "the same ship, with the registry back"
    );
    let serving = stable_image(&kubeconfig);

    // The API server failing the Deployment's apply (and the diff before it): the apply
    // fails, naming the server's answer; the Deployment keeps what it had.
    let fail = |answer: FaultAnswer| Fault {
        method: "PATCH".to_owned(),
        path_contains: "/deployments/score-app".to_owned(),
        times: 2,
        answer,
    };
    kube.inject(fail(FaultAnswer::InternalError));
    let broken = ship("third");
    failed_naming(
        &broken,
        &["$ kubectl apply --server-side", "Internal error occurred"],
    );
    assert_eq!(
        stable_image(&kubeconfig),
        serving,
        "the stable track is untouched"
    );
    assert!(ship("third").status.success());
    let serving = stable_image(&kubeconfig);

    // A request that times out within the apiserver's deadline: the same.
    kube.inject(fail(FaultAnswer::Timeout));
    let slow = ship("fourth");
    failed_naming(
        &slow,
        &[
            "$ kubectl apply --server-side",
            "Timeout: request did not complete within requested timeout",
        ],
    );
    assert_eq!(
        stable_image(&kubeconfig),
        serving,
        "the stable track is untouched"
    );
    assert!(ship("fourth").status.success());
    let serving = stable_image(&kubeconfig);

    // Turned away with Retry-After: kubectl waits and retries, and the ship goes through.
    kube.inject(fail(FaultAnswer::TooManyRequests { retry_after: 1 }));
    assert!(ship("fifth").status.success());
    assert_ne!(stable_image(&kubeconfig), serving, "the fifth release rolled out");
    let turned_away = kube
        .requests()
        .iter()
        .filter(|line| {
            line.starts_with("PATCH") && line.contains("/deployments/score-app") && line.contains("-> 429")
        })
        .count();
    assert_eq!(turned_away, 2, "both 429s were answered, and retried");

    drop(registry);
    kube.shutdown();
}
