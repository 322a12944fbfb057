//! The resource types the fake serves, and the documents that describe them to kubectl:
//! `/version`, aggregated and legacy discovery, and the OpenAPI v3 documents `kubectl
//! apply` reads to learn that the server validates fields itself.

use serde_json::{Value, json};

/// One REST resource (a group, version and plural), as discovery lists it.
#[derive(Debug)]
pub(crate) struct ResourceType {
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
    /// `all` puts the resource in `kubectl get all`.
    pub(crate) categories: &'static [&'static str],
    pub(crate) subresources: &'static [&'static str],
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods`: how error messages name the resource.
    pub(crate) fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether `status` is a subresource, so writes to the main resource leave it alone.
    pub(crate) fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    pub(crate) fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }
}

// A table row reads best as one call with every column.
#[allow(clippy::too_many_arguments)]
const fn resource(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories,
        subresources,
    }
}

/// Every resource served. Order matters only for discovery output.
pub(crate) static RESOURCES: &[ResourceType] = &[
    resource(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        &[],
        &["status", "finalize"],
    ),
    resource(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        &["po"],
        &["all"],
        &["status", "log"],
    ),
    resource(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        &["all"],
        &["status"],
    ),
    resource("", "v1", "events", "event", "Event", true, &["ev"], &[], &[]),
    resource(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        &[],
        &[],
    ),
    resource(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        &["all"],
        &["status", "scale"],
    ),
    resource(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        &["all"],
        &["status", "scale"],
    ),
    resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        &["all"],
        &["status"],
    ),
    resource(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        &[],
        &["status"],
    ),
    resource(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        &[],
        &[],
    ),
    // The Gateway API, as GKE's clusters serve it: the classes of gateway there are, a
    // Gateway (an Envoy-style proxy on an address of its own) and the HTTPRoutes that
    // split its requests between Services.
    resource(
        "gateway.networking.k8s.io",
        "v1",
        "gatewayclasses",
        "gatewayclass",
        "GatewayClass",
        false,
        &["gc"],
        &[],
        &["status"],
    ),
    resource(
        "gateway.networking.k8s.io",
        "v1",
        "gateways",
        "gateway",
        "Gateway",
        true,
        &["gtw"],
        &[],
        &["status"],
    ),
    // GKE's policy for its gateways' health checks, which GKE serves beside the Gateway
    // API (a CRD there); checked, stored, and otherwise without effect here.
    resource(
        "networking.gke.io",
        "v1",
        "healthcheckpolicies",
        "healthcheckpolicy",
        "HealthCheckPolicy",
        true,
        &[],
        &[],
        &["status"],
    ),
    resource(
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
        "httproute",
        "HTTPRoute",
        true,
        &[],
        &[],
        &["status"],
    ),
];

/// Index into [`RESOURCES`]; the store keys objects by it.
pub(crate) type ResourceId = usize;

pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

pub(crate) fn id_of(group: &str, plural: &str) -> ResourceId {
    RESOURCES
        .iter()
        .position(|r| r.is(group, plural))
        .unwrap_or_else(|| panic!("{plural}.{group} is in the resource table"))
}

/// The resource ids the controllers use, looked up once by name so a typo fails the
/// first test rather than silently matching nothing.
pub(crate) struct Ids {
    pub(crate) namespaces: ResourceId,
    pub(crate) pods: ResourceId,
    pub(crate) services: ResourceId,
    pub(crate) events: ResourceId,
    pub(crate) serviceaccounts: ResourceId,
    pub(crate) deployments: ResourceId,
    pub(crate) replicasets: ResourceId,
    pub(crate) hpas: ResourceId,
    pub(crate) pdbs: ResourceId,
    pub(crate) gatewayclasses: ResourceId,
    pub(crate) gateways: ResourceId,
    pub(crate) httproutes: ResourceId,
}

pub(crate) static IDS: std::sync::LazyLock<Ids> = std::sync::LazyLock::new(|| Ids {
    namespaces: id_of("", "namespaces"),
    pods: id_of("", "pods"),
    services: id_of("", "services"),
    events: id_of("", "events"),
    serviceaccounts: id_of("", "serviceaccounts"),
    deployments: id_of("apps", "deployments"),
    replicasets: id_of("apps", "replicasets"),
    hpas: id_of("autoscaling", "horizontalpodautoscalers"),
    pdbs: id_of("policy", "poddisruptionbudgets"),
    gatewayclasses: id_of("gateway.networking.k8s.io", "gatewayclasses"),
    gateways: id_of("gateway.networking.k8s.io", "gateways"),
    httproutes: id_of("gateway.networking.k8s.io", "httproutes"),
});

const VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

/// The version kubectl's gcloud dispatcher reads to choose a kubectl: minor 32 keeps the
/// dispatcher's built-in v1.32 client.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.4-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// Groups in discovery order, each with its versions (preferred first).
fn groups(core: bool) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group.is_empty() == core) {
        match out.iter_mut().find(|(group, _)| *group == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceType> {
    let (group, version) = (group.to_string(), version.to_string());
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// What a subresource answers with, as aggregated discovery requires: a subresource
/// without a `responseKind` is dropped by the client.
fn subresource_kind(r: &ResourceType, sub: &str) -> Value {
    match sub {
        "scale" => json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
        "log" => json!({"group": "", "version": "", "kind": "string"}),
        _ => json!({"group": r.group, "version": r.version, "kind": r.kind}),
    }
}

fn subresource_verbs(sub: &str) -> Value {
    match sub {
        "log" => json!(["get"]),
        "finalize" => json!(["update"]),
        _ => json!(["get", "patch", "update"]),
    }
}

/// The content type that tells kubectl it got aggregated discovery, v2.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `/api` (core) or `/apis` (every other group) as an aggregated v2 document.
pub(crate) fn aggregated_discovery(core: bool) -> Value {
    let items: Vec<Value> = groups(core)
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|version| {
                    let resources: Vec<Value> = resources_of(group, version)
                        .map(|r| {
                            let subresources: Vec<Value> = r
                                .subresources
                                .iter()
                                .map(|sub| {
                                    json!({
                                        "subresource": sub,
                                        "responseKind": subresource_kind(r, sub),
                                        "verbs": subresource_verbs(sub),
                                    })
                                })
                                .collect();
                            json!({
                                "resource": r.plural,
                                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular,
                                "verbs": VERBS,
                                "shortNames": r.short_names,
                                "categories": r.categories,
                                "subresources": subresources,
                            })
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "apiVersion": "apidiscovery.k8s.io/v2",
        "kind": "APIGroupDiscoveryList",
        "metadata": {},
        "items": items,
    })
}

/// Legacy `/api`.
pub(crate) fn legacy_core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

fn legacy_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

/// Legacy `/apis`.
pub(crate) fn legacy_groups() -> Value {
    let groups: Vec<Value> = groups(false)
        .iter()
        .map(|(group, versions)| legacy_group(group, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/<group>`, if the group exists.
