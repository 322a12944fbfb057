//! Authorization, as far as a cluster without roles has it: every request is allowed
//! except those `ClusterOptions::denied` names, which are refused 403 as RBAC refuses them,
//! and `SelfSubjectAccessReview` (what `kubectl auth can-i` asks) answers from the same
//! list, so what the fake says a user may do is what it lets them do.

use hyper::Method;
use serde_json::{Value, json};

use crate::api::Query;
use crate::error::ApiError;
use crate::resources::RESOURCES;

/// Where `kubectl auth can-i` sends its question.
pub(crate) const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// The user every token stands for: the fake knows one.
const USER: &str = "fake-kube-user";

/// What a request asks to do, as RBAC names it.
#[derive(Debug, PartialEq)]
struct Attributes {
    verb: &'static str,
    /// The plural, with `/subresource` if any: `pods/proxy`.
    resource: String,
    group: String,
    namespace: String,
    name: String,
}

impl Attributes {
    /// How `ClusterOptions::denied` names it: `create pods/proxy`.
    fn key(&self) -> String {
        format!("{} {}", self.verb, self.resource)
    }

    fn refusal(&self) -> ApiError {
        let namespace = if self.namespace.is_empty() {
            String::new()
        } else {
            format!(" in the namespace \"{}\"", self.namespace)
        };
        let plural = self.resource.split('/').next().unwrap_or_default();
        ApiError::Forbidden {
            kind: plural.to_owned(),
            name: self.name.clone(),
            message: format!(
                "User \"{USER}\" cannot {} resource \"{}\" in API group \"{}\"{namespace}",
                self.verb, self.resource, self.group
            ),
        }
    }
}

/// The attributes of a request to a resource or a pod's proxy; None for what RBAC does
/// not guard by resource (discovery, OpenAPI, health).
fn attributes(method: &Method, path: &str, query: &Query) -> Option<Attributes> {
    let verb = |named: bool| match (method, named) {
        (&Method::GET, true) => Some("get"),
        (&Method::GET, false) if matches!(query.get("watch"), Some("true" | "1")) => Some("watch"),
        (&Method::GET, false) => Some("list"),
        (&Method::POST, _) => Some("create"),
        (&Method::PUT, _) => Some("update"),
        (&Method::PATCH, _) => Some("patch"),
        (&Method::DELETE, true) => Some("delete"),
        (&Method::DELETE, false) => Some("deletecollection"),
        _ => None,
    };
    if let Some((namespace, name, _, _)) = crate::proxy::target(path) {
        return Some(Attributes {
            verb: verb(true)?,
            resource: "pods/proxy".to_owned(),
            group: String::new(),
            namespace,
            name,
        });
    }
    let target = crate::api::parse_target(path)?;
    let resource = &RESOURCES[target.resource];
    Some(Attributes {
        verb: verb(target.name.is_some())?,
        resource: match &target.subresource {
            Some(sub) => format!("{}/{sub}", resource.plural),
            None => resource.plural.to_owned(),
        },
        group: resource.group.to_owned(),
        namespace: target.namespace.unwrap_or_default(),
        name: target.name.unwrap_or_default(),
    })
}

/// The 403 for a request `denied` names.
pub(crate) fn check(denied: &[String], method: &Method, path: &str, query: &Query) -> Result<(), ApiError> {
    match attributes(method, path, query) {
        Some(asked) if denied.contains(&asked.key()) => Err(asked.refusal()),
        _ => Ok(()),
    }
}

/// The answer to a `SelfSubjectAccessReview`, sent as JSON or as kubectl's typed client
/// sends it (protobuf): the review, with its status, as JSON (which that client accepts).
pub(crate) fn review(denied: &[String], content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let media_type = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default();
    let mut review = match media_type.trim() {
        "application/json" => serde_json::from_slice(body)
            .map_err(|error| ApiError::BadRequest(format!("the request body is not valid JSON: {error}")))?,
        wire::PROTOBUF => wire::review_as_json(body)?,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, {} (got {other:?})",
                wire::PROTOBUF
            )));
        }
    };
    answer(denied, &mut review)?;
    Ok(review)
}

