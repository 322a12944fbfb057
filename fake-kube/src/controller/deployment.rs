//! The deployment controller: a ReplicaSet per pod template (`<name>-<template hash>`,
//! with the `pod-template-hash` label and a revision annotation), rolling updates within
//! maxSurge and maxUnavailable, rollbacks that reuse the old ReplicaSet under a new
//! revision, old ReplicaSets pruned to `revisionHistoryLimit`, and the status and
//! conditions `kubectl rollout status` reads.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{int_or_percent, set_condition, writer};
use crate::resources::IDS;
use crate::store::{ObjectKey, Part, Store};
use crate::util::{self, controller_uid, i64_at, is_deleting, name_of, namespace_of, uid_of};

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// The annotations a Deployment's new ReplicaSet does not take from it: the controller's
/// own, and kubectl's record of the last client-side apply.
const NOT_COPIED: [&str; 6] = [
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deprecated.deployment.rollback.to",
];
const COMPONENT: &str = "deployment-controller";

fn revision_of(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The Deployment's annotations its new ReplicaSet carries, as the real controller copies
/// them: so `rollout history` shows each revision's change-cause, and `rollout undo`
/// (which copies a ReplicaSet's annotations back) restores it.
fn copied_annotations(deployment: &Value) -> Map<String, Value> {
    deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| !NOT_COPIED.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Whether `rs` lacks any of `copied` or holds another value for it.
fn lacks_any(rs: &Value, copied: &Map<String, Value>) -> bool {
    let held = rs.pointer("/metadata/annotations").and_then(Value::as_object);
    copied
        .iter()
        .any(|(key, value)| held.and_then(|held| held.get(key)) != Some(value))
}

/// A ReplicaSet's template without the hash label, normalized: what a Deployment's
/// (normalized) template is compared with.
fn template_without_hash(rs: &Value) -> Value {
    let mut template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    util::normalized(&template)
}

fn replicas_of(rs: &Value) -> i64 {
    i64_at(rs, "spec.replicas").unwrap_or(0)
}

fn status_count(object: &Value, field: &str) -> i64 {
    object
        .pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

pub(super) fn reconcile(store: &mut Store, deadline_override: Option<Duration>) {
    for deployment in store.list(IDS.deployments, None) {
        if is_deleting(&deployment) {
            continue;
        }
        let namespace = namespace_of(&deployment);
        if store
            .get_by(IDS.namespaces, "", namespace)
            .is_none_or(|ns| is_deleting(ns))
        {
            continue;
        }
        reconcile_one(store, &deployment, deadline_override);
    }
}

fn scale_replica_set(
    store: &mut Store,
    deployment: &Value,
    rs: &Value,
    replicas: i64,
    max_surge: i64,
) -> Option<Arc<Value>> {
    let from = replicas_of(rs);
    let desired = i64_at(deployment, "spec.replicas").unwrap_or(1);
    let mut next = rs.clone();
    next["spec"]["replicas"] = json!(replicas);
    let annotations = util::object_at(&mut next, "metadata.annotations");
    annotations.insert(DESIRED_REPLICAS.into(), json!(desired.to_string()));
    annotations.insert(MAX_REPLICAS.into(), json!((desired + max_surge).to_string()));
    let written = store
        .update(
            IDS.replicasets,
            namespace_of(rs),
            name_of(rs),
            next,
            Part::Main,
            &writer(),
        )
        .ok()?;
    if from != replicas {
        let direction = if replicas > from { "up" } else { "down" };
        store.record_event(
            deployment,
            false,
            "ScalingReplicaSet",
            &format!(
                "Scaled {direction} replica set {} from {from} to {replicas}",
                name_of(rs)
            ),
            COMPONENT,
        );
    }
    Some(written.object)
}

fn reconcile_one(store: &mut Store, deployment: &Value, deadline_override: Option<Duration>) {
    let namespace = namespace_of(deployment).to_string();
    let name = name_of(deployment).to_string();
    let uid = uid_of(deployment).to_string();
    let Some(template) = deployment.pointer("/spec/template").cloned() else {
        return;
    };
    let replicas = i64_at(deployment, "spec.replicas").unwrap_or(1);
    let paused = deployment.pointer("/spec/paused") == Some(&json!(true));
    let owned: Vec<Arc<Value>> = store
        .list(IDS.replicasets, Some(&namespace))
        .into_iter()
        .filter(|rs| controller_uid(rs) == Some(uid.as_str()) && !is_deleting(rs))
        .collect();
    let max_revision = owned.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
    let normalized_template = util::normalized(&template);
    let existing_new = owned
        .iter()
        .find(|rs| template_without_hash(rs) == normalized_template)
        .cloned();

    let strategy = deployment
        .pointer("/spec/strategy")
        .cloned()
        .unwrap_or(Value::Null);
    let recreate = strategy.get("type").and_then(Value::as_str) == Some("Recreate");
    let (max_surge, max_unavailable) = if recreate {
        (0, replicas)
    } else {
        let rolling = strategy.get("rollingUpdate");
        let surge = int_or_percent(rolling.and_then(|r| r.get("maxSurge")), replicas, true, 1);
        let unavailable = int_or_percent(rolling.and_then(|r| r.get("maxUnavailable")), replicas, false, 0);
        (
            surge,
            if surge == 0 && unavailable == 0 {
                1
            } else {
                unavailable
            },
        )
    };

    let mut created_new = false;
    let copied = copied_annotations(deployment);
    let rewrite = |store: &mut Store, next: Value| {
        let rs_name = name_of(&next).to_owned();
        store
            .update(IDS.replicasets, &namespace, &rs_name, next, Part::Main, &writer())
            .ok()
            .map(|written| written.object)
    };
    let new_rs: Option<Arc<Value>> = match existing_new {
        Some(rs) if revision_of(&rs) < max_revision || revision_of(&rs) == 0 => {
            // A rollback (or any return to an older template) gives the old ReplicaSet
            // the next revision, remembering the ones it had.
            let mut next = (*rs).clone();
            let old_revision = revision_of(&rs);
            let annotations = util::object_at(&mut next, "metadata.annotations");
            if old_revision > 0 {
                let history = annotations
                    .get(REVISION_HISTORY)
                    .and_then(Value::as_str)
                    .map(|h| format!("{h},{old_revision}"))
                    .unwrap_or_else(|| old_revision.to_string());
                annotations.insert(REVISION_HISTORY.into(), json!(history));
            }
            annotations.insert(REVISION.into(), json!((max_revision + 1).to_string()));
            annotations.extend(copied.clone());
            rewrite(store, next)
        }
        Some(rs) if lacks_any(&rs, &copied) => {
            let mut next = (*rs).clone();
            util::object_at(&mut next, "metadata.annotations").extend(copied.clone());
            rewrite(store, next)
        }
        Some(rs) => Some(rs),
        None if paused => None,
        None => {
            let hash = util::template_hash(&template);
            let rs_name = format!("{name}-{hash}");
            let mut rs_template = template.clone();
            util::object_at(&mut rs_template, "metadata.labels").insert(HASH_LABEL.into(), json!(hash));
            let mut selector = deployment.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            util::object_at(&mut selector, "matchLabels").insert(HASH_LABEL.into(), json!(hash));
            let labels = rs_template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            let mut annotations = copied.clone();
            annotations.insert(REVISION.into(), json!((max_revision + 1).to_string()));
            annotations.insert(DESIRED_REPLICAS.into(), json!(replicas.to_string()));
            annotations.insert(MAX_REPLICAS.into(), json!((replicas + max_surge).to_string()));
            let rs = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [{
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": name,
                        "uid": uid,
                        "controller": true,
                        "blockOwnerDeletion": true,
                    }],
                },
                "spec": {
                    "replicas": 0,
                    "minReadySeconds": deployment.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)),
                    "selector": selector,
                    "template": rs_template,
                },
            });
            match store.create(IDS.replicasets, &namespace, rs, &writer()) {
                Ok(written) => {
                    created_new = true;
                    Some(written.object)
                }
                // A name taken by something else (a hash collision): nothing sensible to do.
                Err(_) => None,
            }
        }
    };

    // The deployment carries its current revision.
    if let Some(new_rs) = &new_rs {
        let revision = revision_of(new_rs).to_string();
        if deployment
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(REVISION))
            != Some(&json!(revision))
        {
            let mut next = deployment.clone();
            util::object_at(&mut next, "metadata.annotations").insert(REVISION.into(), json!(revision));
            let _ = store.update(IDS.deployments, &namespace, &name, next, Part::Main, &writer());
        }
    }

    let uid_key = uid.clone();
    let current_sets = |store: &Store| -> Vec<Arc<Value>> {
        store
            .list(IDS.replicasets, Some(&namespace))
            .into_iter()
            .filter(|rs| controller_uid(rs) == Some(uid_key.as_str()) && !is_deleting(rs))
            .collect()
    };
    let new_name = new_rs.as_ref().map(|rs| name_of(rs).to_string());
    let is_new = |rs: &Value| Some(name_of(rs)) == new_name.as_deref();

    if !paused && let Some(new_rs) = &new_rs {
        let sets = current_sets(store);
        let olds: Vec<&Arc<Value>> = sets.iter().filter(|rs| !is_new(rs)).collect();
        if recreate {
            let old_pods: i64 = olds.iter().map(|rs| status_count(rs, "replicas")).sum();
            for old in &olds {
                if replicas_of(old) != 0 {
                    scale_replica_set(store, deployment, old, 0, max_surge);
                }
            }
            if old_pods == 0 && replicas_of(new_rs) != replicas {
                scale_replica_set(store, deployment, new_rs, replicas, max_surge);
            }
        } else {
            roll(
                store,
                deployment,
                new_rs,
                &olds,
                replicas,
                max_surge,
                max_unavailable,
            );
        }
    }

    prune_history(store, deployment, &current_sets(store), new_name.as_deref());

    let sets = current_sets(store);
    let new_rs = sets.iter().find(|rs| is_new(rs)).cloned();
    write_status(
        store,
        deployment,
        &sets,
        new_rs.as_deref(),
        created_new,
        replicas,
        max_unavailable,
        deadline_override,
    );
}

