//! Validation of values, as the API server validates what the plans write: object names
//! per kind, container and Service ports, resource quantities and that a limit is not
//! below its request, the enums a typo would miss (protocols, a Deployment's strategy, a
//! Service's type), and a Deployment's selector against its template's labels. Messages
//! are the API server's (`field: Invalid value: VALUE: why`), so a plan refused on GKE is
//! refused here the same way.

use serde_json::{Map, Value};

use crate::selector::LabelSelector;
use crate::util::parse_quantity;

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_1123: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUANTITY: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

/// The rule a kind's names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// Services: their names become DNS labels that must start with a letter.
    Dns1035Label,
    /// Namespaces.
    Dns1123Label,
    /// Everything else.
    Dns1123Subdomain,
}

/// A kind's check of its values (after defaulting), one message per wrong field.
pub(crate) type Check = fn(&Value, &mut Vec<String>);

/// Kinds whose values no plan relies on being checked.
pub(crate) fn unchecked(_: &Value, _: &mut Vec<String>) {}

pub(crate) fn pod(object: &Value, out: &mut Vec<String>) {
    if let Some(spec) = object.get("spec") {
        check_pod_spec(spec, "spec", out);
    }
}

pub(crate) fn deployment(object: &Value, out: &mut Vec<String>) {
    let Some(spec) = object.get("spec") else {
        return;
    };
    if let Some(strategy) = spec.pointer("/strategy/type").and_then(Value::as_str) {
        check_enum(
            "spec.strategy.type",
            strategy,
            &["Recreate", "RollingUpdate"],
            out,
        );
    }
    check_workload(spec, out);
}

pub(crate) fn replicaset(object: &Value, out: &mut Vec<String>) {
    if let Some(spec) = object.get("spec") {
        check_workload(spec, out);
    }
}

pub(crate) fn service(object: &Value, out: &mut Vec<String>) {
    if let Some(spec) = object.get("spec") {
        check_service(spec, out);
    }
}

/// A namespace's Pod Security labels name a level; this fake enforces `restricted`
/// (what the plans ask for) and `privileged` (nothing), and refuses `baseline` by name
/// rather than accept a level it would not enforce.
pub(crate) fn namespace(object: &Value, out: &mut Vec<String>) {
    let labels = object.pointer("/metadata/labels").and_then(Value::as_object);
    for mode in ["enforce", "warn", "audit"] {
        let label = format!("pod-security.kubernetes.io/{mode}");
        let Some(level) = labels.and_then(|labels| labels.get(&label)?.as_str()) else {
            continue;
        };
        let at = format!("metadata.labels[{label}]");
        match level {
            "privileged" | "restricted" => {}
            "baseline" => out.push(format!(
                "{at}: Unsupported value: \"baseline\": this fake API server enforces only \"restricted\" and \"privileged\""
            )),
            other => out.push(format!(
                "{at}: Invalid value: {}: must be one of privileged, baseline, restricted",
                quoted(other)
            )),
        }
    }
}

/// A Gateway: a class, and listeners this fake can serve (HTTP on a valid port).
pub(crate) fn gateway(object: &Value, out: &mut Vec<String>) {
    let spec = object.get("spec");
    if spec.and_then(|s| s.get("gatewayClassName")).is_none() {
        out.push("spec.gatewayClassName: Required value".to_owned());
    }
    let listeners = items(spec, "listeners");
    if listeners.is_empty() {
        out.push("spec.listeners: Required value".to_owned());
    }
    for (index, listener) in listeners.iter().enumerate() {
        let at = format!("spec.listeners[{index}]");
        if listener.get("name").and_then(Value::as_str).is_none() {
            out.push(format!("{at}.name: Required value"));
        }
        match listener.get("port") {
            Some(port) => check_port(&format!("{at}.port"), port, out),
            None => out.push(format!("{at}.port: Required value")),
        }
        match listener.get("protocol").and_then(Value::as_str) {
            Some("HTTP") => {}
            Some(other) => out.push(format!(
                "{at}.protocol: Unsupported value: {}: this fake API server's gateway serves \"HTTP\" listeners only",
                quoted(other)
            )),
            None => out.push(format!("{at}.protocol: Required value")),
        }
    }
}