pub(crate) fn legacy_group_document(group: &str) -> Option<Value> {
    let (_, versions) = groups(false).into_iter().find(|(g, _)| *g == group)?;
    let mut document = legacy_group(group, &versions);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}

/// Legacy `/api/v1` or `/apis/<group>/<version>`, if the group-version exists.
pub(crate) fn legacy_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources_of(group, version) {
        list.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
            "shortNames": r.short_names,
            "categories": r.categories,
        }));
        for sub in r.subresources {
            list.push(json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": subresource_kind(r, sub)["kind"],
                "verbs": subresource_verbs(sub),
            }));
        }
    }
    if list.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}),
    )
}

/// `api/v1` or `apis/<group>/<version>`: how OpenAPI v3 names a group-version.
fn openapi_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per group-version.
pub(crate) fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    for core in [true, false] {
        for (group, versions) in groups(core) {
            for version in versions {
                let key = openapi_key(group, version);
                paths.insert(
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}")}),
                );
            }
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<key>`: the least kubectl needs. For each kind, a PATCH operation tagged
/// with its group-version-kind that declares the `fieldValidation` query parameter, so
/// kubectl leaves validation to the server (sending `fieldValidation=Strict`) instead of
/// downloading `/openapi/v2` to validate on the client. There are no schemas, so `kubectl
/// explain` does not work.
pub(crate) fn openapi_document(key: &str) -> Option<Value> {
    let (group, version) = match key.split('/').collect::<Vec<_>>()[..] {
        ["api", version] => ("", version),
        ["apis", group, version] => (group, version),
        _ => return None,
    };
    let mut paths = serde_json::Map::new();
    for r in resources_of(group, version) {
        let namespace = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let path = format!(
            "/{}{namespace}/{}/{{name}}",
            openapi_key(group, version),
            r.plural
        );
        paths.insert(
            path,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": r.kind},
                "parameters": [
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (fake-kube)", "version": "v1.32.4"},
        "paths": paths,
        "components": {},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_appears_in_discovery_with_a_response_kind() {
        let mut listed = 0;
        for core in [true, false] {
            let document = aggregated_discovery(core);
            for group in document["items"].as_array().expect("items") {
                for version in group["versions"].as_array().expect("versions") {
                    for r in version["resources"].as_array().expect("resources") {
                        assert!(r["responseKind"]["kind"].is_string(), "{r}");
                        listed += 1;
                    }
                }
            }
        }
        assert_eq!(listed, RESOURCES.len());
    }

    #[test]
    fn every_kind_has_a_patch_operation_declaring_field_validation() {
        let index = openapi_index();
        let keys: Vec<&String> = index["paths"].as_object().expect("paths").keys().collect();
        assert!(!keys.is_empty());
        let mut kinds = Vec::new();
        for key in keys {
            let document = openapi_document(key).expect("a document per index entry");
            for operation in document["paths"].as_object().expect("paths").values() {
                let parameters = operation["patch"]["parameters"].as_array().expect("parameters");
                assert!(parameters.iter().any(|p| p["name"] == "fieldValidation"));
                kinds.push(operation["patch"]["x-kubernetes-group-version-kind"]["kind"].clone());
            }
        }
        assert_eq!(kinds.len(), RESOURCES.len());
    }
}
