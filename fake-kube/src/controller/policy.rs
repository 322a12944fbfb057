//! HorizontalPodAutoscalers and PodDisruptionBudgets.
//!
//! There is no metrics server, so an autoscaler does what a real one does when metrics
//! fail: it only keeps its target within `minReplicas..=maxReplicas`, writing the
//! Deployment's `spec.replicas` through the `scale` subresource as
//! kube-controller-manager. That write makes it the owner of the field, so a later apply
//! that sets another replica count conflicts, as on a real cluster.

use serde_json::{Value, json};

use super::replicaset::pod_is_ready;
use super::{int_or_percent, set_condition, writer};
use crate::resources::IDS;
use crate::selector::LabelSelector;
use crate::store::{Part, Store};
use crate::util::{self, i64_at, is_deleting, name_of, namespace_of, str_at};

pub(super) fn reconcile_autoscalers(store: &mut Store) {
    for hpa in store.list(IDS.hpas, None) {
        if is_deleting(&hpa) {
            continue;
        }
        let namespace = namespace_of(&hpa).to_string();
        let target_kind = str_at(&hpa, "spec.scaleTargetRef.kind").unwrap_or_default();
        let target_name = str_at(&hpa, "spec.scaleTargetRef.name")
            .unwrap_or_default()
            .to_string();
        let target_id = match target_kind {
            "Deployment" => IDS.deployments,
            "ReplicaSet" => IDS.replicasets,
            _ => continue,
        };
        let min = i64_at(&hpa, "spec.minReplicas").unwrap_or(1);
        let max = i64_at(&hpa, "spec.maxReplicas").unwrap_or(min);
        let now = util::now();
        let condition = |kind: &str, ok: bool, reason: &str, message: &str| {
            json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now,
                "reason": reason, "message": message})
        };
        let mut status = hpa.get("status").cloned().unwrap_or(json!({}));
        let mut conditions: Vec<Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let Some(target) = store.get_by(target_id, &namespace, &target_name).cloned() else {
            set_condition(
                &mut conditions,
                condition(
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    &format!(
                        "the HPA controller was unable to get the target's current scale: {target_kind} {target_name:?} not found"
                    ),
                ),
            );
            status["conditions"] = Value::Array(conditions);
            write_status(store, &hpa, status);
            continue;
        };
        let current = i64_at(&target, "spec.replicas").unwrap_or(1);
        let (desired, reason) = if current == 0 && min != 0 {
            (0, None)
        } else if current > max {
            (max, Some("Current number of replicas above Spec.MaxReplicas"))
        } else if current < min {
            (min, Some("Current number of replicas below Spec.MinReplicas"))
        } else {
            (current, None)
        };
        if let Some(reason) = reason {
            let mut next = (*target).clone();
            next["spec"]["replicas"] = json!(desired);
            if store
                .update(target_id, &namespace, &target_name, next, Part::Scale, &writer())
                .is_ok()
            {
                store.record_event(
                    &hpa,
                    false,
                    "SuccessfulRescale",
                    &format!("New size: {desired}; reason: {reason}"),
                    "horizontal-pod-autoscaler",
                );
                status["lastScaleTime"] = json!(now);
            }
        }
        set_condition(
            &mut conditions,
            condition(
                "AbleToScale",
                true,
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
        );
        if current == 0 && min != 0 {
            set_condition(
                &mut conditions,
                condition(
                    "ScalingActive",
                    false,
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
            );
        } else {
            set_condition(
                &mut conditions,
                condition(
                    "ScalingActive",
                    false,
                    "FailedGetResourceMetric",
                    "the HPA was unable to compute the replica count: fake-kube has no metrics server",
                ),
            );
        }
        status["currentReplicas"] = json!(current);
        status["desiredReplicas"] = json!(desired);
        status["conditions"] = Value::Array(conditions);
        write_status(store, &hpa, status);
    }
}

fn write_status(store: &mut Store, object: &Value, status: Value) {
    if object.get("status") == Some(&status) {
        return;
    }
    let mut next = object.clone();
    next["status"] = status;
    let resource = if object["kind"] == "HorizontalPodAutoscaler" {
        IDS.hpas
    } else {
        IDS.pdbs
    };
    let _ = store.update(
        resource,
        namespace_of(object),
        name_of(object),
        next,
        Part::Status,
        &writer(),
    );
}

pub(super) fn reconcile_disruption_budgets(store: &mut Store) {
    for pdb in store.list(IDS.pdbs, None) {
        if is_deleting(&pdb) {
            continue;
        }
        let Some(selector) = LabelSelector::from_object(pdb.pointer("/spec/selector")) else {
            continue;
        };
        let pods: Vec<_> = store
            .list(IDS.pods, Some(namespace_of(&pdb)))
            .into_iter()
            .filter(|pod| !is_deleting(pod) && selector.matches(pod))
            .collect();
        let expected = pods.len() as i64;
        let healthy = pods.iter().filter(|pod| pod_is_ready(pod)).count() as i64;
        let desired = match (
            pdb.pointer("/spec/minAvailable"),
            pdb.pointer("/spec/maxUnavailable"),
        ) {
            (Some(min), _) => int_or_percent(Some(min), expected, true, 0),
            (None, Some(max)) => expected - int_or_percent(Some(max), expected, true, 0),
            (None, None) => 0,
        }
        .max(0);
        let allowed = (healthy - desired).max(0);
        let mut conditions: Vec<Value> = pdb
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (ok, reason) = if allowed > 0 {
            (true, "SufficientPods")
        } else {
            (false, "InsufficientPods")
        };
        set_condition(
            &mut conditions,
            json!({"type": "DisruptionAllowed", "status": if ok { "True" } else { "False" },
                "lastTransitionTime": util::now(), "reason": reason, "message": "",
                "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1))}),
        );
        let status = json!({
            "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": conditions,
        });
        write_status(store, &pdb, status);
    }
}