/// An HTTPRoute: parents named, rules whose matches this fake can serve (paths), and
/// backends that are Services with a port and a weight in the API's range.
pub(crate) fn http_route(object: &Value, out: &mut Vec<String>) {
    let spec = object.get("spec");
    for (index, parent) in items(spec, "parentRefs").iter().enumerate() {
        if parent.get("name").and_then(Value::as_str).is_none() {
            out.push(format!("spec.parentRefs[{index}].name: Required value"));
        }
    }
    for (r, rule) in items(spec, "rules").iter().enumerate() {
        for field in rule.as_object().into_iter().flatten().map(|(k, _)| k) {
            if !["name", "matches", "backendRefs"].contains(&field.as_str()) {
                out.push(format!(
                    "spec.rules[{r}].{field}: Unsupported value: this fake API server's gateway applies matches and backendRefs only"
                ));
            }
        }
        for (m, matched) in items(Some(rule), "matches").iter().enumerate() {
            let at = format!("spec.rules[{r}].matches[{m}]");
            if let Some(other) = matched
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .find(|k| *k != "path")
            {
                out.push(format!(
                    "{at}.{other}: Unsupported value: this fake API server's gateway matches on \"path\" only"
                ));
            }
            if let Some(kind) = matched.pointer("/path/type").and_then(Value::as_str) {
                check_enum(&format!("{at}.path.type"), kind, &["Exact", "PathPrefix"], out);
            }
        }
        for (b, backend) in items(Some(rule), "backendRefs").iter().enumerate() {
            let at = format!("spec.rules[{r}].backendRefs[{b}]");
            if backend.get("name").and_then(Value::as_str).is_none() {
                out.push(format!("{at}.name: Required value"));
            }
            let kind = backend.get("kind").and_then(Value::as_str).unwrap_or("Service");
            let group = backend.get("group").and_then(Value::as_str).unwrap_or("");
            if kind != "Service" || !group.is_empty() {
                out.push(format!(
                    "{at}.kind: Unsupported value: {}: this fake API server's gateway routes to core Services only",
                    quoted(kind)
                ));
            } else if backend.get("port").is_none() {
                out.push(format!(
                    "{at}: Invalid value: \"object\": Must have port for Service reference"
                ));
            }
            if let Some(port) = backend.get("port") {
                check_port(&format!("{at}.port"), port, out);
            }
            if let Some(weight) = backend.get("weight")
                && weight.as_u64().is_none_or(|w| w > 1_000_000)
            {
                out.push(format!(
                    "{at}.weight: Invalid value: {weight}: {at}.weight in body should be less than or equal to 1000000"
                ));
            }
        }
    }
}

/// GKE's HealthCheckPolicy: a Service targeted, and a check type GKE knows.
pub(crate) fn health_check_policy(object: &Value, out: &mut Vec<String>) {
    let target = object.pointer("/spec/targetRef");
    if target
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .is_none()
    {
        out.push("spec.targetRef.name: Required value".to_owned());
    }
    if let Some(kind) = target.and_then(|t| t.get("kind")).and_then(Value::as_str) {
        check_enum("spec.targetRef.kind", kind, &["Service", "ServiceImport"], out);
    }
    if let Some(kind) = object
        .pointer("/spec/default/config/type")
        .and_then(Value::as_str)
    {
        check_enum(
            "spec.default.config.type",
            kind,
            &["GRPC", "HTTP", "HTTP2", "HTTPS", "TCP"],
            out,
        );
    }
}

/// The items of the list `field` of `value`, if there is one.
fn items<'a>(value: Option<&'a Value>, field: &str) -> &'a [Value] {
    value
        .and_then(|v| v.get(field))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(crate) fn check_name(rule: Names, name: &str, out: &mut Vec<String>) {
    if name.is_empty() {
        return;
    }
    let (ok, why) = match rule {
        Names::Dns1035Label => (
            is_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
            LABEL_1035,
        ),
        Names::Dns1123Label => (is_label(name), LABEL_1123),
        Names::Dns1123Subdomain => (name.len() <= 253 && name.split('.').all(is_label), SUBDOMAIN),
    };
    if !ok {
        out.push(format!("metadata.name: Invalid value: {}: {why}", quoted(name)));
    }
}

/// An RFC 1123 label: 1-63 lower-case letters, digits or '-', alphanumeric at both ends.
fn is_label(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&text.len())
        && text.chars().all(|c| alnum(c) || c == '-')
        && text.starts_with(alnum)
        && text.ends_with(alnum)
}

fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// What a Deployment and a ReplicaSet share: a selector matching the template's labels,
/// and the pod template.
fn check_workload(spec: &Value, out: &mut Vec<String>) {
    let labels = spec
        .pointer("/template/metadata/labels")
        .and_then(Value::as_object);
    match spec.get("selector") {
        None | Some(Value::Null) => out.push("spec.selector: Required value".to_owned()),
        Some(selector) => match LabelSelector::from_object(Some(selector)) {
            Some(parsed) if parsed.matches_labels(labels) => {}
            Some(_) => out.push(format!(
                "spec.template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`",
                go_map(labels)
            )),
            None => out.push("spec.selector: Invalid value: the selector cannot be read".to_owned()),
        },
    }
    if let Some(pod) = spec.pointer("/template/spec") {
        check_pod_spec(pod, "spec.template.spec", out);
    }
}

