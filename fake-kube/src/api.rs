//! The REST API: routing a request to discovery, OpenAPI or a resource, and the verbs on
//! resources — get, list, watch, create, update, patch (four kinds), delete — plus the
//! `scale`, `status` and `log` subresources, and the pods' `proxy` (in `proxy`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::cluster::Shared;
use crate::error::ApiError;
use crate::kubelet;
use crate::patch;
use crate::resources::{self, RESOURCES, ResourceId};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::Body;
use crate::store::{Change, EventType, Part, Writer, Written};
use crate::table;
use crate::util::{self, name_of, namespace_of};

pub(crate) fn json_response(status: u16, value: &Value, warnings: &[String]) -> Response<Body> {
    let mut response = Response::new(Body::full(value.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for warning in warnings {
        // RFC 7234 warning: code, agent, quoted text. kubectl prints the text after
        // "Warning: ".
        let text = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            response.headers_mut().append("Warning", value);
        }
    }
    response
}

pub(crate) fn error_response(error: &ApiError) -> Response<Body> {
    let mut response = json_response(error.code(), &error.status(), &[]);
    if let ApiError::TooManyRequests { retry_after } = error
        && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
    {
        response.headers_mut().insert(hyper::header::RETRY_AFTER, value);
    }
    response
}

fn text_response(status: u16, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::full(text));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The query string, decoded; the first value of a repeated parameter wins.
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(text: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in text.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            map.entry(util::percent_decode(key))
                .or_insert_with(|| util::percent_decode(value));
        }
        Query(map)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// A resource request: `/api/v1/namespaces/ns/pods/name/log` and the like.
pub(crate) struct Target {
    pub(crate) resource: ResourceId,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

pub(crate) fn parse_target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, more @ ..]
            if resources::find(group, version, plural).is_some_and(|id| RESOURCES[id].namespaced) =>
        {
            (
                Some(namespace.to_string()),
                std::iter::once(plural).chain(more).copied().collect::<Vec<_>>(),
            )
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let resource = resources::find(group, version, plural)?;
    if !RESOURCES[resource].namespaced && namespace.is_some() {
        return None;
    }
    if RESOURCES[resource].namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    if let Some(sub) = &subresource
        && !RESOURCES[resource].subresources.contains(&sub.as_str())
    {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

pub(crate) async fn handle(shared: &Arc<Shared>, parts: Parts, body: Bytes) -> Response<Body> {
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let query = Query::parse(parts.uri.query());
    let accept = parts
        .headers
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let get = parts.method == Method::GET;
    match path.as_str() {
        "/version" if get => return json_response(200, &resources::version(), &[]),
        "/healthz" | "/readyz" | "/livez" if get => return text_response(200, "ok"),
        "/api" | "/apis" if get => {
            let core = path == "/api";
            if accept.contains("g=apidiscovery.k8s.io") {
                let mut response = json_response(200, &resources::aggregated_discovery(core), &[]);
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(resources::AGGREGATED_CONTENT_TYPE),
                );
                return response;
            }
            let document = if core {
                resources::legacy_core_versions()
            } else {
                resources::legacy_groups()
            };
            return json_response(200, &document, &[]);
        }
        "/openapi/v3" if get => return json_response(200, &resources::openapi_index(), &[]),
        _ => {}
    }
    if get {
        if let Some(key) = path.strip_prefix("/openapi/v3/") {
            return match resources::openapi_document(key) {
                Some(document) => json_response(200, &document, &[]),
                None => error_response(&ApiError::NoRoute),
            };
        }
        let legacy = match path
            .trim_start_matches('/')
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["api", version] => Some(resources::legacy_resource_list("", version)),
            ["apis", group] => Some(resources::legacy_group_document(group)),
            ["apis", group, version] => Some(resources::legacy_resource_list(group, version)),
            _ => None,
        };
        if let Some(document) = legacy {
            return match document {
                Some(document) => json_response(200, &document, &[]),
                None => error_response(&ApiError::NoRoute),
            };
        }
    }
    let denied = &shared.options.denied;
    if parts.method == Method::POST && path == crate::authz::ACCESS_REVIEWS {
        let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        return match crate::authz::review(denied, content_type, &body) {
            Ok(review) => json_response(201, &review, &[]),
            Err(error) => error_response(&error),
        };
    }
    if let Err(refused) = crate::authz::check(denied, &parts.method, &path, &query) {
        return error_response(&refused);
    }
    if let Some(pod) = crate::proxy::target(&path) {
        let content_type = parts.headers.get(CONTENT_TYPE).cloned();
        return crate::proxy::forward(
            shared,
            pod,
            parts.method.clone(),
            parts.uri.query(),
            content_type,
            body,
        )
        .await
        .unwrap_or_else(|error| error_response(&error));
    }
    let Some(target) = parse_target(&path) else {
        return error_response(&ApiError::NoRoute);
    };
    let user_agent = parts
        .headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let request = ResourceRequest {
        shared,
        target,
        query,
        // The apiserver names a manager that gives no name after its User-Agent's program.
        default_manager: user_agent.split('/').next().unwrap_or("unknown").to_string(),
        content_type,
        as_table: table::wanted(&accept),
    };
    match request.run(&parts.method, &body).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

struct ResourceRequest<'a> {
    shared: &'a Arc<Shared>,
    target: Target,
    query: Query,
    default_manager: String,
    content_type: String,
    /// kubectl asked for a Table, to print it.
    as_table: bool,
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("the request body is not valid JSON: {error}")))
}

