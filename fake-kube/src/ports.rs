//! A pod's declared container ports, read one way for everything that needs them: the
//! kubelet publishing them and probing them, the load balancer and the pod proxy
//! resolving a port's name.

use serde_json::Value;

/// One entry of a container's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredPort {
    pub(crate) name: Option<String>,
    pub(crate) number: u16,
    /// As the API spells it: `TCP`, `UDP` or `SCTP` (`TCP` when left out).
    pub(crate) protocol: String,
}

impl DeclaredPort {
    /// How Docker spells the port: `5000/tcp`.
    pub(crate) fn docker_key(&self) -> String {
        format!("{}/{}", self.number, self.protocol.to_lowercase())
    }
}

/// The ports one container declares. An entry without a number in range is left out:
/// validation refuses it before a pod holds it.
pub(crate) fn of_container(container: &Value) -> Vec<DeclaredPort> {
    container
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| {
            Some(DeclaredPort {
                name: port.get("name").and_then(Value::as_str).map(str::to_owned),
                number: u16::try_from(port.get("containerPort")?.as_u64()?).ok()?,
                protocol: port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_owned(),
            })
        })
        .collect()
}

/// The ports every container of a pod declares, in order.
pub(crate) fn of_pod(pod: &Value) -> Vec<DeclaredPort> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(of_container)
        .collect()
}

/// The port number `target` means among `ports`: a number is itself, a string is the
/// name of a declared port (a Service's `targetPort`, a probe's `port`).
pub(crate) fn resolve(ports: &[DeclaredPort], target: &Value) -> Option<u16> {
    match target {
        Value::Number(number) => u16::try_from(number.as_u64()?).ok(),
        Value::String(name) => ports
            .iter()
            .find(|port| port.name.as_deref() == Some(name))
            .map(|port| port.number),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ports_are_read_with_their_defaults_and_resolved_by_number_or_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "ports": [{"name": "http", "containerPort": 5000}]},
            {"name": "b", "ports": [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                                    {"containerPort": 53, "protocol": "UDP"},
                                    {"containerPort": 70000}]},
        ]}});
        let ports = of_pod(&pod);
        assert_eq!(
            ports.iter().map(DeclaredPort::docker_key).collect::<Vec<_>>(),
            ["5000/tcp", "9090/tcp", "53/udp"],
            "TCP when left out; a number out of range is no port"
        );
        assert_eq!(resolve(&ports, &json!("metrics")), Some(9090));
        assert_eq!(resolve(&ports, &json!(8080)), Some(8080));
        assert_eq!(resolve(&ports, &json!("missing")), None);
        assert_eq!(resolve(&ports, &json!(70000)), None);
    }
}
