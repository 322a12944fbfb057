//! The ReplicaSet controller: pods from the template up to `spec.replicas` (each created
//! through admission, so Pod Security refusals become `FailedCreate` warnings on the
//! ReplicaSet, and the rollout stalls, as on a real cluster), surplus pods deleted
//! (unready and newest first), and the counts in `status`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{set_condition, writer};
use crate::error::ApiError;
use crate::resources::IDS;
use crate::store::{Part, Store};
use crate::util::{self, controller_uid, get_path, i64_at, is_deleting, name_of, namespace_of, uid_of};

const COMPONENT: &str = "replicaset-controller";

/// The first and longest wait before retrying a refused pod creation.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(16);

pub(crate) fn pod_is_ready(pod: &Value) -> bool {
    get_path(pod, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Ready for at least `min_ready_seconds`.
fn pod_is_available(pod: &Value, min_ready_seconds: i64) -> bool {
    if !pod_is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    get_path(pod, "status.conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastTransitionTime"].as_str())
        .is_some_and(|at| util::age(at).as_secs() as i64 >= min_ready_seconds)
}

pub(super) fn reconcile(store: &mut Store, backoff: &mut HashMap<String, (Instant, Duration)>) {
    let sets = store.list(IDS.replicasets, None);
    backoff.retain(|uid, _| sets.iter().any(|rs| uid_of(rs) == uid));
    for rs in sets {
        if is_deleting(&rs) {
            continue;
        }
        if store
            .get_by(IDS.namespaces, "", namespace_of(&rs))
            .is_none_or(|ns| is_deleting(ns))
        {
            continue;
        }
        reconcile_one(store, &rs, backoff);
    }
}

fn owned_pods(store: &Store, rs: &Value) -> Vec<Arc<Value>> {
    let uid = uid_of(rs);
    store
        .list(IDS.pods, Some(namespace_of(rs)))
        .into_iter()
        .filter(|pod| controller_uid(pod) == Some(uid) && !is_deleting(pod))
        .collect()
}

fn new_pod(rs: &Value) -> Value {
    let name = name_of(rs);
    let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut metadata = json!({
        "name": format!("{name}-{}", util::random_suffix(5)),
        "generateName": format!("{name}-"),
        "ownerReferences": [{
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": name,
            "uid": uid_of(rs),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    for field in ["labels", "annotations"] {
        if let Some(value) = template.pointer(&format!("/metadata/{field}")) {
            metadata[field] = value.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

fn reconcile_one(store: &mut Store, rs: &Arc<Value>, backoff: &mut HashMap<String, (Instant, Duration)>) {
    let namespace = namespace_of(rs).to_string();
    let uid = uid_of(rs).to_string();
    let wanted = i64_at(rs, "spec.replicas").unwrap_or(1).max(0) as usize;
    let mut pods = owned_pods(store, rs);
    let mut failure: Option<String> = None;

    if pods.len() < wanted {
        let waiting = backoff.get(&uid).is_some_and(|(next, _)| Instant::now() < *next);
        if !waiting {
            for _ in pods.len()..wanted {
                match store.create(IDS.pods, &namespace, new_pod(rs), &writer()) {
                    Ok(written) => {
                        backoff.remove(&uid);
                        store.record_event(
                            rs,
                            false,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", name_of(&written.object)),
                            COMPONENT,
                        );
                    }
                    Err(error) => {
                        let message = match &error {
                            ApiError::Forbidden { .. } | ApiError::Invalid { .. } => {
                                error.status()["message"].as_str().unwrap_or_default().to_string()
                            }
                            other => other.to_string(),
                        };
                        store.record_event(
                            rs,
                            true,
                            "FailedCreate",
                            &format!("Error creating: {message}"),
                            COMPONENT,
                        );
                        failure = Some(message);
                        let delay = backoff
                            .get(&uid)
                            .map_or(FIRST_BACKOFF, |(_, d)| (*d * 2).min(MAX_BACKOFF));
                        backoff.insert(uid.clone(), (Instant::now() + delay, delay));
                        break;
                    }
                }
            }
        } else {
            // Still refused, as far as anyone can tell: keep the condition.
            failure = rs
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "ReplicaFailure"))
                .and_then(|c| c["message"].as_str())
                .map(str::to_string);
        }
    } else if pods.len() > wanted {
        // Delete the least useful first: not ready, then the newest.
        pods.sort_by_key(|pod| {
            (
                pod_is_ready(pod),
                std::cmp::Reverse(
                    pod.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                ),
            )
        });
        for pod in &pods[..pods.len() - wanted] {
            if store
                .delete(IDS.pods, &namespace, name_of(pod), None, false)
                .is_ok()
            {
                store.record_event(
                    rs,
                    false,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", name_of(pod)),
                    COMPONENT,
                );
            }
        }
    }

    let pods = owned_pods(store, rs);
    let min_ready = i64_at(rs, "spec.minReadySeconds").unwrap_or(0);
    let ready = pods.iter().filter(|p| pod_is_ready(p)).count();
    let available = pods.iter().filter(|p| pod_is_available(p, min_ready)).count();
    let Some(live) = store.get_by(IDS.replicasets, &namespace, name_of(rs)).cloned() else {
        return;
    };
    let mut conditions: Vec<Value> = live
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match failure {
        Some(message) => {
            let now = util::now();
            set_condition(
                &mut conditions,
                json!({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": now,
                    "reason": "FailedCreate", "message": message}),
            );
        }
        None => conditions.retain(|c| c["type"] != "ReplicaFailure"),
    }
    let mut status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": live.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    for field in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
        if status[field] == json!(0) {
            status.as_object_mut().expect("an object").remove(field);
        }
    }
    if !conditions.is_empty() {
        status["conditions"] = Value::Array(conditions);
    }
    if live.get("status") != Some(&status) {
        let mut next = (*live).clone();
        next["status"] = status;
        let _ = store.update(
            IDS.replicasets,
            &namespace,
            name_of(rs),
            next,
            Part::Status,
            &writer(),
        );
    }
}