fn answer(denied: &[String], review: &mut Value) -> Result<(), ApiError> {
    let invalid = |message: &str| ApiError::Invalid {
        kind: "SelfSubjectAccessReview".to_owned(),
        name: String::new(),
        causes: vec![message.to_owned()],
    };
    if review["kind"] != "SelfSubjectAccessReview" || review["apiVersion"] != "authorization.k8s.io/v1" {
        return Err(ApiError::BadRequest(
            "the body is not an authorization.k8s.io/v1 SelfSubjectAccessReview".to_owned(),
        ));
    }
    let spec = &review["spec"];
    let (resource, non_resource) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    let allowed = match (resource.is_object(), non_resource.is_object()) {
        (true, true) => {
            return Err(invalid(
                "spec: Invalid value: cannot set both resourceAttributes and nonResourceAttributes",
            ));
        }
        (false, false) => {
            return Err(invalid(
                "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
        // Discovery, health and the like: every authenticated user may.
        (false, true) => true,
        (true, false) => {
            let text = |key: &str| resource[key].as_str().unwrap_or_default();
            let mut asked = format!("{} {}", text("verb"), text("resource"));
            if !text("subresource").is_empty() {
                asked = format!("{asked}/{}", text("subresource"));
            }
            !denied.contains(&asked)
        }
    };
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "the fake cluster has no roles: every user may do anything not denied"})
    } else {
        // RBAC gives no reason for what no role allows; kubectl then prints a bare `no`.
        json!({"allowed": false})
    };
    if let Some(metadata) = review["metadata"].as_object_mut() {
        metadata.insert("creationTimestamp".to_owned(), Value::Null);
    }
    Ok(())
}

/// Kubernetes' protobuf encoding, as far as a `SelfSubjectAccessReview` needs it: the
/// `k8s\0` magic, a `runtime.Unknown` envelope naming the kind, the review inside.
mod wire {
    use prost::Message;
    use serde_json::{Value, json};

    use crate::error::ApiError;

    pub(super) const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
    const MAGIC: &[u8] = b"k8s\0";

    #[derive(Message)]
    struct Unknown {
        #[prost(message, optional, tag = "1")]
        type_meta: Option<TypeMeta>,
        #[prost(bytes = "vec", optional, tag = "2")]
        raw: Option<Vec<u8>>,
    }

    #[derive(Message)]
    struct TypeMeta {
        #[prost(string, optional, tag = "1")]
        api_version: Option<String>,
        #[prost(string, optional, tag = "2")]
        kind: Option<String>,
    }

    #[derive(Message)]
    struct SelfSubjectAccessReview {
        #[prost(message, optional, tag = "2")]
        spec: Option<Spec>,
    }

    #[derive(Message)]
    struct Spec {
        #[prost(message, optional, tag = "1")]
        resource_attributes: Option<ResourceAttributes>,
        #[prost(message, optional, tag = "2")]
        non_resource_attributes: Option<NonResourceAttributes>,
    }

    #[derive(Message)]
    struct ResourceAttributes {
        #[prost(string, optional, tag = "1")]
        namespace: Option<String>,
        #[prost(string, optional, tag = "2")]
        verb: Option<String>,
        #[prost(string, optional, tag = "3")]
        group: Option<String>,
        #[prost(string, optional, tag = "4")]
        version: Option<String>,
        #[prost(string, optional, tag = "5")]
        resource: Option<String>,
        #[prost(string, optional, tag = "6")]
        subresource: Option<String>,
        #[prost(string, optional, tag = "7")]
        name: Option<String>,
    }

    #[derive(Message)]
    struct NonResourceAttributes {
        #[prost(string, optional, tag = "1")]
        path: Option<String>,
        #[prost(string, optional, tag = "2")]
        verb: Option<String>,
    }

