//! The API server and the controllers, with simulated containers.

use std::time::Duration;

use fake_kube::{ClusterOptions, Kubelet};

use crate::support::{Kube, SIMULATED_IMAGE, TOKEN, dev_overlay, unused_port};

#[test]
#[ignore = "needs kubectl"]
fn a_wrong_token_is_refused_and_kubectl_fails() {
    let kube = Kube::simulated();
    kube.write_kubeconfig("not-the-token");
    let run = kube.kubectl(&["get", "pods", "--namespace", "default"]);
    assert!(!run.ok(), "kubectl succeeded with a wrong token: {run:#?}");
    assert!(
        run.stderr.contains("error: You must be logged in to the server"),
        "kubectl's complaint: {}",
        run.stderr
    );
    let refused: Vec<String> = kube
        .cluster
        .requests()
        .into_iter()
        .filter(|l| l.contains("-> 401"))
        .collect();
    assert!(!refused.is_empty(), "{}", kube.request_log());
    assert!(
        kube.cluster.requests().iter().all(|l| l.contains("-> 401")),
        "every request was refused: {}",
        kube.request_log()
    );

    kube.write_kubeconfig(TOKEN);
    kube.kubectl_ok(&["get", "pods", "--namespace", "default"]);
}

#[test]
#[ignore = "needs gke-gcloud-auth-plugin"]
fn the_gke_auth_plugin_hands_kubectl_the_token_from_the_environment() {
    let kube = Kube::simulated();
    let static_token = kube.cluster.kubeconfig("fake", TOKEN);
    let user = format!("    token: \"{TOKEN}\"\n");
    assert!(static_token.contains(&user), "{static_token}");
    let exec = "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: gke-gcloud-auth-plugin\n      provideClusterInfo: true\n      interactiveMode: IfAvailable\n";
    kube.write_kubeconfig_text(&static_token.replace(&user, exec));
    let run = kube.kubectl_with_env(&["get", "namespaces"], &[("CLOUDSDK_AUTH_ACCESS_TOKEN", TOKEN)]);
    assert!(run.ok(), "{run:#?}\n{}", kube.request_log());
    assert!(run.stdout.contains("default"), "{}", run.stdout);
    let wrong = kube.kubectl_with_env(
        &["get", "namespaces"],
        &[("CLOUDSDK_AUTH_ACCESS_TOKEN", "expired")],
    );
    assert!(!wrong.ok(), "{wrong:#?}");
}

#[test]
#[ignore = "needs kubectl"]
fn server_side_apply_creates_then_an_identical_apply_changes_nothing_and_diff_agrees() {
    let kube = Kube::simulated();
    let manifest = dev_overlay(SIMULATED_IMAGE);
    let applied = kube.apply_ok(&manifest);
    for object in [
        "namespace/mlops",
        "service/score-app",
        "deployment.apps/score-app",
        "networkpolicy.networking.k8s.io/score-app",
    ] {
        assert!(
            applied.contains(&format!("{object} serverside-applied")),
            "{applied}"
        );
    }
    let created: Vec<String> = kube
        .cluster
        .requests()
        .into_iter()
        .filter(|l| l.starts_with("PATCH ") && l.contains("fieldValidation=Strict"))
        .collect();
    assert_eq!(created.len(), 4, "{}", kube.request_log());
    assert!(
        created.iter().all(|l| l.ends_with("-> 201 (kubectl)")),
        "{created:#?}"
    );

    kube.wait_for_rollout("30s");
    let before = kube.json(&["get", "deployment", "score-app", "-n", "mlops"]);
    kube.apply_ok(&manifest);
    let after = kube.json(&["get", "deployment", "score-app", "-n", "mlops"]);
    assert_eq!(
        (
            &after["metadata"]["resourceVersion"],
            &after["metadata"]["generation"]
        ),
        (
            &before["metadata"]["resourceVersion"],
            &before["metadata"]["generation"]
        ),
        "an identical apply changes nothing"
    );

    let diff = ["diff", "--server-side", "--field-manager=cargo-xtask", "-f", "-"];
    let same = kube.kubectl_with_input(&diff, Some(&manifest));
    assert_eq!(
        same.code,
        Some(0),
        "no differences: {same:#?}\n{}",
        kube.request_log()
    );
    assert_eq!(same.stdout, "");

    let three = manifest.replace("  replicas: 1\n", "  replicas: 3\n");
    assert_ne!(three, manifest);
    let changed = kube.kubectl_with_input(&diff, Some(&three));
    assert_eq!(changed.code, Some(1), "differences found: {changed:#?}");
    assert!(changed.stdout.contains("+  replicas: 3"), "{}", changed.stdout);
    assert!(
        kube.cluster
            .requests()
            .iter()
            .any(|l| l.contains("dryRun=All") && l.contains("deployments/score-app")),
        "diff asks for a dry run: {}",
        kube.request_log()
    );

    kube.apply_ok(&three);
    kube.wait_for_rollout("30s");
    let scaled = kube.json(&["get", "deployment", "score-app", "-n", "mlops"]);
    assert_eq!(scaled["metadata"]["generation"], 2);
    assert_eq!(scaled["status"]["readyReplicas"], 3);
    let pods = kube.json(&["get", "pods", "-n", "mlops", "-l", "app=score-app"]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(3), "{pods}");

    let events = kube.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "mlops",
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]);
    for reason in ["ScalingReplicaSet", "SuccessfulCreate", "Scheduled"] {
        assert!(events.lines().any(|l| l == reason), "{reason} in {events}");
    }
}

