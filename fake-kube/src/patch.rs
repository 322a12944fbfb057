//! The patches the plans send, applied to JSON objects: server-side apply's merge (`kubectl
//! apply --server-side`) and JSON patch (RFC 6902: `kubectl rollout undo` sends one, and
//! a canary's promotion). Strategic merge and JSON merge patches are sent by no plan
//! (`kubectl set image`, `rollout restart`, `scale`), so the API refuses them as a media
//! type it does not take rather than apply them half-modelled.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields;

/// How a list field merges: by key (associative) or as a whole (atomic). Shares the
/// field-name table with `fields`, so ownership and merging agree.
fn same_item(a: &Value, b: &Value, keys: &[&str]) -> bool {
    fields::item_key(a, keys) == fields::item_key(b, keys)
}

/// Server-side apply's merge of an applied configuration into the live object: maps merge
/// field by field, associative lists item by item (the applied order first, then live
/// items the configuration does not mention), atomic lists and scalars are replaced.
pub(crate) fn apply_merge(live: &mut Value, config: &Value) {
    merge_value(live, config, "");
}

fn merge_value(target: &mut Value, patch: &Value, field: &str) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => merge_map(target, patch),
        (target @ Value::Array(_), Value::Array(items)) => {
            let keys = fields::list_keys(field, items);
            let Some(keys) = keys else {
                *target = Value::Array(items.clone());
                return;
            };
            let Value::Array(live) = target else {
                unreachable!("matched an array above")
            };
            let mut merged = Vec::with_capacity(live.len().max(items.len()));
            let mut remaining: Vec<Value> = std::mem::take(live);
            for item in items {
                let position = remaining.iter().position(|l| same_item(l, item, keys));
                match position {
                    Some(position) => {
                        let mut existing = remaining.remove(position);
                        merge_value(&mut existing, item, "");
                        merged.push(existing);
                    }
                    None => {
                        let mut fresh = Value::Object(Map::new());
                        merge_value(&mut fresh, item, "");
                        merged.push(fresh);
                    }
                }
            }
            merged.extend(remaining);
            *live = merged;
        }
        (target, patch) => {
            let mut fresh = match patch {
                Value::Object(_) => Value::Object(Map::new()),
                other => other.clone(),
            };
            if let Value::Object(map) = patch {
                merge_map(fresh.as_object_mut().expect("made an object"), map);
            }
            *target = fresh;
        }
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match target.get_mut(key) {
            Some(existing) => merge_value(existing, value, key),
            None => {
                let mut fresh = match value {
                    Value::Object(_) => Value::Object(Map::new()),
                    Value::Array(_) => Value::Array(Vec::new()),
                    other => other.clone(),
                };
                if value.is_object() || value.is_array() {
                    merge_value(&mut fresh, value, key);
                }
                target.insert(key.clone(), fresh);
            }
        }
    }
}

/// RFC 7386 JSON merge patch: the tests' way to write a variant of an object.
#[cfg(test)]
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object");
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn pointer_tokens(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| ApiError::BadRequest(format!("invalid JSON pointer {pointer:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_and_last<'a>(document: &'a mut Value, pointer: &str) -> Result<(&'a mut Value, String), ApiError> {
    let mut tokens = pointer_tokens(pointer)?;
    let last = tokens
        .pop()
        .ok_or_else(|| ApiError::BadRequest("cannot patch the document root".into()))?;
    let mut current = document;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get_mut(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| ApiError::Invalid {
            kind: "patch".into(),
            name: pointer.into(),
            causes: vec![format!("doc is missing path: {pointer:?}")],
        })?;
    }
    Ok((current, last))
}

fn missing(pointer: &str) -> ApiError {
    ApiError::Invalid {
        kind: "patch".into(),
        name: pointer.into(),
        causes: vec![format!("doc is missing path: {pointer:?}")],
    }
}

fn add(document: &mut Value, pointer: &str, value: Value) -> Result<(), ApiError> {
    let (parent, last) = parent_and_last(document, pointer)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => {
            let index: usize = last.parse().map_err(|_| missing(pointer))?;
            if index > items.len() {
                return Err(missing(pointer));
            }
            items.insert(index, value);
        }
        _ => return Err(missing(pointer)),
    }
    Ok(())
}

fn take(document: &mut Value, pointer: &str) -> Result<Value, ApiError> {
    let (parent, last) = parent_and_last(document, pointer)?;
    match parent {
        Value::Object(map) => map.remove(&last).ok_or_else(|| missing(pointer)),
        Value::Array(items) => {
            let index: usize = last.parse().map_err(|_| missing(pointer))?;
            (index < items.len())
                .then(|| items.remove(index))
                .ok_or_else(|| missing(pointer))
        }
        _ => Err(missing(pointer)),
    }
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy and test.
pub(crate) fn json_patch(document: &mut Value, operations: &Value) -> Result<(), ApiError> {
    let operations = operations
        .as_array()
        .ok_or_else(|| ApiError::BadRequest("a JSON patch is an array of operations".into()))?;
    for operation in operations {
        let op = operation.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = operation.get("path").and_then(Value::as_str).unwrap_or_default();
        let value = || {
            operation
                .get("value")
                .cloned()
                .ok_or_else(|| ApiError::BadRequest(format!("operation {op} on {path} has no value")))
        };
        let from = || {
            operation
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::BadRequest(format!("operation {op} on {path} has no from")))
        };
        match op {
            "add" => add(document, path, value()?)?,
            "remove" => {
                take(document, path)?;
            }
            "replace" => {
                take(document, path)?;
                add(document, path, value()?)?;
            }
            "move" => {
                let moved = take(document, from()?)?;
                add(document, path, moved)?;
            }
            "copy" => {
                let copied = document.pointer(from()?).cloned().ok_or_else(|| missing(path))?;
                add(document, path, copied)?;
            }
            "test" => {
                if document.pointer(path) != Some(&value()?) {
                    return Err(ApiError::Invalid {
                        kind: "patch".into(),
                        name: path.into(),
                        causes: vec![format!("testing value {path} failed")],
                    });
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_merge_merges_containers_by_name_and_replaces_atomic_lists() {
        let mut live = json!({"spec": {"containers": [
            {"name": "a", "image": "1", "args": ["x"]},
            {"name": "b", "image": "2"},
        ]}});
        apply_merge(
            &mut live,
            &json!({"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "a", "args": ["y", "z"]}]}}),
        );
        assert_eq!(
            live,
            json!({"spec": {"containers": [
                {"name": "b", "image": "3"},
                {"name": "a", "image": "1", "args": ["y", "z"]},
            ]}})
        );
    }

    #[test]
    fn json_patch_replaces_as_rollout_undo_sends() {
        let mut live = json!({"metadata": {"annotations": {"x": "1"}}, "spec": {"template": {"a": 1}}});
        json_patch(
            &mut live,
            &json!([
                {"op": "replace", "path": "/spec/template", "value": {"b": 2}},
                {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "2"}},
                {"op": "add", "path": "/metadata/labels", "value": {}},
                {"op": "add", "path": "/metadata/labels/a~1b", "value": "c"},
            ]),
        )
        .expect("valid patch");
        assert_eq!(
            live,
            json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}, "labels": {"a/b": "c"}},
                "spec": {"template": {"b": 2}}})
        );
        assert!(json_patch(&mut live, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }
}