impl ResourceRequest<'_> {
    fn namespace(&self) -> &str {
        self.target.namespace.as_deref().unwrap_or_default()
    }

    fn resource(&self) -> &'static resources::ResourceType {
        &RESOURCES[self.target.resource]
    }

    fn writer(&self) -> Writer<'_> {
        Writer {
            manager: self.query.get("fieldManager").unwrap_or(&self.default_manager),
            dry_run: self.query.get("dryRun") == Some("All"),
            strict: self.query.get("fieldValidation") == Some("Strict"),
        }
    }

    fn written(&self, written: Written) -> Response<Body> {
        let status = if written.created { 201 } else { 200 };
        json_response(status, &written.object, &written.warnings)
    }

    async fn run(self, method: &Method, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let name = self.target.name.clone();
        let sub = self.target.subresource.clone();
        match (method, name, sub.as_deref()) {
            (&Method::GET, None, _) => {
                let labels = LabelSelector::parse(self.query.get("labelSelector").unwrap_or_default())?;
                let fields = FieldSelector::parse(self.query.get("fieldSelector").unwrap_or_default())?;
                if self.query.flag("watch") {
                    return self.watch(labels, fields);
                }
                Ok(self.list(&labels, &fields))
            }
            (&Method::GET, Some(name), Some("log")) => {
                let pod = self.get(&name)?;
                kubelet::logs::serve(self.shared, &pod, &self.query).await
            }
            (&Method::GET, Some(name), Some("scale")) => {
                Ok(json_response(200, &scale_of(&self.get(&name)?), &[]))
            }
            (&Method::GET, Some(name), _) => {
                let object = self.get(&name)?;
                if self.as_table {
                    let version = object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    return Ok(table_response(&table::table(
                        self.resource(),
                        std::slice::from_ref(&object),
                        version,
                        self.query.get("includeObject"),
                    )));
                }
                Ok(json_response(200, &object, &[]))
            }
            (&Method::POST, None, None) => {
                let object = parse_body(body)?;
                let given = namespace_of(&object);
                if self.resource().namespaced && !given.is_empty() && given != self.namespace() {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                let written = self.shared.store().create(
                    self.target.resource,
                    self.namespace(),
                    object,
                    &self.writer(),
                )?;
                Ok(self.written(written))
            }
            (&Method::PUT, Some(name), sub) => {
                let object = parse_body(body)?;
                let (next, part) = match sub {
                    None => (object, Part::Main),
                    Some("status") => (object, Part::Status),
                    Some("scale") => (object, Part::Scale),
                    Some(_) => return Err(ApiError::MethodNotAllowed),
                };
                if part == Part::Main && !name_of(&next).is_empty() && name_of(&next) != name {
                    return Err(ApiError::BadRequest(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        name_of(&next)
                    )));
                }
                let written = self.shared.store().update(
                    self.target.resource,
                    self.namespace(),
                    &name,
                    next,
                    part,
                    &self.writer(),
                )?;
                Ok(self.written(written))
            }
            (&Method::PATCH, Some(name), sub) => self.patch(&name, sub, body),
            (&Method::DELETE, Some(name), None) => {
                let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let grace = self
                    .query
                    .get("gracePeriodSeconds")
                    .and_then(|g| g.parse().ok())
                    .or_else(|| options.get("gracePeriodSeconds").and_then(Value::as_i64));
                let dry_run = self.query.get("dryRun") == Some("All")
                    || options.pointer("/dryRun/0").and_then(Value::as_str) == Some("All");
                let deleted = self.shared.store().delete(
                    self.target.resource,
                    self.namespace(),
                    &name,
                    grace,
                    dry_run,
                )?;
                Ok(json_response(200, &deleted, &[]))
            }
            // No plan deletes a collection (`kubectl delete -l` deletes one by one), so
            // `deletecollection` is neither served nor listed in discovery.
            _ => Err(ApiError::MethodNotAllowed),
        }
    }

    fn get(&self, name: &str) -> Result<Value, ApiError> {
        self.shared
            .store()
            .get_by(self.target.resource, self.namespace(), name)
            .map(|object| (**object).clone())
            .ok_or_else(|| ApiError::not_found(self.resource(), name))
    }

    fn list(&self, labels: &LabelSelector, fields: &FieldSelector) -> Response<Body> {
        let store = self.shared.store();
        let items: Vec<Value> = store
            .list(self.target.resource, self.target.namespace.as_deref())
            .into_iter()
            .filter(|object| labels.matches(object) && fields.matches(object))
            .map(|object| (*object).clone())
            .collect();
        let resource = self.resource();
        if self.as_table {
            return table_response(&table::table(
                resource,
                &items,
                &store.revision().to_string(),
                self.query.get("includeObject"),
            ));
        }
        let list = json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": store.revision().to_string()},
            "items": items,
        });
        json_response(200, &list, &[])
    }

    fn patch(&self, name: &str, sub: Option<&str>, body: &[u8]) -> Result<Response<Body>, ApiError> {
        let body = parse_body(body)?;
        let writer = self.writer();
        if self.content_type == "application/apply-patch+yaml" {
            if sub.is_some() {
                return Err(ApiError::MethodNotAllowed);
            }
            let manager = self
                .query
                .get("fieldManager")
                .ok_or_else(|| ApiError::BadRequest("PATCH with apply must have a fieldManager".into()))?;
            let writer = Writer {
                manager,
                strict: self.query.get("fieldValidation") != Some("Ignore"),
                ..writer
            };
            let written = self.shared.store().apply(
                self.target.resource,
                self.namespace(),
                name,
                &body,
                &writer,
                self.query.flag("force"),
            )?;
            return Ok(self.written(written));
        }
        let mut store = self.shared.store();
        let live = store
            .get_by(self.target.resource, self.namespace(), name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(self.resource(), name))?;
        let (mut document, part) = match sub {
            None => ((*live).clone(), Part::Main),
            Some("status") => ((*live).clone(), Part::Status),
            Some("scale") => (scale_of(&live), Part::Scale),
            Some(_) => return Err(ApiError::MethodNotAllowed),
        };
        match self.content_type.as_str() {
            "application/json-patch+json" => patch::json_patch(&mut document, &body)?,
            // The real API server takes strategic merge and JSON merge patches too; no
            // plan sends them (see `patch`), so they are refused here by name.
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - this fake API takes application/json-patch+json and application/apply-patch+yaml, what the plans send (got {other:?})"
                )));
            }
        }
        // A patch cannot move the object's resourceVersion precondition: drop the
        // copied one unless the client set it.
        let client_version = body.pointer("/metadata/resourceVersion").is_some();
        if !client_version && let Some(metadata) = document.get_mut("metadata").and_then(Value::as_object_mut)
        {
            metadata.remove("resourceVersion");
        }
        let written = store.update(
            self.target.resource,
            self.namespace(),
            name,
            document,
            part,
            &writer,
        )?;
        drop(store);
        if part == Part::Scale {
            return Ok(json_response(200, &scale_of(&written.object), &written.warnings));
        }
        Ok(self.written(written))
    }

    /// A watch: the changes after the requested resourceVersion (or the current objects,
    /// as ADDED, without one), then every change as it happens, as newline-delimited JSON,
    /// until `timeoutSeconds`, the client hanging up, or shutdown.
    fn watch(&self, labels: LabelSelector, fields: FieldSelector) -> Result<Response<Body>, ApiError> {
        let resource = self.target.resource;
        let namespace = self.target.namespace.clone();
        let filter = WatchFilter {
            resource,
            namespace,
            labels,
            fields,
            as_table: self.as_table,
            include_object: self.query.get("includeObject").map(str::to_owned),
        };
        let from: Option<u64> = match self.query.get("resourceVersion") {
            None | Some("0") => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {text:?}")))?,
            ),
        };
        let timeout = self
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(Duration::from_secs(1800), Duration::from_secs);
        let (initial, mut changes, start) = {
            let store = self.shared.store();
            let changes = store.subscribe();
            let start = store.revision();
            let initial: Vec<Value> = match from {
                None => store
                    .list(resource, filter.namespace.as_deref())
                    .into_iter()
                    .filter(|object| filter.selects(object))
                    .map(|object| filter.event("ADDED", &object))
                    .collect(),
                Some(revision) => match store.changes_since(revision) {
                    Some(history) => history.iter().filter_map(|c| filter.event_for(c)).collect(),
                    None => vec![expired(revision, start)],
                },
            };
            (initial, changes, start)
        };
        let (sender, receiver) = mpsc::channel::<Bytes>(256);
        let mut shutdown = self.shared.shutdown_signal();
        tokio::spawn(async move {
            let send = |event: Value| {
                let sender = sender.clone();
                async move {
                    let mut line = event.to_string();
                    line.push('\n');
                    sender.send(Bytes::from(line)).await.is_ok()
                }
            };
            let mut expired_already = false;
            for event in initial {
                expired_already |= event["type"] == "ERROR";
                if !send(event).await {
                    return;
                }
            }
            if expired_already {
                return;
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(change) => {
                            if change.revision <= start {
                                continue;
                            }
                            if let Some(event) = filter.event_for(&change)
                                && !send(event).await {
                                    return;
                                }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Too slow a reader: end the watch as a too-old one, so the
                            // client lists again.
                            let _ = send(expired(start, start)).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = &mut deadline => return,
                    () = shutdown.wait() => return,
                    () = sender.closed() => return,
                }
            }
        });
        let mut response = Response::new(Body::Stream(receiver));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }
}

