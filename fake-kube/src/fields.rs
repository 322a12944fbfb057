//! Field paths and field sets, the vocabulary of server-side apply's `managedFields`.
//!
//! A path walks object fields (`f:spec`), items of associative lists by their key fields
//! (`k:{"name":"score"}`), and, rarely, set members (`v:"x"`). Lists are associative when
//! the real schema says so for that field name (containers by `name`, ports by port and
//! protocol, …); every other list is atomic, owned and replaced as a whole. The schema is
//! a table of field names here, not the OpenAPI document, which is close enough for the
//! kinds this fake serves.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::util::canonical_json;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Element {
    Field(String),
    /// An associative-list item, by the canonical JSON of its key fields.
    Key(String),
    /// A set member, by its canonical JSON value.
    Value(String),
}

pub(crate) type Path = Vec<Element>;
pub(crate) type FieldSet = BTreeSet<Path>;

/// The key fields of an associative list, by the list's field name; `None` for atomic
/// lists. `ports` is keyed by `containerPort` in containers and by `port` in Services.
pub(crate) fn list_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let keys: &'static [&'static str] = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "listeners" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        "ports" => {
            if items.iter().all(|item| item.get("containerPort").is_some()) {
                &["containerPort", "protocol"]
            } else if items.iter().all(|item| item.get("port").is_some()) {
                &["port", "protocol"]
            } else {
                return None;
            }
        }
        _ => return None,
    };
    // A list whose items lack their key (or are not objects) cannot be merged by key.
    let keyed = items.iter().all(|item| {
        item.is_object()
            && keys
                .iter()
                .filter(|k| **k != "protocol")
                .all(|k| item.get(*k).is_some_and(|v| !v.is_null()))
    });
    keyed.then_some(keys)
}

/// The canonical key of an item: its key fields, with `protocol` defaulted to TCP as the
/// apiserver's defaulting would have filled it in.
pub(crate) fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut map = Map::new();
    for key in keys {
        match item.get(*key) {
            Some(value) if !value.is_null() => {
                map.insert(key.to_string(), value.clone());
            }
            _ if *key == "protocol" => {
                map.insert(key.to_string(), json!("TCP"));
            }
            _ => {}
        }
    }
    canonical_json(&Value::Object(map))
}

/// Whether an item matches a `Key` element.
fn item_matches(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(wanted)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    let keys: Vec<&str> = wanted.keys().map(String::as_str).collect();
    item.is_object() && item_key(item, &keys) == key
}

/// Which part of an object a write may touch, and so which fields it can own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource: everything but identity, system metadata and (for resources
    /// with a status subresource) `status`.
    Main { status_is_separate: bool },
    /// The `status` subresource.
    Status,
    /// The `scale` subresource: `spec.replicas` only.
    Scale,
}

const OWNABLE_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The fields an object sets, within a scope: every leaf, and every associative-list item.
pub(crate) fn fields_of(object: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    let mut path = Path::new();
    for (key, value) in map {
        let wanted = match scope {
            Scope::Main { status_is_separate } => match key.as_str() {
                "apiVersion" | "kind" => false,
                "status" => !status_is_separate,
                _ => true,
            },
            Scope::Status => key == "status",
            Scope::Scale => key == "spec",
        };
        if !wanted {
            continue;
        }
        path.push(Element::Field(key.clone()));
        if key == "metadata" {
            if matches!(scope, Scope::Main { .. }) {
                for (field, value) in value.as_object().into_iter().flatten() {
                    if OWNABLE_METADATA.contains(&field.as_str()) {
                        path.push(Element::Field(field.clone()));
                        collect(value, field, &mut path, &mut out);
                        path.pop();
                    }
                }
            }
        } else if scope == Scope::Scale {
            if let Some(replicas) = value.get("replicas") {
                path.push(Element::Field("replicas".into()));
                collect(replicas, "replicas", &mut path, &mut out);
                path.pop();
            }
        } else {
            collect(value, key, &mut path, &mut out);
        }
        path.pop();
    }
    out
}

fn collect(value: &Value, field: &str, path: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(Element::Field(key.clone()));
                collect(child, key, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_keys(field, items) {
            Some(keys) => {
                for item in items {
                    path.push(Element::Key(item_key(item, keys)));
                    out.insert(path.clone());
                    collect(item, "", path, out);
                    path.pop();
                }
            }
            None => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at a path, if present.
pub(crate) fn get<'a>(object: &'a Value, path: &[Element]) -> Option<&'a Value> {
    let mut current = object;
    for element in path {
        current = match element {
            Element::Field(name) => current.as_object()?.get(name)?,
            Element::Key(key) => current.as_array()?.iter().find(|item| item_matches(item, key))?,
            Element::Value(value) => current
                .as_array()?
                .iter()
                .find(|item| canonical_json(item) == *value)?,
        };
    }
    Some(current)
}

/// Removes the value at a path (a field, or a list item); absent paths are ignored.
pub(crate) fn remove(object: &mut Value, path: &[Element]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for element in parents {
        let next = match element {
            Element::Field(name) => current.as_object_mut().and_then(|m| m.get_mut(name)),
            Element::Key(key) => current
                .as_array_mut()
                .and_then(|items| items.iter_mut().find(|item| item_matches(item, key))),
            Element::Value(value) => current
                .as_array_mut()
                .and_then(|items| items.iter_mut().find(|item| canonical_json(item) == *value)),
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    match last {
        Element::Field(name) => {
            if let Some(map) = current.as_object_mut() {
                map.remove(name);
            }
        }
        Element::Key(key) => {
            if let Some(items) = current.as_array_mut() {
                items.retain(|item| !item_matches(item, key));
            }
        }
        Element::Value(value) => {
            if let Some(items) = current.as_array_mut() {
                items.retain(|item| canonical_json(item) != *value);
            }
        }
    }
}

/// Whether `path` or anything below it is in the set.
pub(crate) fn owns_at_or_below(set: &FieldSet, path: &Path) -> bool {
    set.range(path.clone()..)
        .next()
        .is_some_and(|first| first.starts_with(path))
}

/// `.spec.template.spec.containers[name="score"].image`: how the apiserver prints a path.
pub(crate) fn display(path: &[Element]) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            Element::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Element::Key(key) => {
                let fields: Vec<String> = match serde_json::from_str::<Value>(key) {
                    Ok(Value::Object(map)) => map.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![key.clone()],
                };
                out.push_str(&format!("[{}]", fields.join(",")));
            }
            Element::Value(value) => out.push_str(&format!("[={value}]")),
        }
    }
    out
}

