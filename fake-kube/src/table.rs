//! Server-side printing: the `Table` kubectl asks for when it prints objects without
//! `-o` (`kubectl get pods`), with the columns the apiserver's printers give the kinds
//! served here. Other kinds get NAME and AGE.

use std::time::Duration;

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::util::{self, get_path, i64_at, name_of, str_at};

pub(crate) const CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

pub(crate) fn wanted(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// Kubernetes' `duration.HumanDuration`, near enough: `45s`, `3m20s`, `25m`, `5h10m`, `3d`.
fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if days < 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else {
        format!("{days}d")
    }
}

fn age(object: &Value) -> String {
    str_at(object, "metadata.creationTimestamp").map_or_else(|| "<unknown>".into(), |t| human(util::age(t)))
}

fn count(object: &Value, path: &str) -> i64 {
    i64_at(object, path).unwrap_or(0)
}

fn pod_status(pod: &Value) -> String {
    if get_path(pod, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return "Terminating".into();
    }
    let statuses = get_path(pod, "status.containerStatuses").and_then(Value::as_array);
    for status in statuses.into_iter().flatten() {
        // A container between restarts is still "Running" to kubectl's eye.
        if let Some(reason) = get_path(status, "state.waiting.reason").and_then(Value::as_str)
            && (reason != "ContainerCreating" || str_at(pod, "status.phase") == Some("Pending"))
        {
            return reason.to_string();
        }
        if let Some(reason) = get_path(status, "state.terminated.reason").and_then(Value::as_str) {
            return reason.to_string();
        }
    }
    str_at(pod, "status.phase").unwrap_or("Pending").to_string()
}

/// The columns and the cells of one object, by kind.
fn columns(kind: &str) -> Vec<(&'static str, &'static str)> {
    match kind {
        "Pod" => vec![
            ("Name", "name"),
            ("Ready", ""),
            ("Status", ""),
            ("Restarts", ""),
            ("Age", ""),
        ],
        "Deployment" => vec![
            ("Name", "name"),
            ("Ready", ""),
            ("Up-to-date", ""),
            ("Available", ""),
            ("Age", ""),
        ],
        "ReplicaSet" => vec![
            ("Name", "name"),
            ("Desired", ""),
            ("Current", ""),
            ("Ready", ""),
            ("Age", ""),
        ],
        "Service" => vec![
            ("Name", "name"),
            ("Type", ""),
            ("Cluster-IP", ""),
            ("External-IP", ""),
            ("Port(s)", ""),
            ("Age", ""),
        ],
        "Namespace" => vec![("Name", "name"), ("Status", ""), ("Age", "")],
        "Event" => vec![
            ("Last Seen", ""),
            ("Type", ""),
            ("Reason", ""),
            ("Object", ""),
            ("Message", ""),
        ],
        "HorizontalPodAutoscaler" => vec![
            ("Name", "name"),
            ("Reference", ""),
            ("Targets", ""),
            ("MinPods", ""),
            ("MaxPods", ""),
            ("Replicas", ""),
            ("Age", ""),
        ],
        _ => vec![("Name", "name"), ("Age", "")],
    }
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = json!(name_of(o));
    match kind {
        "Pod" => {
            let statuses: Vec<Value> = get_path(o, "status.containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = get_path(o, "spec.containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses.iter().filter_map(|s| s["restartCount"].as_i64()).sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts),
                json!(age(o)),
            ]
        }
        "Deployment" => vec![
            name,
            json!(format!(
                "{}/{}",
                count(o, "status.readyReplicas"),
                count(o, "spec.replicas")
            )),
            json!(count(o, "status.updatedReplicas")),
            json!(count(o, "status.availableReplicas")),
            json!(age(o)),
        ],
        "ReplicaSet" => vec![
            name,
            json!(count(o, "spec.replicas")),
            json!(count(o, "status.replicas")),
            json!(count(o, "status.readyReplicas")),
            json!(age(o)),
        ],
        "Service" => {
            let kind = str_at(o, "spec.type").unwrap_or("ClusterIP");
            let ingress: Vec<String> = get_path(o, "status.loadBalancer.ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            let external = match (kind, ingress.is_empty()) {
                ("LoadBalancer", true) => "<pending>".to_string(),
                (_, true) => "<none>".to_string(),
                _ => ingress.join(","),
            };
            let ports: Vec<String> = get_path(o, "spec.ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let protocol = p["protocol"].as_str().unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(node) => format!("{}:{node}/{protocol}", p["port"]),
                        None => format!("{}/{protocol}", p["port"]),
                    }
                })
                .collect();
            vec![
                name,
                json!(kind),
                json!(str_at(o, "spec.clusterIP").unwrap_or("<none>")),
                json!(external),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(age(o)),
            ]
        }
        "Namespace" => vec![
            name,
            json!(str_at(o, "status.phase").unwrap_or("Active")),
            json!(age(o)),
        ],
        "Event" => {
            let last = str_at(o, "lastTimestamp")
                .or_else(|| str_at(o, "metadata.creationTimestamp"))
                .map_or_else(|| "<unknown>".into(), |t| human(util::age(t)));
            let object = format!(
                "{}/{}",
                str_at(o, "involvedObject.kind")
                    .unwrap_or_default()
                    .to_lowercase(),
                str_at(o, "involvedObject.name").unwrap_or_default()
            );
            vec![
                json!(last),
                o.get("type").cloned().unwrap_or(json!("")),
                o.get("reason").cloned().unwrap_or(json!("")),
                json!(object),
                o.get("message").cloned().unwrap_or(json!("")),
            ]
        }
        "HorizontalPodAutoscaler" => vec![
            name,
            json!(format!(
                "{}/{}",
                str_at(o, "spec.scaleTargetRef.kind").unwrap_or_default(),
                str_at(o, "spec.scaleTargetRef.name").unwrap_or_default()
            )),
            json!("<unknown>"),
            json!(count(o, "spec.minReplicas")),
            json!(count(o, "spec.maxReplicas")),
            json!(count(o, "status.currentReplicas")),
            json!(age(o)),
        ],
        _ => vec![name, json!(age(o))],
    }
}

/// A `meta.k8s.io/v1` Table of objects of one resource. Each row carries its object as
/// the request's `includeObject` asks: its metadata (the default), the whole object
/// (what kubectl asks for to `--sort-by` a field of it), or nothing.
pub(crate) fn table(
    resource: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    include_object: Option<&str>,
) -> Value {
    let definitions: Vec<Value> = columns(resource.kind)
        .into_iter()
        .map(|(name, format)| {
            json!({"name": name, "type": "string", "format": format, "description": "", "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let carried = match include_object {
                Some("Object") => object.clone(),
                Some("None") => Value::Null,
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                }),
            };
            json!({"cells": cells(resource.kind, object), "object": carried})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        let cases = [
            (45, "45s"),
            (200, "3m20s"),
            (1500, "25m"),
            (5 * 3600 + 600, "5h10m"),
            (30 * 3600, "30h"),
            (3 * 86_400, "3d"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human(Duration::from_secs(seconds)), expected);
        }
    }

    #[test]
    fn a_crash_looping_pod_shows_its_waiting_reason() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let row = cells("Pod", &pod);
        assert_eq!(row[1..4], [json!("0/1"), json!("CrashLoopBackOff"), json!(4)]);
    }
}