/// A label map as Go's `%#v` prints it in the API server's message.
fn go_map(labels: Option<&Map<String, Value>>) -> String {
    let pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{}:{}", quoted(key), value))
        .collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

fn check_pod_spec(pod: &Value, path: &str, out: &mut Vec<String>) {
    for (index, container) in pod
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{path}.containers[{index}]");
        for (p, port) in container
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(number) = port.get("containerPort") {
                check_port(&format!("{at}.ports[{p}].containerPort"), number, out);
            }
            if let Some(protocol) = port.get("protocol").and_then(Value::as_str) {
                check_enum(
                    &format!("{at}.ports[{p}].protocol"),
                    protocol,
                    &["SCTP", "TCP", "UDP"],
                    out,
                );
            }
        }
        if let Some(policy) = container.get("imagePullPolicy").and_then(Value::as_str) {
            check_enum(
                &format!("{at}.imagePullPolicy"),
                policy,
                &["Always", "IfNotPresent", "Never"],
                out,
            );
        }
        check_resources(container.get("resources"), &format!("{at}.resources"), out);
    }
}

fn check_resources(resources: Option<&Value>, path: &str, out: &mut Vec<String>) {
    let Some(resources) = resources else {
        return;
    };
    let amounts = |part: &str| -> Vec<(String, String, Option<f64>)> {
        resources
            .get(part)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                let amount = parse_quantity(&text);
                (name.clone(), text, amount)
            })
            .collect()
    };
    let (requests, limits) = (amounts("requests"), amounts("limits"));
    for (part, entries) in [("requests", &requests), ("limits", &limits)] {
        for (name, text, amount) in entries {
            if amount.is_none() {
                out.push(format!(
                    "{path}.{part}[{name}]: Invalid value: {}: {QUANTITY}",
                    quoted(text)
                ));
            }
        }
    }
    for (name, text, request) in &requests {
        let limit = limits.iter().find(|(limited, ..)| limited == name);
        if let (Some(request), Some((_, limit_text, Some(limit)))) = (request, limit)
            && request > limit
        {
            out.push(format!(
                "{path}.requests: Invalid value: {}: must be less than or equal to {name} limit of {limit_text}",
                quoted(text)
            ));
        }
    }
}

fn check_service(spec: &Value, out: &mut Vec<String>) {
    if let Some(kind) = spec.get("type").and_then(Value::as_str) {
        check_enum(
            "spec.type",
            kind,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            out,
        );
    }
    for (index, port) in spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("spec.ports[{index}]");
        match port.get("port") {
            Some(number) => check_port(&format!("{at}.port"), number, out),
            None => out.push(format!("{at}.port: Required value")),
        }
        match port.get("targetPort") {
            Some(Value::String(name)) if !is_port_name(name) => out.push(format!(
                "{at}.targetPort: Invalid value: {}: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at most 15 characters, with at least one letter",
                quoted(name)
            )),
            Some(number @ Value::Number(_)) => check_port(&format!("{at}.targetPort"), number, out),
            _ => {}
        }
        if let Some(protocol) = port.get("protocol").and_then(Value::as_str) {
            check_enum(&format!("{at}.protocol"), protocol, &["SCTP", "TCP", "UDP"], out);
        }
    }
}

/// An IANA service name, as a named port must be.
fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn check_port(path: &str, number: &Value, out: &mut Vec<String>) {
    if !number.as_u64().is_some_and(|n| (1..=65535).contains(&n)) {
        out.push(format!("{path}: Invalid value: {number}: {PORT_RANGE}"));
    }
}