/// Serializes a set as `fieldsV1`: `{"f:spec":{"f:replicas":{}}}`, with `".":{}` marking
/// a node that is itself in the set and has children.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for element in path {
            let key = match element {
                Element::Field(name) => format!("f:{name}"),
                Element::Key(key) => format!("k:{key}"),
                Element::Value(value) => format!("v:{value}"),
            };
            node = node
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
        if !path.is_empty() {
            node.insert(".".into(), json!({}));
        }
    }
    // A leaf is `{}`, not `{".":{}}`: the marker only distinguishes owned inner nodes.
    fn tidy(node: &mut Map<String, Value>) {
        for child in node.values_mut() {
            if let Some(map) = child.as_object_mut() {
                if map.len() == 1 && map.contains_key(".") {
                    map.clear();
                } else {
                    tidy(map);
                }
            }
        }
    }
    tidy(&mut root);
    Value::Object(root)
}

/// Parses `fieldsV1` back into a set.
pub(crate) fn from_fields_v1(value: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
        if node.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (key, child) in node {
            if key == "." {
                out.insert(path.clone());
                continue;
            }
            let element = if let Some(name) = key.strip_prefix("f:") {
                Element::Field(name.to_string())
            } else if let Some(k) = key.strip_prefix("k:") {
                Element::Key(
                    serde_json::from_str::<Value>(k).map_or_else(|_| k.to_string(), |v| canonical_json(&v)),
                )
            } else if let Some(v) = key.strip_prefix("v:") {
                Element::Value(v.to_string())
            } else {
                continue;
            };
            path.push(element);
            if let Some(map) = child.as_object() {
                walk(map, path, out);
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(map) = value.as_object() {
        walk(map, &mut Path::new(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> Element {
        Element::Field(name.into())
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [
                    {"name": "score", "image": "x", "args": ["a", "b"], "ports": [{"containerPort": 5000}]},
                ]}},
            },
            "status": {"replicas": 2},
        })
    }

    #[test]
    fn fields_of_a_deployment_are_leaves_and_keyed_items() {
        let set = fields_of(
            &deployment(),
            Scope::Main {
                status_is_separate: true,
            },
        );
        let printed: Vec<String> = set.iter().map(|p| display(p)).collect();
        assert_eq!(
            printed,
            [
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"score\"]",
                ".spec.template.spec.containers[name=\"score\"].args",
                ".spec.template.spec.containers[name=\"score\"].image",
                ".spec.template.spec.containers[name=\"score\"].name",
                ".spec.template.spec.containers[name=\"score\"].ports[containerPort=5000,protocol=\"TCP\"]",
                ".spec.template.spec.containers[name=\"score\"].ports[containerPort=5000,protocol=\"TCP\"].containerPort",
            ]
        );
    }

    #[test]
    fn fields_v1_round_trips_and_marks_owned_inner_nodes() {
        let set = fields_of(
            &deployment(),
            Scope::Main {
                status_is_separate: true,
            },
        );
        let v1 = to_fields_v1(&set);
        let container = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"score\"}"];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:image"], json!({}));
        assert_eq!(v1["f:spec"]["f:replicas"], json!({}));
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn paths_get_and_remove_keyed_items() {
        let mut object = deployment();
        let containers = vec![
            field("spec"),
            field("template"),
            field("spec"),
            field("containers"),
        ];
        let mut image = containers.clone();
        image.push(Element::Key("{\"name\":\"score\"}".into()));
        image.push(field("image"));
        assert_eq!(get(&object, &image), Some(&json!("x")));
        remove(&mut object, &image);
        assert_eq!(get(&object, &image), None);
        let mut item = containers.clone();
        item.push(Element::Key("{\"name\":\"score\"}".into()));
        remove(&mut object, &item);
        assert_eq!(get(&object, &containers), Some(&json!([])));
    }

    #[test]
    fn scale_scope_owns_only_replicas() {
        let set = fields_of(&deployment(), Scope::Scale);
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![vec![field("spec"), field("replicas")]]
        );
    }
}
