//! Server-side printing: the `Table` kubectl asks for when it prints objects without
//! `-o` (`kubectl get events`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::util::{self, name_of, str_at};

pub(crate) const CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

pub(crate) fn wanted(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// Kubernetes' `duration.HumanDuration`, near enough: `45s`, `3m20s`, `25m`, `5h10m`, `3d`.
fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if days < 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else {
        format!("{days}d")
    }
}

fn age(object: &Value) -> String {
    str_at(object, "metadata.creationTimestamp").map_or_else(|| "<unknown>".into(), |t| human(util::age(t)))
}

/// The columns and the cells of one object: the apiserver's for events, the one kind the
/// plans print as a table (`kubectl get events --sort-by=…` in a failed rollout's
/// diagnosis); NAME and AGE for the rest, which the plans read as JSON.
fn columns(kind: &str) -> Vec<(&'static str, &'static str)> {
    match kind {
        "Event" => vec![
            ("Last Seen", ""),
            ("Type", ""),
            ("Reason", ""),
            ("Object", ""),
            ("Message", ""),
        ],
        _ => vec![("Name", "name"), ("Age", "")],
    }
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    match kind {
        "Event" => {
            let last = str_at(o, "lastTimestamp")
                .or_else(|| str_at(o, "metadata.creationTimestamp"))
                .map_or_else(|| "<unknown>".into(), |t| human(util::age(t)));
            let object = format!(
                "{}/{}",
                str_at(o, "involvedObject.kind")
                    .unwrap_or_default()
                    .to_lowercase(),
                str_at(o, "involvedObject.name").unwrap_or_default()
            );
            vec![
                json!(last),
                o.get("type").cloned().unwrap_or(json!("")),
                o.get("reason").cloned().unwrap_or(json!("")),
                json!(object),
                o.get("message").cloned().unwrap_or(json!("")),
            ]
        }
        _ => vec![json!(name_of(o)), json!(age(o))],
    }
}

/// A `meta.k8s.io/v1` Table of objects of one resource. Each row carries its object as
/// the request's `includeObject` asks: its metadata (the default), the whole object
/// (what kubectl asks for to `--sort-by` a field of it), or nothing.
pub(crate) fn table(
    resource: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    include_object: Option<&str>,
) -> Value {
    let definitions: Vec<Value> = columns(resource.kind)
        .into_iter()
        .map(|(name, format)| {
            json!({"name": name, "type": "string", "format": format, "description": "", "priority": 0})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let carried = match include_object {
                Some("Object") => object.clone(),
                Some("None") => Value::Null,
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
                }),
            };
            json!({"cells": cells(resource.kind, object), "object": carried})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        let cases = [
            (45, "45s"),
            (200, "3m20s"),
            (1500, "25m"),
            (5 * 3600 + 600, "5h10m"),
            (30 * 3600, "30h"),
            (3 * 86_400, "3d"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human(Duration::from_secs(seconds)), expected);
        }
    }
}