fn check_enum(path: &str, value: &str, supported: &[&str], out: &mut Vec<String>) {
    if !supported.contains(&value) {
        let listed: Vec<String> = supported.iter().map(|s| quoted(s)).collect();
        out.push(format!(
            "{path}: Unsupported value: {}: supported values: {}",
            quoted(value),
            listed.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::IDS;
    use crate::strategy::Strategy;

    fn invalid(resource: crate::resources::ResourceId, object: &Value) -> Vec<String> {
        Strategy::of(resource).invalid_values(object)
    }

    fn deployment(name: &str, spec_changes: Value) -> Value {
        let mut deployment = json!({"metadata": {"name": name}, "spec": {
            "selector": {"matchLabels": {"app": "score-app"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "score-app"}}, "spec": {"containers": [{
                "name": "score", "image": "i",
                "ports": [{"containerPort": 5000, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "1", "memory": "256Mi"}},
            }]}},
        }});
        crate::patch::merge_patch(&mut deployment, &json!({"spec": spec_changes}));
        deployment
    }

    #[test]
    fn what_the_manifests_hold_is_valid() {
        assert_eq!(
            invalid(IDS.deployments, &deployment("score-app", json!({}))),
            Vec::<String>::new()
        );
        let service = json!({"metadata": {"name": "score-app"}, "spec": {"type": "LoadBalancer",
            "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]}});
        assert_eq!(invalid(IDS.services, &service), Vec::<String>::new());
        let no_selector = json!({"metadata": {"name": "score-app-5d8f9c7b6d"}, "spec": {}});
        assert_eq!(
            invalid(IDS.replicasets, &no_selector),
            ["spec.selector: Required value"]
        );
    }

    #[test]
    fn routes_and_gateways_are_checked_as_the_gateway_api_checks_them() {
        let route = |backend: Value| {
            let mut out = Vec::new();
            http_route(
                &json!({"spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [backend]}]}}),
                &mut out,
            );
            out
        };
        assert!(route(json!({"name": "s", "port": 80, "weight": 90})).is_empty());
        assert_eq!(
            route(json!({"name": "s", "weight": 90})),
            ["spec.rules[0].backendRefs[0]: Invalid value: \"object\": Must have port for Service reference"]
        );
        assert_eq!(
            route(json!({"name": "s", "port": 80, "weight": 1_000_001})).len(),
            1
        );
        let mut out = Vec::new();
        gateway(
            &json!({"spec": {"gatewayClassName": "c", "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS"}]}}),
            &mut out,
        );
        assert!(
            out.len() == 1 && out[0].contains("\"HTTP\" listeners only"),
            "{out:?}"
        );
    }

    #[test]
    fn pod_security_levels_are_the_enforced_ones() {
        let labelled = |level: &str| {
            let mut out = Vec::new();
            let object = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}});
            namespace(&object, &mut out);
            out
        };
        assert!(labelled("restricted").is_empty() && labelled("privileged").is_empty());
        assert!(
            labelled("baseline")[0].contains("enforces only"),
            "{:?}",
            labelled("baseline")
        );
        assert!(
            labelled("strict")[0].contains("must be one of"),
            "{:?}",
            labelled("strict")
        );
    }

    #[test]
    fn names_are_checked_per_kind() {
        let named = |rule: Names, name: &str| {
            let mut out = Vec::new();
            check_name(rule, name, &mut out);
            out
        };
        assert_eq!(
            named(Names::Dns1035Label, "1score"),
            [format!("metadata.name: Invalid value: \"1score\": {LABEL_1035}")]
        );
        assert!(
            named(Names::Dns1123Subdomain, "1score").is_empty(),
            "a subdomain may start with a digit"
        );
        assert_eq!(
            named(Names::Dns1123Subdomain, "Score_App"),
            [format!(
                "metadata.name: Invalid value: \"Score_App\": {SUBDOMAIN}"
            )]
        );
        assert!(
            named(Names::Dns1123Label, "ml.ops").len() == 1 && named(Names::Dns1123Label, "mlops").is_empty()
        );
    }

    #[test]
    fn what_gke_refuses_is_refused_with_its_message() {
        let refused = |changes: Value| invalid(IDS.deployments, &deployment("score-app", changes));
        let container = |changes: Value| {
            let mut container = json!({"name": "score", "image": "i"});
            crate::patch::merge_patch(&mut container, &changes);
            json!({"template": {"spec": {"containers": [container]}}})
        };
        assert_eq!(
            refused(json!({"strategy": {"type": "Rolling"}})),
            [
                "spec.strategy.type: Unsupported value: \"Rolling\": supported values: \"Recreate\", \"RollingUpdate\""
            ]
        );
        assert_eq!(
            refused(json!({"selector": {"matchLabels": {"app": "other"}}})),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"score-app\"}: `selector` does not match template `labels`"
            ]
        );
        assert_eq!(
            refused(container(json!({"ports": [{"containerPort": 70000}]}))),
            [
                "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
        assert_eq!(
            refused(container(json!({"resources": {"limits": {"cpu": "100mm"}}}))),
            [format!(
                "spec.template.spec.containers[0].resources.limits[cpu]: Invalid value: \"100mm\": {QUANTITY}"
            )]
        );
        assert_eq!(
            refused(container(
                json!({"resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "128Mi"}}})
            )),
            [
                "spec.template.spec.containers[0].resources.requests: Invalid value: \"256Mi\": must be less than or equal to memory limit of 128Mi"
            ]
        );
        let service = json!({"metadata": {"name": "s"}, "spec": {"type": "Loadbalancer",
            "ports": [{"port": 0, "targetPort": "http_port", "protocol": "tcp"}]}});
        assert_eq!(
            invalid(IDS.services, &service).len(),
            4,
            "{:?}",
            invalid(IDS.services, &service)
        );
    }
}