#[test]
#[ignore = "needs kubectl"]
fn an_autoscaler_owns_replicas_so_an_apply_that_sets_them_conflicts() {
    let kube = Kube::simulated();
    let autoscaler = "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: score-app\n  namespace: mlops\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: score-app\n  minReplicas: 2\n  maxReplicas: 4\n";
    let manifest = format!("{}{autoscaler}", dev_overlay(SIMULATED_IMAGE));
    kube.apply_ok(&manifest);
    kube.wait_for(
        "the autoscaler to scale to its minimum",
        &[
            "get",
            "deployment",
            "score-app",
            "-n",
            "mlops",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        Duration::from_secs(20),
        |replicas| replicas == "2",
    );

    let again = kube.apply(&manifest);
    assert_eq!(again.code, Some(1), "{again:#?}");
    assert!(
        again.stderr.contains(
            "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" with subresource \"scale\" using apps/v1: .spec.replicas"
        ),
        "{}",
        again.stderr
    );
    assert!(
        kube.cluster.requests().iter().any(|l| l
            .starts_with("PATCH /apis/apps/v1/namespaces/mlops/deployments/score-app?")
            && l.contains("-> 409")),
        "{}",
        kube.request_log()
    );

    // Leaving replicas to the autoscaler is the fix.
    let without_replicas = manifest.replacen("  replicas: 1\n", "", 1);
    kube.apply_ok(&without_replicas);
    let replicas = kube.kubectl_ok(&[
        "get",
        "deployment",
        "score-app",
        "-n",
        "mlops",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "2");
}

#[test]
#[ignore = "needs kubectl"]
fn a_restricted_namespace_refuses_pods_that_break_the_profile_and_says_why() {
    let kube = Kube::simulated();
    let manifest = dev_overlay(SIMULATED_IMAGE).replace("runAsNonRoot: true\n", "runAsNonRoot: false\n");
    let applied = kube.apply(&manifest);
    assert!(applied.ok(), "{applied:#?}");
    assert!(
        applied
            .stderr
            .contains("Warning: would violate PodSecurity \"restricted:latest\": runAsNonRoot != true"),
        "the warn label warns at apply: {}",
        applied.stderr
    );
    let messages = kube.wait_for(
        "a FailedCreate event",
        &[
            "get",
            "events",
            "-n",
            "mlops",
            "--field-selector",
            "reason=FailedCreate,involvedObject.kind=ReplicaSet",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        Duration::from_secs(20),
        |messages| !messages.is_empty(),
    );
    assert!(
        messages.contains("Error creating: pods \"score-app-")
            && messages.contains("is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false; container \"score\" must not set securityContext.runAsNonRoot=false)"),
        "{messages}"
    );
    let pods = kube.json(&["get", "pods", "-n", "mlops"]);
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(0), "{pods}");
    let stalled = kube.rollout_status("2s");
    assert!(!stalled.ok(), "{stalled:#?}");
    let failure = kube.kubectl_ok(&[
        "get",
        "deployment",
        "score-app",
        "-n",
        "mlops",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"ReplicaFailure\")].reason}",
    ]);
    assert_eq!(failure, "FailedCreate");

    let direct = kube.kubectl(&["run", "bare", "--image=busybox", "-n", "mlops"]);
    assert!(!direct.ok(), "{direct:#?}");
    assert!(
        direct
            .stderr
            .contains("pods \"bare\" is forbidden: violates PodSecurity \"restricted:latest\""),
        "{}",
        direct.stderr
    );
    assert!(
        kube.cluster
            .requests()
            .iter()
            .any(|l| l.starts_with("POST /api/v1/namespaces/mlops/pods") && l.contains("-> 403")),
        "{}",
        kube.request_log()
    );
}

#[test]
#[ignore = "needs kubectl"]
fn a_load_balancer_can_report_a_hostname_and_namespace_deletion_waits() {
    let kube = Kube::start(ClusterOptions {
        kubelet: Kubelet::Simulated,
        load_balancer_hostname: true,
        ..ClusterOptions::new(TOKEN)
    });
    let port = unused_port();
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: edge\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: edge\nspec:\n  type: LoadBalancer\n  selector:\n    app: web\n  ports:\n  - port: {port}\n    targetPort: 5000\n"
    );
    kube.apply_ok(&manifest);
    kube.wait_for(
        "the load balancer's hostname",
        &[
            "get",
            "service",
            "web",
            "-n",
            "edge",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].hostname}",
        ],
        Duration::from_secs(20),
        |hostname| hostname == "localhost",
    );
    let deleted = kube.kubectl_ok(&["delete", "namespace", "edge", "--wait", "--timeout=60s"]);
    assert!(deleted.contains("namespace \"edge\" deleted"), "{deleted}");
    let gone = kube.kubectl(&["get", "namespace", "edge"]);
    assert!(gone.stderr.contains("NotFound"), "{gone:#?}");
}

