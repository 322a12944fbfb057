//! Defaulting, as the apiserver fills in fields a manifest leaves out. Only the defaults
//! the controllers or kubectl read are filled in; the pod template is left exactly as
//! written, so a ReplicaSet's template equals the Deployment's (which `rollout undo`
//! relies on) without a full defaulting pass.
//!
//! Every default is idempotent: it fills only a missing field, so re-applying an
//! unchanged manifest changes nothing.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, Value, json};

/// Cluster IPs and node ports are handed out from process-wide counters; they are only
/// ever displayed, never routed to.
static NEXT_CLUSTER_IP: AtomicU32 = AtomicU32::new(10);
static NEXT_NODE_PORT: AtomicU32 = AtomicU32::new(30000);

fn fill(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// Every kind's defaults take the object's top-level map and its name.
pub(crate) type Defaults = fn(&mut Map<String, Value>, &str);

/// Kinds with nothing to fill in.
pub(crate) fn none(_: &mut Map<String, Value>, _: &str) {}

fn spec(object: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    object.entry("spec").or_insert_with(|| json!({})).as_object_mut()
}

pub(crate) fn namespace(object: &mut Map<String, Value>, name: &str) {
    let metadata = object.entry("metadata").or_insert_with(|| json!({}));
    if let Some(metadata) = metadata.as_object_mut() {
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            fill(labels, "kubernetes.io/metadata.name", json!(name));
        }
    }
    if let Some(spec) = spec(object) {
        fill(spec, "finalizers", json!(["kubernetes"]));
    }
    let status = object.entry("status").or_insert_with(|| json!({}));
    if let Some(status) = status.as_object_mut() {
        fill(status, "phase", json!("Active"));
    }
}

pub(crate) fn service(object: &mut Map<String, Value>, _: &str) {
    let Some(spec) = spec(object) else {
        return;
    };
    fill(spec, "type", json!("ClusterIP"));
    let load_balancer = spec.get("type") == Some(&json!("LoadBalancer"));
    if spec.get("clusterIP").is_none() {
        let n = NEXT_CLUSTER_IP.fetch_add(1, Ordering::Relaxed);
        let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    fill(spec, "sessionAffinity", json!("None"));
    fill(spec, "ipFamilies", json!(["IPv4"]));
    fill(spec, "ipFamilyPolicy", json!("SingleStack"));
    fill(spec, "internalTrafficPolicy", json!("Cluster"));
    if load_balancer {
        fill(spec, "externalTrafficPolicy", json!("Cluster"));
        fill(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(port) = port.as_object_mut() else {
            continue;
        };
        fill(port, "protocol", json!("TCP"));
        if let Some(number) = port.get("port").cloned() {
            fill(port, "targetPort", number);
        }
        if load_balancer {
            fill(
                port,
                "nodePort",
                json!(NEXT_NODE_PORT.fetch_add(1, Ordering::Relaxed) % 2768 + 30000),
            );
        }
    }
    fill(object, "status", json!({"loadBalancer": {}}));
}

pub(crate) fn deployment(object: &mut Map<String, Value>, _: &str) {
    let Some(spec) = spec(object) else {
        return;
    };
    fill(spec, "replicas", json!(1));
    fill(spec, "revisionHistoryLimit", json!(10));
    fill(spec, "progressDeadlineSeconds", json!(600));
    fill(
        spec,
        "strategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    );
}

pub(crate) fn replicaset(object: &mut Map<String, Value>, _: &str) {
    if let Some(spec) = spec(object) {
        fill(spec, "replicas", json!(1));
    }
}

pub(crate) fn autoscaler(object: &mut Map<String, Value>, _: &str) {
    if let Some(spec) = spec(object) {
        fill(spec, "minReplicas", json!(1));
    }
}

pub(crate) fn pod(object: &mut Map<String, Value>, _: &str) {
    if let Some(spec) = spec(object) {
        fill(spec, "restartPolicy", json!("Always"));
        fill(spec, "terminationGracePeriodSeconds", json!(30));
    }
    fill(object, "status", json!({"phase": "Pending"}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_idempotent() {
        let mut service = json!({"metadata": {"name": "s"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 5000, "targetPort": "http"}]}});
        let map = service.as_object_mut().unwrap();
        super::service(map, "s");
        let once = map.clone();
        super::service(map, "s");
        assert_eq!(*map, once);
        assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
        assert!(service["spec"]["ports"][0]["nodePort"].is_u64());
    }
}
