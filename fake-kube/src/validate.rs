//! Strict field validation: fields the schema does not declare. The apiserver checks
//! every field against the OpenAPI schema; this fake knows the top level of each kind and,
//! field by field, the structures where a typo costs most: the Deployment and ReplicaSet
//! spec, the pod template, pod spec and containers. Anything below those (volumes,
//! affinity, probes' handlers) is accepted as is.

use serde_json::Value;

use crate::fields;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    /// Not checked.
    Any,
    DeploymentSpec,
    ReplicaSetSpec,
    Strategy,
    RollingUpdate,
    ObjectMeta,
    PodTemplate,
    PodSpec,
    Container,
    ContainerPort,
    EnvVar,
    SecurityContext,
    PodSecurityContext,
    Resources,
    Probe,
}

use Type::*;

const OBJECT_META: &[(&str, Type)] = &[
    ("name", Any),
    ("generateName", Any),
    ("namespace", Any),
    ("selfLink", Any),
    ("uid", Any),
    ("resourceVersion", Any),
    ("generation", Any),
    ("creationTimestamp", Any),
    ("deletionTimestamp", Any),
    ("deletionGracePeriodSeconds", Any),
    ("labels", Any),
    ("annotations", Any),
    ("ownerReferences", Any),
    ("finalizers", Any),
    ("managedFields", Any),
];

fn declared(t: Type) -> Option<&'static [(&'static str, Type)]> {
    Some(match t {
        Any => return None,
        ObjectMeta => OBJECT_META,
        DeploymentSpec => &[
            ("replicas", Any),
            ("selector", Any),
            ("template", PodTemplate),
            ("strategy", Strategy),
            ("minReadySeconds", Any),
            ("revisionHistoryLimit", Any),
            ("paused", Any),
            ("progressDeadlineSeconds", Any),
        ],
        ReplicaSetSpec => &[
            ("replicas", Any),
            ("minReadySeconds", Any),
            ("selector", Any),
            ("template", PodTemplate),
        ],
        Strategy => &[("type", Any), ("rollingUpdate", RollingUpdate)],
        RollingUpdate => &[("maxUnavailable", Any), ("maxSurge", Any)],
        PodTemplate => &[("metadata", ObjectMeta), ("spec", PodSpec)],
        PodSpec => &[
            ("volumes", Any),
            ("initContainers", Container),
            ("containers", Container),
            ("ephemeralContainers", Any),
            ("restartPolicy", Any),
            ("terminationGracePeriodSeconds", Any),
            ("activeDeadlineSeconds", Any),
            ("dnsPolicy", Any),
            ("nodeSelector", Any),
            ("serviceAccountName", Any),
            ("serviceAccount", Any),
            ("automountServiceAccountToken", Any),
            ("nodeName", Any),
            ("hostNetwork", Any),
            ("hostPID", Any),
            ("hostIPC", Any),
            ("shareProcessNamespace", Any),
            ("securityContext", PodSecurityContext),
            ("imagePullSecrets", Any),
            ("hostname", Any),
            ("subdomain", Any),
            ("affinity", Any),
            ("schedulerName", Any),
            ("tolerations", Any),
            ("hostAliases", Any),
            ("priorityClassName", Any),
            ("priority", Any),
            ("dnsConfig", Any),
            ("readinessGates", Any),
            ("runtimeClassName", Any),
            ("enableServiceLinks", Any),
            ("preemptionPolicy", Any),
            ("overhead", Any),
            ("topologySpreadConstraints", Any),
            ("setHostnameAsFQDN", Any),
            ("os", Any),
            ("hostUsers", Any),
            ("schedulingGates", Any),
            ("resourceClaims", Any),
            ("resources", Resources),
        ],
        Container => &[
            ("name", Any),
            ("image", Any),
            ("command", Any),
            ("args", Any),
            ("workingDir", Any),
            ("ports", ContainerPort),
            ("envFrom", Any),
            ("env", EnvVar),
            ("resources", Resources),
            ("resizePolicy", Any),
            ("restartPolicy", Any),
            ("volumeMounts", Any),
            ("volumeDevices", Any),
            ("livenessProbe", Probe),
            ("readinessProbe", Probe),
            ("startupProbe", Probe),
            ("lifecycle", Any),
            ("terminationMessagePath", Any),
            ("terminationMessagePolicy", Any),
            ("imagePullPolicy", Any),
            ("securityContext", SecurityContext),
            ("stdin", Any),
            ("stdinOnce", Any),
            ("tty", Any),
        ],
        ContainerPort => &[
            ("name", Any),
            ("hostPort", Any),
            ("containerPort", Any),
            ("protocol", Any),
            ("hostIP", Any),
        ],
        EnvVar => &[("name", Any), ("value", Any), ("valueFrom", Any)],
        SecurityContext => &[
            ("capabilities", Any),
            ("privileged", Any),
            ("seLinuxOptions", Any),
            ("windowsOptions", Any),
            ("runAsUser", Any),
            ("runAsGroup", Any),
            ("runAsNonRoot", Any),
            ("readOnlyRootFilesystem", Any),
            ("allowPrivilegeEscalation", Any),
            ("procMount", Any),
            ("seccompProfile", Any),
            ("appArmorProfile", Any),
        ],
        PodSecurityContext => &[
            ("seLinuxOptions", Any),
            ("windowsOptions", Any),
            ("runAsUser", Any),
            ("runAsGroup", Any),
            ("runAsNonRoot", Any),
            ("supplementalGroups", Any),
            ("supplementalGroupsPolicy", Any),
            ("fsGroup", Any),
            ("sysctls", Any),
            ("fsGroupChangePolicy", Any),
            ("seccompProfile", Any),
            ("appArmorProfile", Any),
            ("seLinuxChangePolicy", Any),
        ],
        Resources => &[("limits", Any), ("requests", Any), ("claims", Any)],
        Probe => &[
            ("exec", Any),
            ("httpGet", Any),
            ("tcpSocket", Any),
            ("grpc", Any),
            ("initialDelaySeconds", Any),
            ("timeoutSeconds", Any),
            ("periodSeconds", Any),
            ("successThreshold", Any),
            ("failureThreshold", Any),
            ("terminationGracePeriodSeconds", Any),
        ],
    })
}