#[test]
#[ignore = "needs kubectl"]
fn sorted_tables_carry_their_objects_so_kubectl_can_sort_them() {
    // kubectl asks for a Table with includeObject=Object to sort by a field of the
    // objects; rows without them print nothing, and a diagnosis sees no warnings.
    let kube = Kube::simulated();
    kube.apply_ok(r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlops"}}"#);
    for (name, time, message) in [
        ("late", "2026-01-02T00:00:00Z", "the later one"),
        ("early", "2026-01-01T00:00:00Z", "the earlier one"),
    ] {
        let event = format!(
            r#"{{"apiVersion": "v1", "kind": "Event", "metadata": {{"name": "{name}", "namespace": "mlops"}},
               "involvedObject": {{"kind": "Pod", "name": "web-1", "namespace": "mlops"}},
               "reason": "BackOff", "message": "{message}", "type": "Warning",
               "firstTimestamp": "{time}", "lastTimestamp": "{time}", "count": 1}}"#
        );
        let run = kube.kubectl_with_input(&["create", "--filename", "-"], Some(&event));
        assert!(run.ok(), "{run:#?}");
    }
    let sorted = kube.kubectl_ok(&[
        "get",
        "events",
        "--namespace",
        "mlops",
        "--field-selector",
        "type=Warning",
        "--sort-by=.lastTimestamp",
    ]);
    let earlier = sorted
        .find("the earlier one")
        .unwrap_or_else(|| panic!("{sorted}"));
    let later = sorted.find("the later one").unwrap_or_else(|| panic!("{sorted}"));
    assert!(earlier < later, "latest last:\n{sorted}");
}

#[test]
#[ignore = "needs kubectl"]
fn a_json_patch_applies_and_the_patches_no_plan_sends_are_refused_by_name() {
    let kube = Kube::simulated();
    kube.apply_ok(&dev_overlay(SIMULATED_IMAGE));
    let deployment = ["-n", "mlops", "deployment", "score-app"];
    // What a canary's promotion sends.
    kube.kubectl_ok(
        &[
            &["patch"][..],
            &deployment[..],
            &[
                "--type",
                "json",
                "--patch",
                r#"[{"op": "add", "path": "/spec/minReadySeconds", "value": 3}]"#,
            ][..],
        ]
        .concat(),
    );
    let patched = kube.json(&[&["get"][..], &deployment[..]].concat());
    assert_eq!(patched["spec"]["minReadySeconds"], 3);
    for kind in ["strategic", "merge"] {
        let refused = kube.kubectl(
            &[
                &["patch"][..],
                &deployment[..],
                &["--type", kind, "--patch", r#"{"spec": {"minReadySeconds": 5}}"#][..],
            ]
            .concat(),
        );
        assert_eq!(refused.code, Some(1), "{refused:#?}");
        assert!(
            refused
                .stderr
                .contains("this fake API takes application/json-patch+json and application/apply-patch+yaml"),
            "{}",
            refused.stderr
        );
    }
}

#[test]
#[ignore = "needs kubectl"]
fn what_no_plan_uses_is_refused_by_name_not_accepted_and_ignored() {
    let kube = Kube::simulated();
    kube.apply_ok(&dev_overlay(SIMULATED_IMAGE));
    let collection = kube.kubectl(&["delete", "--raw", "/api/v1/namespaces/mlops/pods"]);
    assert!(!collection.ok(), "{collection:#?}");
    assert!(
        kube.cluster
            .requests()
            .iter()
            .any(|l| l.starts_with("DELETE /api/v1/namespaces/mlops/pods ") && l.contains("-> 405")),
        "{}",
        kube.request_log()
    );
    let discovery = kube.kubectl_ok(&["api-resources", "--verbs=deletecollection", "-o", "name"]);
    assert_eq!(discovery.trim(), "", "discovery lists no deletecollection");

    let baseline = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lenient\n  labels:\n    pod-security.kubernetes.io/enforce: baseline\n";
    let refused = kube.apply(baseline);
    assert!(!refused.ok(), "{refused:#?}");
    assert!(
        refused.stderr.contains("Namespace \"lenient\" is invalid")
            && refused
                .stderr
                .contains("enforces only \"restricted\" and \"privileged\""),
        "{}",
        refused.stderr
    );
    kube.apply_ok(&baseline.replace("baseline", "privileged"));
}