fn table_response(table: &Value) -> Response<Body> {
    let mut response = json_response(200, table, &[]);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(table::CONTENT_TYPE));
    response
}

fn expired(asked: u64, current: u64) -> Value {
    let error = ApiError::Expired(format!("too old resource version: {asked} ({current})"));
    json!({"type": "ERROR", "object": error.status()})
}

struct WatchFilter {
    resource: ResourceId,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    as_table: bool,
    include_object: Option<String>,
}

impl WatchFilter {
    /// A watch event; for a client printing tables, the object is a one-row Table.
    fn event(&self, kind: &str, object: &Value) -> Value {
        if self.as_table {
            let version = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let table = table::table(
                &RESOURCES[self.resource],
                std::slice::from_ref(object),
                version,
                self.include_object.as_deref(),
            );
            return json!({"type": kind, "object": table});
        }
        json!({"type": kind, "object": object})
    }

    fn selects(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| namespace_of(object) == ns)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event a watcher sees for a change: an object moving into the selection is
    /// ADDED, one moving out is DELETED, as the apiserver's watch cache reports them.
    fn event_for(&self, change: &Change) -> Option<Value> {
        if change.resource != self.resource {
            return None;
        }
        let now = self.selects(&change.object);
        let before = change.previous.as_deref().is_some_and(|p| self.selects(p));
        let kind = match change.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if now || before => "DELETED",
            _ => return None,
        };
        Some(self.event(kind, &change.object))
    }
}

