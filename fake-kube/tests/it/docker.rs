//! Pods whose containers run in the local Docker engine, from an image pulled by digest
//! from a registry on loopback.

use std::process::Command;
use std::time::Duration;

use fake_kube::ClusterOptions;
use serde_json::Value;

use crate::support::{Kube, TOKEN, dev_overlay, http_get, overlay, run, test_image};

/// The container ids in the pods' statuses, running or terminated.
fn container_ids(pods: &Value) -> Vec<String> {
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pod| {
            pod["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|status| status["containerID"].as_str().map(str::to_string))
        .map(|id| id.trim_start_matches("docker://").to_string())
        .collect()
}

fn running_containers() -> String {
    let listed = run(
        Command::new("docker").args(["ps", "-a", "-q", "--no-trunc"]),
        None,
        Duration::from_secs(30),
    );
    assert!(listed.ok(), "{listed:#?}");
    listed.stdout
}

#[test]
#[ignore = "needs a Docker engine and docker-registry"]
fn a_rollout_becomes_ready_and_serves_through_the_load_balancer() {
    let image = test_image();
    let kube = Kube::start(ClusterOptions::new(TOKEN));
    let manifest = overlay("dev", image);
    kube.apply_ok(&manifest);
    kube.wait_for_rollout("90s");

    let pods = kube.json(&["get", "pods", "-n", "mlops", "-l", "app=score-app"]);
    let items = pods["items"].as_array().expect("a pod list");
    assert_eq!(items.len(), 1, "{pods}");
    let status = &items[0]["status"];
    assert_eq!(status["phase"], "Running", "{status}");
    assert_eq!(status["containerStatuses"][0]["ready"], true, "{status}");
    assert!(
        status["containerStatuses"][0]["state"]["running"].is_object(),
        "{status}"
    );
    assert_eq!(
        status["containerStatuses"][0]["imageID"],
        format!("docker-pullable://{image}")
    );

    let ip = kube.wait_for(
        "the load balancer's address",
        &[
            "get",
            "service",
            "score-app",
            "-n",
            "mlops",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
        Duration::from_secs(20),
        |ip| !ip.is_empty(),
    );
    let answer = http_get(&ip, 5000, "/").expect("an answer through the load balancer");
    let pod_name = items[0]["metadata"]["name"].as_str().expect("a pod name");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("hello from {pod_name}")), "{answer}");

    let events = kube.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "mlops",
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    // No "Pulling" when another test pulled the image first: the kubelet then reports it
    // Pulled, "already present on machine", as a real one does.
    for reason in ["Scheduled", "Pulled", "Created", "Started", "EnsuredLoadBalancer"] {
        assert!(events.lines().any(|l| l == reason), "{reason} in {events}");
    }
    let logs = kube.kubectl_ok(&["logs", "deployment/score-app", "-n", "mlops", "--tail=5"]);
    assert!(logs.contains("listening on :5000"), "{logs}");

    // The pod runs as the manifest says: user 65532, read-only root, no capabilities.
    let container = container_ids(&pods).pop().expect("a container id");
    let inspected = run(
        Command::new("docker").args([
            "inspect",
            "--format",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Memory}}",
            &container,
        ]),
        None,
        Duration::from_secs(30),
    );
    assert_eq!(
        inspected.stdout.trim(),
        "65532:65532 true [ALL] [no-new-privileges] 134217728",
        "{inspected:#?}"
    );
    let two = manifest.replace("  replicas: 1\n", "  replicas: 2\n");
    kube.apply_ok(&two);
    kube.wait_for_rollout("90s");
    let pods = kube.json(&["get", "pods", "-n", "mlops", "-l", "app=score-app"]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(2), "{pods}");
    let containers = container_ids(&pods);
    assert_eq!(containers.len(), 2, "{pods}");
    let before = running_containers();
    assert!(
        containers.iter().all(|id| before.contains(id.as_str())),
        "{containers:?} in {before}"
    );

    let deleted = kube.kubectl_ok(&["delete", "namespace", "mlops", "--wait", "--timeout=60s"]);
    assert!(deleted.contains("namespace \"mlops\" deleted"), "{deleted}");
    let after = running_containers();
    assert!(
        containers.iter().all(|id| !after.contains(id.as_str())),
        "deleting the namespace removed its containers: {containers:?} in {after}"
    );
    println!("{}", kube.request_log());
}

