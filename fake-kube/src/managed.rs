//! `metadata.managedFields`: who owns which field, how server-side apply merges and
//! refuses on conflict, and how an ordinary update moves ownership to its writer.
//!
//! The model follows structured-merge-diff at field granularity: an apply owns exactly
//! the fields its configuration sets; a value that would change a field another manager
//! owns is a conflict unless forced; a field the applier used to own and no longer sets
//! is removed when nobody else owns it. An update (a PUT, a JSON patch, a
//! controller's write) takes ownership of the fields it changed from everyone else.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::fields::{self, Element, FieldSet, Scope};
use crate::patch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    pub(crate) subresource: Option<String>,
    pub(crate) api_version: String,
    pub(crate) time: String,
    pub(crate) fields: FieldSet,
}

impl Entry {
    fn same_identity(&self, manager: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.as_deref() == subresource
    }

    /// `"kube-controller-manager" with subresource "scale"`, as conflict messages name it.
    fn describe(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{:?} with subresource {sub:?}", self.manager),
            None => format!("{:?}", self.manager),
        }
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields::to_fields_v1(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = json!(sub);
        }
        entry
    }
}

pub(crate) fn read(object: &Value) -> Vec<Entry> {
    let Some(entries) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            Some(Entry {
                manager: entry.get("manager")?.as_str()?.to_string(),
                operation: match entry.get("operation")?.as_str()? {
                    "Apply" => Operation::Apply,
                    _ => Operation::Update,
                },
                subresource: entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                api_version: entry
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: entry
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                fields: fields::from_fields_v1(entry.get("fieldsV1").unwrap_or(&Value::Null)),
            })
        })
        .collect()
}

pub(crate) fn write(object: &mut Value, entries: &[Entry]) {
    let entries: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// A conflict: the field, and the manager that owns it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conflict {
    pub(crate) field: String,
    pub(crate) owner: String,
}

/// The 409 the apiserver answers with, in its words:
/// `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`.
pub(crate) fn conflict_error(conflicts: &[Conflict], api_version: &str) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {} using {api_version}", c.owner),
                "field": c.field,
            })
        })
        .collect();
    let message = if let [only] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {} using {api_version}: {}",
            only.owner, only.field
        )
    } else {
        let mut lines = format!("Apply failed with {} conflicts: ", conflicts.len());
        let mut owners: Vec<&str> = conflicts.iter().map(|c| c.owner.as_str()).collect();
        owners.dedup();
        for owner in owners {
            lines.push_str(&format!("conflicts with {owner} using {api_version}:"));
            for c in conflicts.iter().filter(|c| c.owner == owner) {
                lines.push_str(&format!("\n- {}", c.field));
            }
            lines.push('\n');
        }
        lines.trim_end().to_string()
    };
    ApiError::Conflict { message, causes }
}

/// What an apply needs to know besides the objects.
pub(crate) struct ApplyRequest<'a> {
    pub(crate) manager: &'a str,
    pub(crate) force: bool,
    pub(crate) api_version: &'a str,
    pub(crate) status_is_separate: bool,
    pub(crate) now: &'a str,
}

/// Server-side apply of `config` onto `live` (an empty object for a create). Returns the
/// merged object with its managed fields, or the conflicts.
pub(crate) fn apply(
    live: &Value,
    config: &Value,
    request: &ApplyRequest<'_>,
) -> Result<Value, Vec<Conflict>> {
    let scope = Scope::Main {
        status_is_separate: request.status_is_separate,
    };
    let mut config = config.clone();
    if request.status_is_separate
        && let Some(map) = config.as_object_mut()
    {
        map.remove("status");
    }
    let mut entries = read(live);
    let applied = fields::fields_of(&config, scope);
    let is_mine = |e: &Entry| e.same_identity(request.manager, Operation::Apply, None);

    let mut conflicts = Vec::new();
    let mut conflicting_paths = Vec::new();
    for path in &applied {
        // Owning a list item is owning its existence, which an apply never changes for
        // someone else; only leaf values can conflict.
        if matches!(path.last(), Some(Element::Key(_))) {
            continue;
        }
        if fields::get(live, path) == fields::get(&config, path) {
            continue;
        }
        for entry in entries.iter().filter(|e| !is_mine(e)) {
            if entry.fields.contains(path) {
                conflicts.push(Conflict {
                    field: fields::display(path),
                    owner: entry.describe(),
                });
                conflicting_paths.push(path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !request.force {
        return Err(conflicts);
    }
    for entry in entries.iter_mut().filter(|e| !is_mine(e)) {
        for path in &conflicting_paths {
            entry.fields.remove(path);
        }
    }

    let mut merged = live.clone();
    strip_for_merge(&mut config);
    patch::apply_merge(&mut merged, &config);

    let previous = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied) {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !is_mine(e))
            .any(|e| fields::owns_at_or_below(&e.fields, path));
        // A field still reached through something the applier sets now (an atomic list
        // that replaced a keyed one, say) is not removed.
        let still_applied = fields::owns_at_or_below(&applied, path);
        if !owned_elsewhere && !still_applied {
            fields::remove(&mut merged, path);
        }
    }

    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(entry) => {
            if entry.fields != applied || strip_managed(&merged) != strip_managed(live) {
                entry.time = request.now.to_string();
            }
            entry.fields = applied;
            entry.api_version = request.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: request.manager.to_string(),
            operation: Operation::Apply,
            subresource: None,
            api_version: request.api_version.to_string(),
            time: request.now.to_string(),
            fields: applied,
        }),
    }
    write(&mut merged, &entries);
    Ok(merged)
}