/// The `autoscaling/v1` Scale view of a Deployment or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let selector = util::get_path(object, "spec.selector.matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": name_of(object),
            "namespace": namespace_of(object),
            "uid": util::uid_of(object),
            "resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            "creationTimestamp": object.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::IDS;

    #[test]
    fn targets_parse_namespaced_cluster_and_subresource_paths() {
        let t = parse_target("/apis/apps/v1/namespaces/ns/deployments/web/scale").expect("valid");
        assert_eq!(
            (
                t.resource,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            (IDS.deployments, Some("ns"), Some("web"), Some("scale"))
        );
        let t = parse_target("/api/v1/namespaces/ns").expect("a namespace");
        assert_eq!((t.resource, t.name.as_deref()), (IDS.namespaces, Some("ns")));
        let t = parse_target("/api/v1/pods").expect("pods in all namespaces");
        assert_eq!((t.resource, t.namespace), (IDS.pods, None));
        let t = parse_target("/api/v1/namespaces/ns/status").expect("namespace status");
        assert_eq!(t.subresource.as_deref(), Some("status"));
        assert!(parse_target("/api/v1/namespaces/ns/pods/p/exec").is_none());
        assert!(parse_target("/apis/apps/v1/deployments/web").is_none());
        assert!(parse_target("/apis/batch/v1/namespaces/ns/jobs").is_none());
    }

    #[test]
    fn queries_decode_selectors() {
        let query = Query::parse(Some("fieldSelector=metadata.name%3Dweb&watch=1&limit="));
        assert_eq!(query.get("fieldSelector"), Some("metadata.name=web"));
        assert!(query.flag("watch"));
        assert_eq!(query.get("limit"), None);
    }
}