    /// The review as its JSON form, so one path answers both encodings.
    pub(super) fn review_as_json(body: &[u8]) -> Result<Value, ApiError> {
        let undecodable = |why: String| {
            ApiError::BadRequest(format!(
                "the request body is not a protobuf-encoded object: {why}"
            ))
        };
        let envelope = body
            .strip_prefix(MAGIC)
            .ok_or_else(|| undecodable("it does not start with the k8s magic".to_owned()))?;
        let unknown = Unknown::decode(envelope).map_err(|error| undecodable(error.to_string()))?;
        let type_meta = unknown.type_meta.unwrap_or_default();
        let review = SelfSubjectAccessReview::decode(unknown.raw.unwrap_or_default().as_slice())
            .map_err(|error| undecodable(error.to_string()))?;
        let spec = review.spec.unwrap_or_default();
        let mut spec_json = json!({});
        if let Some(asked) = spec.resource_attributes {
            spec_json["resourceAttributes"] = json!({
                "namespace": asked.namespace, "verb": asked.verb, "group": asked.group,
                "version": asked.version, "resource": asked.resource,
                "subresource": asked.subresource, "name": asked.name,
            });
        }
        if let Some(asked) = spec.non_resource_attributes {
            spec_json["nonResourceAttributes"] = json!({"path": asked.path, "verb": asked.verb});
        }
        Ok(json!({
            "kind": type_meta.kind,
            "apiVersion": type_meta.api_version,
            "metadata": {},
            "spec": spec_json,
        }))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// What kubectl v1.32's `auth can-i create pods --subresource=proxy -n mlops` sent.
        const KUBECTL_ASKS: &[u8] = b"k8s\0\x0a\x32\x0a\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12\x42\x0a\x10\x0a\x00\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x24\x0a\x22\x0a\x05mlops\x12\x06create\x1a\x00\x22\x00\x2a\x04pods\x32\x05proxy\x3a\x00\x1a\x08\x08\x00\x12\x00\x1a\x00\x20\x00\x1a\x00\x22\x00";

        #[test]
        fn kubectl_s_protobuf_review_reads_as_its_json_form() {
            let review = review_as_json(KUBECTL_ASKS).unwrap();
            assert_eq!(review["kind"], "SelfSubjectAccessReview");
            assert_eq!(review["apiVersion"], "authorization.k8s.io/v1");
            let asked = &review["spec"]["resourceAttributes"];
            assert_eq!(
                (
                    &asked["verb"],
                    &asked["resource"],
                    &asked["subresource"],
                    &asked["namespace"]
                ),
                (&json!("create"), &json!("pods"), &json!("proxy"), &json!("mlops"))
            );
            assert!(review["spec"].get("nonResourceAttributes").is_none());
            assert_eq!(review_as_json(b"\x0a\x00").unwrap_err().code(), 400);
            assert_eq!(review_as_json(b"k8s\0\x0a\xff").unwrap_err().code(), 400);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_rbac_names_them() {
        let query = |text: &str| Query::parse(Some(text));
        let asked =
            |method: Method, path: &str, q: &str| attributes(&method, path, &query(q)).map(|a| a.key());
        assert_eq!(
            asked(
                Method::POST,
                "/api/v1/namespaces/ml/pods/web-1:http/proxy/score",
                ""
            )
            .as_deref(),
            Some("create pods/proxy")
        );
        assert_eq!(
            asked(Method::GET, "/api/v1/namespaces/ml/pods", "watch=true").as_deref(),
            Some("watch pods")
        );
        assert_eq!(
            asked(Method::GET, "/api/v1/namespaces/ml/pods/web-1/log", "").as_deref(),
            Some("get pods/log")
        );
        assert_eq!(
            asked(Method::PATCH, "/apis/apps/v1/namespaces/ml/deployments/web", "").as_deref(),
            Some("patch deployments")
        );
        assert_eq!(asked(Method::GET, "/version", ""), None);
        let denied = vec!["create pods/proxy".to_owned()];
        let refused = check(
            &denied,
            &Method::POST,
            "/api/v1/namespaces/ml/pods/web-1:http/proxy/score",
            &query(""),
        )
        .unwrap_err();
        assert_eq!(refused.code(), 403);
        assert_eq!(
            refused.status()["message"],
            "pods \"web-1\" is forbidden: User \"fake-kube-user\" cannot create resource \"pods/proxy\" in API group \"\" in the namespace \"ml\""
        );
        assert!(
            check(
                &denied,
                &Method::GET,
                "/api/v1/namespaces/ml/pods/web-1:http/proxy/score",
                &query("")
            )
            .is_ok()
        );
    }

    #[test]
    fn an_access_review_answers_from_the_same_list() {
        let denied = vec!["create pods/proxy".to_owned()];
        let ask = |attributes: Value| {
            let body = json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": null}, "spec": attributes});
            review(&denied, None, body.to_string().as_bytes())
        };
        let proxy = |verb: &str| json!({"resourceAttributes": {"namespace": "ml", "verb": verb, "resource": "pods", "subresource": "proxy"}});
        assert_eq!(ask(proxy("create")).unwrap()["status"]["allowed"], false);
        assert_eq!(ask(proxy("get")).unwrap()["status"]["allowed"], true);
        assert_eq!(
            ask(json!({"nonResourceAttributes": {"path": "/version", "verb": "get"}})).unwrap()["status"]["allowed"],
            true
        );
        assert_eq!(ask(json!({})).unwrap_err().code(), 422);
    }
}
