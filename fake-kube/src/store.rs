//! The write path, the layer over storage (`storage.rs`): create, apply, update and
//! delete with everything the API server does around them — the namespace check, Pod
//! Security admission, defaulting and validation from each kind's strategy
//! (`strategy.rs`), field ownership, generation and no-op detection. Reads go straight
//! to storage.
//!
//! One `Store` sits behind a mutex. Writes are short and never wait on anything, so the
//! controllers hold the lock for a whole reconcile pass, which makes each pass atomic.

use std::ops::Deref;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::admission;
use crate::error::ApiError;
use crate::fields::Scope;
use crate::managed::{self, ApplyRequest};
use crate::resources::{IDS, RESOURCES, ResourceId, ResourceType};
use crate::storage::Storage;
pub(crate) use crate::storage::{Change, EventType, ObjectKey};
use crate::strategy::{Deletion, PodSpec, Strategy};
use crate::util::{self, get_path, is_deleting, name_of, namespace_of, uid_of};
use crate::validate;

/// Who writes, and how.
#[derive(Debug, Clone)]
pub(crate) struct Writer<'a> {
    pub(crate) manager: &'a str,
    pub(crate) dry_run: bool,
    /// `fieldValidation=Strict` (or an apply without `Ignore`).
    pub(crate) strict: bool,
}

impl<'a> Writer<'a> {
    /// A controller's or the kubelet's own write.
    pub(crate) fn system(manager: &'a str) -> Self {
        Writer {
            manager,
            dry_run: false,
            strict: false,
        }
    }
}

/// A successful write.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) object: Arc<Value>,
    pub(crate) created: bool,
    /// `Warning` headers for the client (Pod Security's `warn` mode).
    pub(crate) warnings: Vec<String>,
}

/// Which part of an object an update replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Main,
    Status,
    Scale,
}

impl Part {
    fn subresource(self) -> Option<&'static str> {
        match self {
            Part::Main => None,
            Part::Status => Some("status"),
            Part::Scale => Some("scale"),
        }
    }
}

pub(crate) struct Store {
    storage: Storage,
}

/// GKE's single-cluster gateway classes.
const GATEWAY_CLASSES: [&str; 4] = [
    "gke-l7-global-external-managed",
    "gke-l7-regional-external-managed",
    "gke-l7-rilb",
    "gke-l7-gxlb",
];

/// Reads need no strategy: they see storage as it is.
impl Deref for Store {
    type Target = Storage;

    fn deref(&self) -> &Storage {
        &self.storage
    }
}