/// The top-level fields of a kind, and the type of its `spec`.
fn top_level(kind: &str) -> Option<(&'static [&'static str], Type)> {
    const COMMON: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
    Some(match kind {
        "Deployment" => (COMMON, DeploymentSpec),
        "ReplicaSet" => (COMMON, ReplicaSetSpec),
        "Pod" => (COMMON, PodSpec),
        "ServiceAccount" => (
            &[
                "apiVersion",
                "kind",
                "metadata",
                "secrets",
                "imagePullSecrets",
                "automountServiceAccountToken",
            ],
            Any,
        ),
        // Events carry many top-level fields and nobody applies them by hand.
        "Event" => return None,
        _ => (COMMON, Any),
    })
}

/// The paths of fields the schema does not declare, printed as the apiserver prints them
/// (`.spec.template.spec.containers[name="score"].bogus`).
pub(crate) fn unknown_fields(kind: &str, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some((top, spec)) = top_level(kind) else {
        return out;
    };
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        if !top.contains(&key.as_str()) {
            out.push(format!(".{key}"));
        } else if key == "metadata" {
            check(value, ObjectMeta, &format!(".{key}"), key, &mut out);
        } else if key == "spec" {
            check(value, spec, ".spec", key, &mut out);
        }
    }
    out
}

fn check(value: &Value, t: Type, path: &str, field: &str, out: &mut Vec<String>) {
    let Some(known) = declared(t) else {
        return;
    };
    match value {
        Value::Array(items) => {
            let keys = fields::list_keys(field, items);
            for (index, item) in items.iter().enumerate() {
                let element = match keys {
                    Some(keys) => {
                        let key: Value =
                            serde_json::from_str(&fields::item_key(item, keys)).unwrap_or_default();
                        let parts: Vec<String> = key
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        format!("[{}]", parts.join(","))
                    }
                    None => format!("[{index}]"),
                };
                check(item, t, &format!("{path}{element}"), "", out);
            }
        }
        Value::Object(map) => {
            for (key, child) in map {
                match known.iter().find(|(name, _)| name == key) {
                    Some((_, child_type)) => check(child, *child_type, &format!("{path}.{key}"), key, out),
                    None => out.push(format!("{path}.{key}")),
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_in_a_deployment_are_named_by_path() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labelz": {}},
            "spec": {"replicas": 1, "replica": 2, "template": {"spec": {
                "containers": [{"name": "score", "image": "i", "imagePolicy": "Always",
                    "securityContext": {"runAsNonRoot": true, "readOnly": true}}],
            }}},
        });
        assert_eq!(
            unknown_fields("Deployment", &deployment),
            [
                ".metadata.labelz",
                ".spec.replica",
                ".spec.template.spec.containers[name=\"score\"].imagePolicy",
                ".spec.template.spec.containers[name=\"score\"].securityContext.readOnly",
            ]
        );
    }

    #[test]
    fn known_fields_pass() {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"type": "LoadBalancer", "anything": 1}});
        assert!(unknown_fields("Service", &service).is_empty());
        let account =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}, "spec": {}});
        assert_eq!(unknown_fields("ServiceAccount", &account), [".spec"]);
    }
}