#[test]
#[ignore = "needs a Docker engine and docker-registry"]
fn a_crash_loop_fails_the_rollout_and_undo_brings_back_the_ready_revision() {
    let image = test_image();
    let kube = Kube::start(ClusterOptions {
        progress_deadline: Some(Duration::from_secs(8)),
        ..ClusterOptions::new(TOKEN)
    });
    let good = dev_overlay(image);
    kube.apply_ok(&good);
    kube.wait_for_rollout("90s");
    let good_pods = kube.json(&["get", "pods", "-n", "mlops"]);

    let crashing = good.replacen(
        "        - name: SCORE_LOG_FORMAT\n",
        "        - name: CRASH\n          value: \"3\"\n        - name: SCORE_LOG_FORMAT\n",
        1,
    );
    assert_ne!(crashing, good);
    kube.apply_ok(&crashing);
    let failed = kube.rollout_status("60s");
    assert_eq!(failed.code, Some(1), "{failed:#?}");
    assert!(
        failed
            .stderr
            .contains("deployment \"score-app\" exceeded its progress deadline"),
        "{}",
        failed.stderr
    );

    let pods = kube.json(&["get", "pods", "-n", "mlops"]);
    let crashed: Vec<&Value> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["status"]["containerStatuses"][0]["restartCount"].as_i64() > Some(0))
        .collect();
    assert_eq!(crashed.len(), 1, "one pod crash-loops: {pods}");
    let status = &crashed[0]["status"]["containerStatuses"][0];
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3, "{status}");
    assert_eq!(status["ready"], false, "{status}");
    let crashed_name = crashed[0]["metadata"]["name"].as_str().expect("a name");
    let logs = kube.kubectl_ok(&["logs", crashed_name, "-n", "mlops"]);
    assert!(logs.contains("crashing on purpose with exit code 3"), "{logs}");
    assert!(logs.contains("CRASH=3 is set"), "stderr too: {logs}");
    // The deployment's logs come from its ready pod, which kubectl prefers.
    let logs = kube.kubectl_ok(&["logs", "deployment/score-app", "-n", "mlops"]);
    assert!(logs.contains("listening on :5000"), "{logs}");
    let backoff = kube.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "mlops",
        "--field-selector",
        &format!("involvedObject.name={crashed_name},reason=BackOff"),
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        backoff.contains("Back-off restarting failed container score"),
        "{backoff}"
    );

    let undone = kube.kubectl_ok(&["rollout", "undo", "deployment/score-app", "-n", "mlops"]);
    assert!(
        undone.contains("deployment.apps/score-app rolled back"),
        "{undone}"
    );
    // As the real controller does, the deployment keeps ProgressDeadlineExceeded until the
    // rollback shows progress, and `rollout status` stops at it: wait for progress first.
    kube.kubectl_ok(&[
        "wait",
        "deployment/score-app",
        "-n",
        "mlops",
        "--for=condition=Progressing",
        "--timeout=60s",
    ]);
    kube.wait_for_rollout("90s");
    let sets = kube.json(&["get", "replicasets", "-n", "mlops"]);
    let revisions: Vec<(i64, i64)> = sets["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rs| {
            let revision = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            (revision, rs["spec"]["replicas"].as_i64().unwrap_or(-1))
        })
        .collect();
    let mut sorted = revisions.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [(2, 0), (3, 1)],
        "the first ReplicaSet came back as revision 3: {sets}"
    );
    let pods = kube.json(&["get", "pods", "-n", "mlops"]);
    let names = |pods: &Value| -> Vec<String> {
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        names(&pods),
        names(&good_pods),
        "the original pod serves again, the crashing one is going"
    );
    println!("{}", kube.request_log());
}

/// Two Deployments, each behind a ClusterIP Service of its own, and a Gateway whose
/// HTTPRoute splits requests between them by `weights`.
fn split_manifest(image: &str, port: u16, weights: (u32, u32)) -> String {
    let track = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: edge\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n          ports: [{{containerPort: 5000, name: http}}]\n          readinessProbe: {{httpGet: {{path: /readyz, port: http}}, periodSeconds: 1}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: edge\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: http}}]\n---\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: edge\n---\n{}{}apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: edge\n  namespace: edge\nspec:\n  gatewayClassName: gke-l7-regional-external-managed\n  listeners: [{{name: http, protocol: HTTP, port: {port}}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: web\n  namespace: edge\nspec:\n  parentRefs: [{{name: edge}}]\n  rules:\n    - backendRefs:\n        - {{name: stable, port: 80, weight: {}}}\n        - {{name: canary, port: 80, weight: {}}}\n",
        track("stable"),
        track("canary"),
        weights.0,
        weights.1
    )
}

/// Who answered each of `count` requests through the gateway: (stable, canary).
fn answers(address: &str, port: u16, count: usize) -> (usize, usize) {
    let (mut stable, mut canary) = (0, 0);
    for _ in 0..count {
        let answer = http_get(address, port, "/").expect("the gateway answers");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        if answer.contains("hello from canary-") {
            canary += 1;
        } else if answer.contains("hello from stable-") {
            stable += 1;
        } else {
            panic!("an answer from neither track: {answer}");
        }
    }
    (stable, canary)
}

#[test]
#[ignore = "needs a Docker engine and docker-registry"]
fn a_gateway_splits_requests_by_the_routes_weights() {
    let image = test_image();
    let kube = Kube::start(ClusterOptions::new(TOKEN));
    let port = crate::support::unused_port();
    kube.apply_ok(&split_manifest(image, port, (80, 20)));
    let address = kube.wait_for(
        "the gateway's address",
        &[
            "get",
            "gateway",
            "edge",
            "-n",
            "edge",
            "-o",
            "jsonpath={.status.addresses[0].value}",
        ],
        Duration::from_secs(30),
        |address| !address.is_empty(),
    );
    for deployment in ["stable", "canary"] {
        kube.kubectl_ok(&[
            "rollout",
            "status",
            "deployment",
            deployment,
            "-n",
            "edge",
            "--timeout=90s",
        ]);
    }
    let resolved = kube.kubectl_ok(&[
        "get",
        "httproute",
        "web",
        "-n",
        "edge",
        "-o",
        "jsonpath={.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].status}",
    ]);
    assert_eq!(resolved, "True");

    // 400 requests at 20%: 80 expected, standard deviation 8; 40-120 is five of them.
    let (stable, canary) = answers(&address, port, 400);
    assert!((40..=120).contains(&canary), "stable {stable}, canary {canary}");

    kube.apply_ok(&split_manifest(image, port, (0, 100)));
    let (stable, canary) = answers(&address, port, 20);
    assert_eq!((stable, canary), (0, 20), "weight 0 takes nothing");

    kube.apply_ok(&split_manifest(image, port, (0, 0)));
    let answer = http_get(&address, port, "/").expect("the gateway answers");
    assert!(answer.starts_with("HTTP/1.1 500"), "every weight zero: {answer}");
}