/// The identity and system fields of an applied configuration are not merged: the name
/// and namespace come from the URL, the rest belong to the server.
fn strip_for_merge(config: &mut Value) {
    if let Some(metadata) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|key, _| {
            ["labels", "annotations", "finalizers", "ownerReferences"].contains(&key.as_str())
        });
    }
}

fn strip_managed(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    copy
}

/// Records an update by `manager` that turned `old` (None for a create) into `new`:
/// the writer owns what it changed, and nobody else still does.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    subresource: Option<&str>,
    api_version: &str,
    now: &str,
) {
    let mut entries = old.map(read).unwrap_or_default();
    let before = old.map(|o| fields::fields_of(o, scope)).unwrap_or_default();
    let after = fields::fields_of(new, scope);
    let empty = Value::Null;
    let old_object = old.unwrap_or(&empty);
    let changed: FieldSet = after
        .iter()
        .filter(|path| match path.last() {
            Some(Element::Key(_)) => fields::get(old_object, path).is_none(),
            _ => fields::get(old_object, path) != fields::get(new, path),
        })
        .cloned()
        .collect();
    let removed: FieldSet = before.difference(&after).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        write(new, &entries);
        return;
    }
    for entry in entries
        .iter_mut()
        .filter(|e| !e.same_identity(manager, Operation::Update, subresource))
    {
        entry
            .fields
            .retain(|path| !changed.contains(path) && !removed.contains(path));
    }
    match entries
        .iter_mut()
        .find(|e| e.same_identity(manager, Operation::Update, subresource))
    {
        Some(entry) => {
            entry.fields.retain(|path| !removed.contains(path));
            entry.fields.extend(changed);
            entry.time = now.to_string();
            entry.api_version = api_version.to_string();
        }
        None if !changed.is_empty() => entries.push(Entry {
            manager: manager.to_string(),
            operation: Operation::Update,
            subresource: subresource.map(str::to_string),
            api_version: api_version.to_string(),
            time: now.to_string(),
            fields: changed,
        }),
        None => {}
    }
    write(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2025-01-01T00:00:00Z";

    fn request(manager: &str, force: bool) -> ApplyRequest<'_> {
        ApplyRequest {
            manager,
            force,
            api_version: "apps/v1",
            status_is_separate: true,
            now: NOW,
        }
    }

    fn config(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn skeleton() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"}})
    }

    #[test]
    fn apply_creates_then_reapplies_without_change() {
        let created = apply(&skeleton(), &config(1, "a"), &request("xtask", false)).expect("no conflict");
        assert_eq!(created["spec"]["replicas"], 1);
        let entries = read(&created);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].manager, "xtask");
        let again = apply(&created, &config(1, "a"), &request("xtask", false)).expect("no conflict");
        assert_eq!(again, created);
    }

    #[test]
    fn another_managers_update_makes_a_later_apply_conflict() {
        let created = apply(&skeleton(), &config(1, "a"), &request("xtask", false)).expect("no conflict");
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(
            Some(&created),
            &mut scaled,
            "kube-controller-manager",
            Scope::Scale,
            Some("scale"),
            "apps/v1",
            NOW,
        );
        let xtask = read(&scaled)
            .into_iter()
            .find(|e| e.manager == "xtask")
            .expect("xtask entry");
        assert!(!xtask.fields.contains(&vec![
            Element::Field("spec".into()),
            Element::Field("replicas".into())
        ]));

        let conflicts = apply(&scaled, &config(1, "a"), &request("xtask", false)).expect_err("conflict");
        assert_eq!(
            conflicts,
            [Conflict {
                field: ".spec.replicas".into(),
                owner: "\"kube-controller-manager\" with subresource \"scale\"".into()
            }]
        );
        let message = conflict_error(&conflicts, "apps/v1").status()["message"].clone();
        assert_eq!(
            message,
            "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
        // The same value is no conflict: the field becomes shared.
        assert!(apply(&scaled, &config(3, "a"), &request("xtask", false)).is_ok());
        // Forcing takes the field over.
        let forced = apply(&scaled, &config(1, "a"), &request("xtask", true)).expect("forced");
        assert_eq!(forced["spec"]["replicas"], 1);
        let controller = read(&forced)
            .into_iter()
            .find(|e| e.manager == "kube-controller-manager");
        assert_eq!(controller, None, "the controller's only field was taken over");
    }

    #[test]
    fn fields_dropped_from_the_configuration_are_removed_unless_someone_else_owns_them() {
        let mut with_label = config(1, "a");
        with_label["metadata"]["labels"] = json!({"keep": "1", "drop": "2"});
        let created = apply(&skeleton(), &with_label, &request("xtask", false)).expect("no conflict");
        let mut other = created.clone();
        other["metadata"]["labels"]["keep"] = json!("1");
        let mut without = config(1, "a");
        without["metadata"]["labels"] = json!({"keep": "1"});
        let after = apply(&other, &without, &request("xtask", false)).expect("no conflict");
        assert_eq!(after["metadata"]["labels"], json!({"keep": "1"}));

        // Another applier sharing a field keeps it alive when the first drops it.
        let shared = apply(&created, &with_label, &request("other", false)).expect("same values");
        let after = apply(&shared, &without, &request("xtask", false)).expect("no conflict");
        assert_eq!(after["metadata"]["labels"], json!({"keep": "1", "drop": "2"}));
    }
}
