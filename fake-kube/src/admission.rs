//! Pod Security admission at the `restricted` level, as a namespace's
//! `pod-security.kubernetes.io/enforce` (refuse) and `…/warn` (warn) labels select it: the
//! level the plans' namespace asks for. `privileged` checks nothing; `baseline`, which no
//! plan uses, is refused where the namespace is written (`values::namespace`) rather
//! than silently not enforced. Messages follow the apiserver's wording, check by check
//! in its order, so what a test prints reads like what a real cluster says.

use serde_json::Value;

use crate::util::get_path;

/// Whether a namespace's label for `mode` (`enforce` or `warn`) asks for `restricted`.
pub(crate) fn restricted(namespace: &Value, mode: &str) -> bool {
    let label = format!("pod-security.kubernetes.io/{mode}");
    get_path(namespace, "metadata.labels").and_then(|labels| labels.get(&label)?.as_str())
        == Some("restricted")
}

/// `violates PodSecurity "restricted:latest": …`, or None when the pod spec passes.
pub(crate) fn check(pod_spec: &Value) -> Option<String> {
    let violations = violations(pod_spec);
    (!violations.is_empty()).then(|| {
        format!(
            "violates PodSecurity \"restricted:latest\": {}",
            violations.join(", ")
        )
    })
}

/// Volume types the restricted profile allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if names.len() == 1 {
        format!("container {}", quoted[0])
    } else {
        format!("containers {}", quoted.join(", "))
    }
}