/// One step of a rolling update: scale the new ReplicaSet up within maxSurge, then old
/// ones down within maxUnavailable, unhealthy pods first (as `reconcileOldReplicaSets`).
fn roll(
    store: &mut Store,
    deployment: &Value,
    new_rs: &Value,
    olds: &[&Arc<Value>],
    replicas: i64,
    max_surge: i64,
    max_unavailable: i64,
) {
    let new_name = name_of(new_rs).to_string();
    let mut new_replicas = replicas_of(new_rs);
    let old_total: i64 = olds.iter().map(|rs| replicas_of(rs)).sum();
    if new_replicas > replicas {
        new_replicas = replicas;
    } else {
        let max_total = replicas + max_surge;
        let all = old_total + new_replicas;
        if all < max_total {
            new_replicas += (max_total - all).min(replicas - new_replicas);
        }
    }
    let mut new_available = status_count(new_rs, "availableReplicas");
    if (new_replicas != replicas_of(new_rs)
        || new_rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(DESIRED_REPLICAS))
            != Some(&json!(replicas.to_string())))
        && let Some(updated) = scale_replica_set(store, deployment, new_rs, new_replicas, max_surge)
    {
        new_available = status_count(&updated, "availableReplicas");
    }

    let min_available = replicas - max_unavailable;
    let new_unavailable = (new_replicas - new_available).max(0);
    let mut old_replicas: Vec<(Arc<Value>, i64)> =
        olds.iter().map(|rs| ((*rs).clone(), replicas_of(rs))).collect();
    // Oldest first, as the controller's sort by creation time.
    old_replicas.sort_by_key(|(rs, _)| revision_of(rs));
    let all = old_total + new_replicas;
    let mut can_scale_down = all - min_available - new_unavailable;
    if can_scale_down > 0 {
        for (rs, count) in &mut old_replicas {
            if can_scale_down == 0 {
                break;
            }
            let unhealthy = *count - status_count(rs, "availableReplicas");
            if unhealthy <= 0 {
                continue;
            }
            let down = unhealthy.min(can_scale_down);
            *count -= down;
            can_scale_down -= down;
        }
        let available: i64 = new_available
            + old_replicas
                .iter()
                .map(|(rs, count)| status_count(rs, "availableReplicas").min(*count))
                .sum::<i64>();
        let mut total_down = (available - min_available).max(0);
        for (_, count) in &mut old_replicas {
            if total_down == 0 {
                break;
            }
            let down = (*count).min(total_down);
            *count -= down;
            total_down -= down;
        }
    }
    for (rs, count) in old_replicas {
        if count != replicas_of(&rs) && name_of(&rs) != new_name {
            scale_replica_set(store, deployment, &rs, count, max_surge);
        }
    }
}