impl Store {
    pub(crate) fn new() -> Self {
        let mut store = Store {
            storage: Storage::new(),
        };
        for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            store
                .create(IDS.namespaces, "", object, &Writer::system("fake-kube"))
                .expect("the built-in namespaces are valid");
        }
        // The classes a GKE cluster with the Gateway API offers; the fake's gateway serves
        // Gateways of these, and leaves any other class's without an address, as no
        // controller would take them.
        for class in GATEWAY_CLASSES {
            let object = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": class}, "spec": {"controllerName": "networking.gke.io/gateway"}});
            store
                .create(IDS.gatewayclasses, "", object, &Writer::system("fake-kube"))
                .expect("the built-in gateway classes are valid");
        }
        store
    }

    /// Removes an object for good, as the kubelet does once a pod's containers are gone
    /// and the namespace controller once a namespace is empty.
    pub(crate) fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.storage.remove(key)
    }

    /// The namespace a namespaced write goes into must exist and not be terminating.
    fn check_namespace(
        &self,
        resource: &ResourceType,
        namespace: &str,
    ) -> Result<Option<Arc<Value>>, ApiError> {
        if !resource.namespaced {
            return Ok(None);
        }
        let found = self
            .get_by(IDS.namespaces, "", namespace)
            .ok_or_else(|| ApiError::namespace_not_found(namespace))?;
        Ok(Some(found.clone()))
    }

    fn refuse_in_terminating(
        resource: &ResourceType,
        namespace: Option<&Value>,
        name: &str,
    ) -> Result<(), ApiError> {
        if let Some(namespace) = namespace.filter(|ns| is_deleting(ns)) {
            return Err(ApiError::Forbidden {
                kind: resource.plural.to_string(),
                name: name.to_string(),
                message: format!(
                    "unable to create new content in namespace {} because it is being terminated",
                    name_of(namespace)
                ),
            });
        }
        Ok(())
    }

    /// Pod Security: refuses pods that break the namespace's `enforce` level, and returns
    /// the warnings its `warn` level raises for pods and pod templates.
    fn admit(
        strategy: &Strategy,
        namespace: Option<&Value>,
        object: &Value,
    ) -> Result<Vec<String>, ApiError> {
        let (Some(namespace), Some(holder)) = (namespace, strategy.pod_spec) else {
            return Ok(Vec::new());
        };
        let Some(pod_spec) = get_path(object, holder.path()) else {
            return Ok(Vec::new());
        };
        if holder == PodSpec::Own
            && admission::restricted(namespace, "enforce")
            && let Some(message) = admission::check(pod_spec)
        {
            return Err(ApiError::Forbidden {
                kind: "pods".into(),
                name: name_of(object).to_string(),
                message,
            });
        }
        let warnings = admission::restricted(namespace, "warn")
            .then(|| admission::check(pod_spec))
            .flatten()
            .map(|message| message.replacen("violates", "would violate", 1))
            .into_iter()
            .collect();
        Ok(warnings)
    }

    fn strict_check(
        resource: &ResourceType,
        object: &Value,
        writer: &Writer<'_>,
        apply: bool,
    ) -> Result<(), ApiError> {
        if !writer.strict {
            return Ok(());
        }
        let unknown = validate::unknown_fields(resource.kind, object);
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let message = if apply {
            format!(
                "failed to create typed patch object ({}; {}, Kind={}): {first}: field not declared in schema",
                if resource.namespaced {
                    format!("{}/{}", namespace_of(object), name_of(object))
                } else {
                    name_of(object).to_string()
                },
                resource.api_version(),
                resource.kind
            )
        } else {
            let fields: Vec<String> = unknown
                .iter()
                .map(|path| format!("unknown field {:?}", path.trim_start_matches('.')))
                .collect();
            format!(
                "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                resource.kind,
                resource.version,
                resource.kind,
                fields.join(", ")
            )
        };
        Err(ApiError::BadRequest(message))
    }

    /// The API server's validation of values, after defaulting: 422 `Invalid`, naming
    /// every field that is wrong.
    fn validate(resource: &ResourceType, strategy: &Strategy, object: &Value) -> Result<(), ApiError> {
        let causes = strategy.invalid_values(object);
        if causes.is_empty() {
            return Ok(());
        }
        let kind = if resource.group.is_empty() {
            resource.kind.to_owned()
        } else {
            format!("{}.{}", resource.kind, resource.group)
        };
        Err(ApiError::Invalid {
            kind,
            name: name_of(object).to_owned(),
            causes,
        })
    }

    /// Generation and status bookkeeping shared by every write of an existing object.
    fn finish_update(strategy: &Strategy, live: &Value, next: &mut Value) {
        if strategy.generation && live.get("spec") != next.get("spec") {
            let generation = live
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            next["metadata"]["generation"] = json!(generation + 1);
        }
    }

    /// Creates an object (POST, or a controller creating a pod).
    pub(crate) fn create(
        &mut self,
        resource_id: ResourceId,
        namespace: &str,
        mut object: Value,
        writer: &Writer<'_>,
    ) -> Result<Written, ApiError> {
        let resource = &RESOURCES[resource_id];
        let strategy = Strategy::of(resource_id);
        if !object.is_object() {
            return Err(ApiError::BadRequest("the body is not a JSON object".into()));
        }
        Self::strict_check(resource, &object, writer, false)?;
        let metadata = util::object_at(&mut object, "metadata");
        if metadata
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        {
            match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) => {
                    let name = format!("{prefix}{}", util::random_suffix(5));
                    metadata.insert("name".into(), json!(name));
                }
                None => {
                    return Err(ApiError::Invalid {
                        kind: resource.kind.to_string(),
                        name: String::new(),
                        causes: vec![
                            "metadata.name: Required value: name or generateName is required".into(),
                        ],
                    });
                }
            }
        }
        let name = name_of(&object).to_string();
        let namespace_object = self.check_namespace(resource, namespace)?;
        Self::refuse_in_terminating(resource, namespace_object.as_deref(), &name)?;
        let key = ObjectKey::new(
            resource_id,
            if resource.namespaced { namespace } else { "" },
            &name,
        );
        if self.storage.contains(&key) {
            return Err(ApiError::AlreadyExists {
                kind: resource.plural.to_string(),
                group: resource.group.to_string(),
                name,
            });
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        let now = util::now();
        let metadata = util::object_at(&mut object, "metadata");
        if resource.namespaced {
            metadata.insert("namespace".into(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        metadata.insert("uid".into(), json!(util::new_uid()));
        metadata.insert("creationTimestamp".into(), json!(now));
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
        if strategy.generation {
            metadata.insert("generation".into(), json!(1));
        }
        let warnings = Self::admit(strategy, namespace_object.as_deref(), &object)?;
        strategy.fill_defaults(&mut object);
        Self::validate(resource, strategy, &object)?;
        managed::record_update(
            None,
            &mut object,
            writer.manager,
            Scope::Main {
                status_is_separate: resource.has_status(),
            },
            None,
            &resource.api_version(),
            &now,
        );
        let object = if writer.dry_run {
            Arc::new(object)
        } else {
            self.storage.put(key, object)
        };
        Ok(Written {
            object,
            created: true,
            warnings,
        })
    }

    /// Server-side apply: creates or merges, owning exactly the configured fields.
    pub(crate) fn apply(
        &mut self,
        resource_id: ResourceId,
        namespace: &str,
        name: &str,
        config: &Value,
        writer: &Writer<'_>,
        force: bool,
    ) -> Result<Written, ApiError> {
        let resource = &RESOURCES[resource_id];
        let strategy = Strategy::of(resource_id);
        let api_version = resource.api_version();
        if config.get("kind").and_then(Value::as_str) != Some(resource.kind)
            || config.get("apiVersion").and_then(Value::as_str) != Some(api_version.as_str())
        {
            return Err(ApiError::BadRequest(format!(
                "the apiVersion and kind of the applied object ({}, {}) do not match the request ({api_version}, {})",
                config.get("apiVersion").unwrap_or(&Value::Null),
                config.get("kind").unwrap_or(&Value::Null),
                resource.kind
            )));
        }
        if let Some(given) = config.pointer("/metadata/name").and_then(Value::as_str)
            && given != name
        {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        let mut for_validation = config.clone();
        util::object_at(&mut for_validation, "metadata").insert("namespace".into(), json!(namespace));
        Self::strict_check(resource, &for_validation, writer, true)?;
        let namespace_object = self.check_namespace(resource, namespace)?;
        let namespace = if resource.namespaced { namespace } else { "" };
        let key = ObjectKey::new(resource_id, namespace, name);
        let live = self.storage.get(&key).cloned();
        if live.is_none() {
            Self::refuse_in_terminating(resource, namespace_object.as_deref(), name)?;
        }
        let now = util::now();
        let base = match &live {
            Some(live) => (**live).clone(),
            None => {
                let mut skeleton =
                    json!({"apiVersion": api_version, "kind": resource.kind, "metadata": {"name": name}});
                if resource.namespaced {
                    skeleton["metadata"]["namespace"] = json!(namespace);
                }
                skeleton
            }
        };
        let request = ApplyRequest {
            manager: writer.manager,
            force,
            api_version: &api_version,
            status_is_separate: resource.has_status(),
            now: &now,
        };
        let mut merged = managed::apply(&base, config, &request)
            .map_err(|conflicts| managed::conflict_error(&conflicts, &api_version))?;
        match &live {
            Some(live) => Self::finish_update(strategy, live, &mut merged),
            None => {
                let metadata = util::object_at(&mut merged, "metadata");
                metadata.insert("uid".into(), json!(util::new_uid()));
                metadata.insert("creationTimestamp".into(), json!(now));
                if strategy.generation {
                    metadata.insert("generation".into(), json!(1));
                }
            }
        }
        let warnings = Self::admit(strategy, namespace_object.as_deref(), &merged)?;
        strategy.fill_defaults(&mut merged);
        Self::validate(resource, strategy, &merged)?;
        self.commit(key, live, merged, writer, warnings)
    }

    /// Stores the result of a write unless it is a dry run or changes nothing.
    fn commit(
        &mut self,
        key: ObjectKey,
        live: Option<Arc<Value>>,
        next: Value,
        writer: &Writer<'_>,
        warnings: Vec<String>,
    ) -> Result<Written, ApiError> {
        let created = live.is_none();
        let object = match live {
            Some(live) if *live == next => live,
            _ if writer.dry_run => Arc::new(next),
            _ => self.storage.put(key, next),
        };
        Ok(Written {
            object,
            created,
            warnings,
        })
    }

    /// Replaces an object, or its status, or its replica count (PUT, a JSON or merge
    /// patch already applied by the caller, or a controller's write).
    pub(crate) fn update(
        &mut self,
        resource_id: ResourceId,
        namespace: &str,
        name: &str,
        mut next: Value,
        part: Part,
        writer: &Writer<'_>,
    ) -> Result<Written, ApiError> {
        let resource = &RESOURCES[resource_id];
        let strategy = Strategy::of(resource_id);
        let namespace = if resource.namespaced { namespace } else { "" };
        let key = ObjectKey::new(resource_id, namespace, name);
        let live = self
            .storage
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        if let Some(expected) = next.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            let current = live
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !expected.is_empty() && expected != current {
                return Err(ApiError::Conflict {
                    message: format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        resource.qualified_plural()
                    ),
                    causes: Vec::new(),
                });
            }
        }
        if part == Part::Main {
            Self::strict_check(resource, &next, writer, false)?;
        }
        let mut merged = (*live).clone();
        match part {
            Part::Main => {
                // The server owns identity and system metadata; a resource with a status
                // subresource keeps its status.
                let kept_status = merged.get("status").cloned();
                let system: Vec<(String, Value)> = merged["metadata"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "name"
                                | "namespace"
                                | "uid"
                                | "creationTimestamp"
                                | "generation"
                                | "deletionTimestamp"
                                | "deletionGracePeriodSeconds"
                                | "managedFields"
                        )
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                next["apiVersion"] = json!(resource.api_version());
                next["kind"] = json!(resource.kind);
                let metadata = util::object_at(&mut next, "metadata");
                for (k, v) in system {
                    metadata.insert(k, v);
                }
                if resource.has_status() {
                    match kept_status {
                        Some(status) => next["status"] = status,
                        None => {
                            if let Some(map) = next.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
                }
                merged = next;
            }
            Part::Status => merged["status"] = next.get("status").cloned().unwrap_or(Value::Null),
            Part::Scale => {
                let replicas = next
                    .pointer("/spec/replicas")
                    .cloned()
                    .ok_or_else(|| ApiError::BadRequest("a Scale needs spec.replicas".into()))?;
                util::object_at(&mut merged, "spec").insert("replicas".into(), replicas);
            }
        }
        if let Some(metadata) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "resourceVersion".into(),
                live.pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
        }
        Self::finish_update(strategy, &live, &mut merged);
        let namespace_object = self.check_namespace(resource, namespace)?;
        let warnings = if part == Part::Main {
            Self::admit(strategy, namespace_object.as_deref(), &merged)?
        } else {
            Vec::new()
        };
        strategy.fill_defaults(&mut merged);
        Self::validate(resource, strategy, &merged)?;
        let scope = match part {
            Part::Main => Scope::Main {
                status_is_separate: resource.has_status(),
            },
            Part::Status => Scope::Status,
            Part::Scale => Scope::Scale,
        };
        managed::record_update(
            Some(&live),
            &mut merged,
            writer.manager,
            scope,
            part.subresource(),
            &resource.api_version(),
            &util::now(),
        );
        self.commit(key, Some(live), merged, writer, warnings)
    }

    /// Deletes an object as its strategy says: at once, or marked for the kubelet (pods;
    /// a `grace_period` of zero removes one at once) or the namespace controller to finish.
    pub(crate) fn delete(
        &mut self,
        resource_id: ResourceId,
        namespace: &str,
        name: &str,
        grace_period: Option<i64>,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = &RESOURCES[resource_id];
        let strategy = Strategy::of(resource_id);
        let namespace = if resource.namespaced { namespace } else { "" };
        let key = ObjectKey::new(resource_id, namespace, name);
        let live = self
            .storage
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        if dry_run {
            return Ok(live);
        }
        let mut marked = match (strategy.deletion, grace_period) {
            (Deletion::Immediate, _) | (Deletion::Graceful, Some(0)) => {
                return Ok(self.remove(&key).expect("the object was just found"));
            }
            _ if is_deleting(&live) => return Ok(live),
            (Deletion::Graceful, _) => {
                let grace = grace_period
                    .or_else(|| {
                        live.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30);
                let mut marked = (*live).clone();
                marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                marked
            }
            (Deletion::Finalized, _) => {
                let mut marked = (*live).clone();
                marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                util::object_at(&mut marked, "status").insert("phase".into(), json!("Terminating"));
                marked
            }
        };
        marked["metadata"]["deletionTimestamp"] = json!(util::now());
        Ok(self.storage.put(key, marked))
    }

    /// Records a core/v1 Event about an object, folding repeats into `count` as the
    /// client-go event recorder does.
    pub(crate) fn record_event(
        &mut self,
        involved: &Value,
        warning: bool,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let namespace = match namespace_of(involved) {
            "" => "default",
            ns => ns,
        }
        .to_string();
        if self
            .get_by(IDS.namespaces, "", &namespace)
            .is_none_or(|ns| is_deleting(ns))
        {
            return;
        }
        let uid = uid_of(involved);
        let now = util::now();
        let existing = self.list(IDS.events, Some(&namespace)).into_iter().find(|event| {
            get_path(event, "involvedObject.uid").and_then(Value::as_str) == Some(uid)
                && event.get("reason").and_then(Value::as_str) == Some(reason)
                && event.get("message").and_then(Value::as_str) == Some(message)
        });
        if let Some(existing) = existing {
            let mut event = (*existing).clone();
            let count = event.get("count").and_then(Value::as_i64).unwrap_or(1);
            event["count"] = json!(count + 1);
            event["lastTimestamp"] = json!(now);
            self.storage.put(ObjectKey::of(IDS.events, &event), event);
            return;
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{}.{:016x}", name_of(involved), util::random_u64()),
                "namespace": namespace,
                "uid": util::new_uid(),
                "creationTimestamp": now,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion").cloned().unwrap_or(Value::Null),
                "kind": involved.get("kind").cloned().unwrap_or(Value::Null),
                "name": name_of(involved),
                "namespace": namespace_of(involved),
                "uid": uid,
                "resourceVersion": involved.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component, "host": if component == "kubelet" { "fake-kube-node" } else { "" }},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": if warning { "Warning" } else { "Normal" },
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": "",
        });
        self.storage.put(ObjectKey::of(IDS.events, &event), event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    fn applier() -> Writer<'static> {
        Writer {
            manager: "xtask",
            dry_run: false,
            strict: true,
        }
    }

    #[test]
    fn apply_needs_the_namespace_then_creates_and_is_idempotent() {
        let mut store = Store::new();
        let missing = store.apply(IDS.deployments, "ns", "web", &deployment(1), &applier(), false);
        assert_eq!(missing.expect_err("no namespace").code(), 404);
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}});
        store
            .apply(IDS.namespaces, "", "ns", &namespace, &applier(), false)
            .expect("namespace");
        let first = store
            .apply(IDS.deployments, "ns", "web", &deployment(1), &applier(), false)
            .expect("created");
        assert!(first.created);
        assert_eq!(first.object["metadata"]["generation"], 1);
        let revision = store.revision();
        let second = store
            .apply(IDS.deployments, "ns", "web", &deployment(1), &applier(), false)
            .expect("unchanged");
        assert_eq!(second.object, first.object);
        assert_eq!(store.revision(), revision, "a no-op apply writes nothing");
        let third = store
            .apply(IDS.deployments, "ns", "web", &deployment(2), &applier(), false)
            .expect("changed");
        assert_eq!(third.object["metadata"]["generation"], 2);
        assert!(store.revision() > revision);
    }

    #[test]
    fn dry_run_apply_changes_nothing() {
        let mut store = Store::new();
        let revision = store.revision();
        let dry = Writer {
            dry_run: true,
            ..applier()
        };
        let written = store
            .apply(IDS.deployments, "default", "web", &deployment(1), &dry, false)
            .expect("dry run");
        assert!(written.created);
        assert_eq!(store.revision(), revision);
        assert!(store.get_by(IDS.deployments, "default", "web").is_none());
    }

    #[test]
    fn strict_validation_refuses_unknown_fields_in_apply() {
        let mut store = Store::new();
        let mut bad = deployment(1);
        bad["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = json!("Always");
        let error = store
            .apply(IDS.deployments, "default", "web", &bad, &applier(), false)
            .expect_err("unknown field");
        assert_eq!(error.code(), 400);
        assert_eq!(
            error.status()["message"],
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"c\"].imagePolicy: field not declared in schema"
        );
    }

    #[test]
    fn invalid_values_are_refused_422_naming_every_field() {
        let mut store = Store::new();
        let mut bad = deployment(1);
        bad["metadata"]["name"] = json!("Score_App");
        bad["spec"]["strategy"] = json!({"type": "Rolling"});
        let error = store
            .apply(IDS.deployments, "default", "Score_App", &bad, &applier(), false)
            .expect_err("invalid");
        assert_eq!(error.code(), 422);
        let message = error.status()["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with("Deployment.apps \"Score_App\" is invalid: [metadata.name: Invalid value: \"Score_App\": a lowercase RFC 1123 subdomain")
                && message.contains(", spec.strategy.type: Unsupported value: \"Rolling\""),
            "{message}"
        );
        assert!(store.get_by(IDS.deployments, "default", "Score_App").is_none());
    }

    #[test]
    fn events_fold_repeats_into_a_count() {
        let mut store = Store::new();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u"}});
        store.record_event(&pod, true, "BackOff", "again", "kubelet");
        store.record_event(&pod, true, "BackOff", "again", "kubelet");
        let events = store.list(IDS.events, Some("default"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["count"], 2);
    }
}