fn violations(spec: &Value) -> Vec<String> {
    let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|field| spec.get(*field)?.as_array())
        .flatten()
        .collect();
    let name = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let container_context =
        |c: &Value, field: &str| get_path(c, &format!("securityContext.{field}")).cloned();
    let pod_context = |field: &str| get_path(spec, &format!("securityContext.{field}")).cloned();
    let mut out = Vec::new();

    let escalating: Vec<String> = containers
        .iter()
        .filter(|c| container_context(c, "allowPrivilegeEscalation") != Some(Value::Bool(false)))
        .map(|c| name(c))
        .collect();
    if !escalating.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            containers_phrase(&escalating)
        ));
    }

    // Capabilities: drop ALL, and add at most NET_BIND_SERVICE.
    let mut capability_problems = Vec::new();
    let not_dropping: Vec<String> = containers
        .iter()
        .filter(|c| {
            let drops = container_context(c, "capabilities.drop");
            !drops
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "ALL"))
        })
        .map(|c| name(c))
        .collect();
    if !not_dropping.is_empty() {
        capability_problems.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&not_dropping)
        ));
    }
    for container in &containers {
        let added: Vec<String> = container_context(container, "capabilities.add")
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .filter(|cap| cap != "NET_BIND_SERVICE")
            .collect();
        if !added.is_empty() {
            let quoted: Vec<String> = added.iter().map(|c| format!("{c:?}")).collect();
            capability_problems.push(format!(
                "container {:?} must not include {} in securityContext.capabilities.add",
                name(container),
                quoted.join(", ")
            ));
        }
    }
    if !capability_problems.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({})",
            capability_problems.join("; ")
        ));
    }

    let host_namespaces: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|field| spec.get(**field) == Some(&Value::Bool(true)))
        .map(|field| format!("{field}=true"))
        .collect();
    if !host_namespaces.is_empty() {
        out.push(format!("host namespaces ({})", host_namespaces.join(", ")));
    }

    let volumes: Vec<&Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let volume_name = |v: &Value| {
        v.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let host_paths: Vec<String> = volumes
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| format!("{:?}", volume_name(v)))
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        out.push(format!("hostPath volumes ({noun} {})", host_paths.join(", ")));
    }

    let host_ports: Vec<String> = containers
        .iter()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("hostPort")?.as_i64().filter(|port| *port != 0))
                .map(|port| format!("container {:?} uses hostPort {port}", name(c)))
                .collect::<Vec<_>>()
        })
        .collect();
    if !host_ports.is_empty() {
        out.push(format!("hostPort ({})", host_ports.join(", ")));
    }

    let privileged: Vec<String> = containers
        .iter()
        .filter(|c| container_context(c, "privileged") == Some(Value::Bool(true)))
        .map(|c| name(c))
        .collect();
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            containers_phrase(&privileged)
        ));
    }

    let restricted_volumes: Vec<String> = volumes
        .iter()
        .filter_map(|v| {
            let kind = v.as_object()?.keys().find(|k| *k != "name")?.clone();
            (!RESTRICTED_VOLUMES.contains(&kind.as_str()))
                .then(|| format!("volume {:?} uses restricted volume type {kind:?}", volume_name(v)))
        })
        .collect();
    if !restricted_volumes.is_empty() {
        out.push(format!(
            "restricted volume types ({})",
            restricted_volumes.join(", ")
        ));
    }

    // runAsNonRoot: the pod sets it (and no container unsets it), or every container does.
    let pod_non_root = pod_context("runAsNonRoot");
    let mut non_root_problems = Vec::new();
    if pod_non_root == Some(Value::Bool(false)) {
        non_root_problems.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicitly_root: Vec<String> = containers
        .iter()
        .filter(|c| container_context(c, "runAsNonRoot") == Some(Value::Bool(false)))
        .map(|c| name(c))
        .collect();
    if !explicitly_root.is_empty() {
        non_root_problems.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            containers_phrase(&explicitly_root)
        ));
    }
    if pod_non_root != Some(Value::Bool(true)) && non_root_problems.is_empty() {
        let unset: Vec<String> = containers
            .iter()
            .filter(|c| container_context(c, "runAsNonRoot").is_none())
            .map(|c| name(c))
            .collect();
        if !unset.is_empty() {
            non_root_problems.push(format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&unset)
            ));
        }
    }
    if !non_root_problems.is_empty() {
        out.push(format!("runAsNonRoot != true ({})", non_root_problems.join("; ")));
    }

    let mut root_user = Vec::new();
    if pod_context("runAsUser") == Some(Value::from(0)) {
        root_user.push("pod must not set runAsUser=0".to_string());
    }
    let root_containers: Vec<String> = containers
        .iter()
        .filter(|c| container_context(c, "runAsUser") == Some(Value::from(0)))
        .map(|c| name(c))
        .collect();
    if !root_containers.is_empty() {
        root_user.push(format!(
            "{} must not set runAsUser=0",
            containers_phrase(&root_containers)
        ));
    }
    if !root_user.is_empty() {
        out.push(format!("runAsUser=0 ({})", root_user.join("; ")));
    }

    let allowed_profile = |profile: Option<Value>| {
        matches!(
            profile
                .as_ref()
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let pod_profile = pod_context("seccompProfile");
    let mut seccomp_problems = Vec::new();
    if pod_profile.is_some() && !allowed_profile(pod_profile.clone()) {
        let kind = pod_profile
            .as_ref()
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        seccomp_problems.push(format!(
            "pod must not set securityContext.seccompProfile.type to {kind:?}"
        ));
    }
    let bad_containers: Vec<String> = containers
        .iter()
        .filter(|c| {
            let profile = container_context(c, "seccompProfile");
            profile.is_some() && !allowed_profile(profile)
        })
        .map(|c| name(c))
        .collect();
    if !bad_containers.is_empty() {
        seccomp_problems.push(format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            containers_phrase(&bad_containers)
        ));
    }
    if !allowed_profile(pod_profile) && seccomp_problems.is_empty() {
        let unset: Vec<String> = containers
            .iter()
            .filter(|c| container_context(c, "seccompProfile").is_none())
            .map(|c| name(c))
            .collect();
        if !unset.is_empty() {
            seccomp_problems.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&unset)
            ));
        }
    }
    if !seccomp_problems.is_empty() {
        out.push(format!("seccompProfile ({})", seccomp_problems.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compliant() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "score", "image": "x", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        })
    }

    #[test]
    fn a_compliant_pod_passes_restricted() {
        assert_eq!(check(&compliant()), None);
    }

    #[test]
    fn a_bare_pod_fails_restricted_with_the_apiservers_message() {
        let bare = json!({"containers": [{"name": "nginx", "image": "nginx"}]});
        assert_eq!(
            check(&bare).expect("violations"),
            "violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"nginx\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"nginx\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"nginx\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"nginx\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn each_restricted_rule_is_checked() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "runAsNonRoot",
                Box::new(|s| s["securityContext"]["runAsNonRoot"] = json!(false)),
            ),
            (
                "privileged",
                Box::new(|s| s["containers"][0]["securityContext"]["privileged"] = json!(true)),
            ),
            ("host namespaces", Box::new(|s| s["hostNetwork"] = json!(true))),
            (
                "hostPath volumes",
                Box::new(|s| s["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}])),
            ),
            (
                "unrestricted capabilities",
                Box::new(|s| {
                    s["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"])
                }),
            ),
            (
                "seccompProfile",
                Box::new(|s| s["securityContext"]["seccompProfile"]["type"] = json!("Unconfined")),
            ),
            (
                "allowPrivilegeEscalation",
                Box::new(|s| s["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true)),
            ),
        ];
        for (rule, mutate) in cases {
            let mut spec = compliant();
            mutate(&mut spec);
            let message = check(&spec).unwrap_or_default();
            assert!(message.contains(rule), "{rule}: {message}");
        }
        let mut bind = compliant();
        bind["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["NET_BIND_SERVICE"]);
        assert_eq!(check(&bind), None);
    }
}