/// Deletes the oldest scaled-down ReplicaSets beyond `revisionHistoryLimit`.
fn prune_history(store: &mut Store, deployment: &Value, sets: &[Arc<Value>], new_name: Option<&str>) {
    let limit = i64_at(deployment, "spec.revisionHistoryLimit")
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&Arc<Value>> = sets
        .iter()
        .filter(|rs| {
            Some(name_of(rs)) != new_name && replicas_of(rs) == 0 && status_count(rs, "replicas") == 0
        })
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|rs| revision_of(rs));
    for rs in &idle[..idle.len() - limit] {
        let _ = store.delete(IDS.replicasets, namespace_of(rs), name_of(rs), None, false);
    }
}

/// What one pass of the controller found about the rollout to `new_rs`.
struct RolloutPass<'a> {
    new_rs: &'a str,
    /// The pass created the ReplicaSet (a new template), rather than finding it (a
    /// rollback, or an apply of an older template).
    created_new: bool,
    /// Every pod wanted is updated and available, and no old one is left.
    complete: bool,
    /// No pod of an older ReplicaSet is left.
    all_updated: bool,
    /// More pods updated, ready or available, or fewer old ones, than the last pass saw.
    made_progress: bool,
    deadline: Duration,
}

/// Sets the `Progressing` condition as the real controller does (`getNewReplicaSet`, then
/// `syncRolloutStatus`): a created ReplicaSet starts the clock; a found one only when no
/// condition is recorded, so a `ProgressDeadlineExceeded` stays — naming the ReplicaSet
/// that timed out — until progress or completion replaces it; a finished rollout's
/// condition never times out.
fn set_progressing(conditions: &mut Vec<Value>, pass: &RolloutPass, now: &str) {
    let quoted = format!("{:?}", pass.new_rs);
    let condition = |ok: bool, reason: &str, message: String| {
        json!({
            "type": "Progressing",
            "status": if ok { "True" } else { "False" },
            "lastUpdateTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        })
    };
    let progressing = conditions.iter().find(|c| c["type"] == "Progressing").cloned();
    let reason = progressing
        .as_ref()
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string();
    if pass.created_new {
        let created = condition(
            true,
            "NewReplicaSetCreated",
            format!("Created new replica set {quoted}"),
        );
        set_condition(conditions, created);
    } else if progressing.is_none() {
        let found = condition(
            true,
            "FoundNewReplicaSet",
            format!("Found new replica set {quoted}"),
        );
        set_condition(conditions, found);
    } else if reason == "NewReplicaSetAvailable" && pass.all_updated {
        // Complete, and still complete.
    } else if pass.complete {
        let available = condition(
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet {quoted} has successfully progressed."),
        );
        set_condition(conditions, available);
    } else if pass.made_progress {
        let mut fresh = condition(
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet {quoted} is progressing."),
        );
        if let Some(current) = &progressing
            && current["status"] == "True"
        {
            fresh["lastTransitionTime"] = current["lastTransitionTime"].clone();
        }
        conditions.retain(|c| c["type"] != "Progressing");
        conditions.push(fresh);
    } else if reason != "ProgressDeadlineExceeded" && reason != "NewReplicaSetAvailable" {
        let since = progressing
            .as_ref()
            .and_then(|c| c["lastUpdateTime"].as_str())
            .map(util::age)
            .unwrap_or_default();
        if since > pass.deadline {
            let timed_out = condition(
                false,
                "ProgressDeadlineExceeded",
                format!("ReplicaSet {quoted} has timed out progressing."),
            );
            set_condition(conditions, timed_out);
        }
    }
}

#[allow(clippy::too_many_arguments)] // one call site; the arguments are the pass's findings
fn write_status(
    store: &mut Store,
    deployment: &Value,
    sets: &[Arc<Value>],
    new_rs: Option<&Value>,
    created_new: bool,
    replicas: i64,
    max_unavailable: i64,
    deadline_override: Option<Duration>,
) {
    let key = ObjectKey::of(IDS.deployments, deployment);
    // Re-read: the revision annotation may have just been written.
    let Some(live) = store.get(&key).cloned() else {
        return;
    };
    let sum = |field: &str| sets.iter().map(|rs| status_count(rs, field)).sum::<i64>();
    let total_spec: i64 = sets.iter().map(|rs| replicas_of(rs)).sum();
    let status_replicas = sum("replicas");
    let updated = new_rs.map_or(0, |rs| status_count(rs, "replicas"));
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let old_status = live.get("status").cloned().unwrap_or(json!({}));
    let mut status = json!({
        "observedGeneration": live.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": status_replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
    });
    let unavailable = (total_spec - available).max(0);
    if unavailable > 0 {
        status["unavailableReplicas"] = json!(unavailable);
    }
    // The real controller omits zero counts.
    for field in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        if status[field] == json!(0) {
            status.as_object_mut().expect("an object").remove(field);
        }
    }
    let now = util::now();
    let condition = |kind: &str, ok: bool, reason: &str, message: String| {
        json!({
            "type": kind,
            "status": if ok { "True" } else { "False" },
            "lastUpdateTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        })
    };
    let mut conditions: Vec<Value> = old_status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    if available >= replicas - max_unavailable {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut conditions,
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }

    let deadline = deadline_override.unwrap_or_else(|| {
        Duration::from_secs(
            i64_at(&live, "spec.progressDeadlineSeconds")
                .unwrap_or(600)
                .max(0) as u64,
        )
    });
    if let Some(new_rs) = new_rs {
        let count = |status: &Value, field: &str| status.get(field).and_then(Value::as_i64).unwrap_or(0);
        let made_progress = count(&status, "updatedReplicas") > count(&old_status, "updatedReplicas")
            || count(&status, "replicas") - count(&status, "updatedReplicas")
                < count(&old_status, "replicas") - count(&old_status, "updatedReplicas")
            || count(&status, "readyReplicas") > count(&old_status, "readyReplicas")
            || count(&status, "availableReplicas") > count(&old_status, "availableReplicas");
        let pass = RolloutPass {
            new_rs: name_of(new_rs),
            created_new,
            complete: updated == replicas && status_replicas == replicas && available == replicas,
            all_updated: updated == status_replicas,
            made_progress,
            deadline,
        };
        set_progressing(&mut conditions, &pass, &now);
        // A ReplicaSet that cannot create pods makes the deployment say so.
        let failure = new_rs
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")
            })
            .cloned();
        match failure {
            Some(failure) => set_condition(
                &mut conditions,
                condition(
                    "ReplicaFailure",
                    true,
                    failure["reason"].as_str().unwrap_or("FailedCreate"),
                    failure["message"].as_str().unwrap_or_default().to_string(),
                ),
            ),
            None => conditions.retain(|c| c["type"] != "ReplicaFailure"),
        }
    }
    // Available first, then Progressing, then the rest, as kubectl describe shows them.
    conditions.sort_by_key(|c| match c["type"].as_str() {
        Some("Available") => 0,
        Some("Progressing") => 1,
        _ => 2,
    });
    status["conditions"] = Value::Array(conditions);
    if live.get("status") != Some(&status) {
        let mut next = (*live).clone();
        next["status"] = status;
        let _ = store.update(
            IDS.deployments,
            namespace_of(&live),
            name_of(&live),
            next,
            Part::Status,
            &writer(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_AGO: &str = "2020-01-01T00:00:00Z";

    fn progressing(reason: &str, rs: &str) -> Vec<Value> {
        vec![json!({
            "type": "Progressing",
            "status": if reason == "ProgressDeadlineExceeded" { "False" } else { "True" },
            "reason": reason,
            "message": format!("ReplicaSet {rs:?} …"),
            "lastUpdateTime": LONG_AGO,
            "lastTransitionTime": LONG_AGO,
        })]
    }

    fn pass(new_rs: &str) -> RolloutPass<'_> {
        RolloutPass {
            new_rs,
            created_new: false,
            complete: false,
            all_updated: false,
            made_progress: false,
            deadline: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_new_replica_set_takes_the_deployment_s_annotations_but_the_controller_s_own() {
        let mut store = Store::new();
        let mut deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {
                "kubernetes.io/change-cause": "ship abc123",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        store
            .create(IDS.deployments, "default", deployment.clone(), &writer())
            .expect("created");
        reconcile(&mut store, None);
        let annotations = |store: &Store| -> Vec<Value> {
            store
                .list(IDS.replicasets, Some("default"))
                .iter()
                .map(|rs| rs["metadata"]["annotations"].clone())
                .collect()
        };
        let first = annotations(&store);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["kubernetes.io/change-cause"], "ship abc123");
        assert_eq!(first[0][REVISION], "1");
        assert!(
            first[0]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        // A new change-cause on the same template reaches the ReplicaSet serving it.
        deployment["metadata"]["annotations"]["kubernetes.io/change-cause"] = json!("ship def456");
        store
            .update(
                IDS.deployments,
                "default",
                "web",
                deployment,
                Part::Main,
                &writer(),
            )
            .expect("updated");
        reconcile(&mut store, None);
        assert_eq!(
            annotations(&store)[0]["kubernetes.io/change-cause"],
            "ship def456"
        );
    }

    #[test]
    fn a_timed_out_rollout_stays_timed_out_through_a_rollback_until_it_progresses() {
        let mut conditions = progressing("ProgressDeadlineExceeded", "web-b");
        // The rollback finds ReplicaSet a; no pod has moved yet.
        set_progressing(&mut conditions, &pass("web-a"), "now");
        assert_eq!(conditions[0]["reason"], "ProgressDeadlineExceeded");
        assert!(conditions[0]["message"].as_str().unwrap().contains("web-b"));
        // Then progress: the clock starts again, for a.
        let moving = RolloutPass {
            made_progress: true,
            ..pass("web-a")
        };
        set_progressing(&mut conditions, &moving, "now");
        assert_eq!(conditions[0]["reason"], "ReplicaSetUpdated");
        assert_eq!(conditions[0]["status"], "True");
        assert_eq!(conditions[0]["message"], "ReplicaSet \"web-a\" is progressing.");
        // A new template starts the clock whatever was recorded.
        let mut conditions = progressing("ProgressDeadlineExceeded", "web-b");
        let created = RolloutPass {
            created_new: true,
            ..pass("web-c")
        };
        set_progressing(&mut conditions, &created, "now");
        assert_eq!(conditions[0]["reason"], "NewReplicaSetCreated");
    }

    #[test]
    fn only_a_rollout_under_way_times_out() {
        let mut conditions = progressing("ReplicaSetUpdated", "web-a");
        set_progressing(&mut conditions, &pass("web-a"), "now");
        assert_eq!(conditions[0]["reason"], "ProgressDeadlineExceeded");
        assert_eq!(
            conditions[0]["message"],
            "ReplicaSet \"web-a\" has timed out progressing."
        );
        // A finished rollout's condition is old, not late: a rollback to a ReplicaSet with
        // no pods yet has until they come.
        let mut conditions = progressing("NewReplicaSetAvailable", "web-b");
        set_progressing(&mut conditions, &pass("web-a"), "now");
        assert_eq!(conditions[0]["reason"], "NewReplicaSetAvailable");
        let mut none = Vec::new();
        set_progressing(&mut none, &pass("web-a"), "now");
        assert_eq!(none[0]["reason"], "FoundNewReplicaSet");
    }
}
