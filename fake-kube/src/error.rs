//! Refusals, each knowing its HTTP status and `reason`, turned into the `Status` body
//! kubectl reads (it prints `.message`; `.reason` and `.code` decide `IsNotFound`,
//! `IsConflict` and the like) in one place.

use serde_json::{Value, json};

use crate::resources::ResourceType;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApiError {
    /// 400, `BadRequest`.
    BadRequest(String),
    /// 401: no token, or the wrong one.
    Unauthorized,
    /// 403, `Forbidden`: admission refused the object.
    Forbidden {
        kind: String,
        name: String,
        message: String,
    },
    /// 404, `NotFound`.
    NotFound {
        kind: String,
        group: String,
        name: String,
    },
    /// 404 for a path that names no resource.
    NoRoute,
    /// 405: a verb the resource does not support here.
    MethodNotAllowed,
    /// 409, `AlreadyExists`.
    AlreadyExists {
        kind: String,
        group: String,
        name: String,
    },
    /// 409, `Conflict`: a stale resourceVersion, or server-side apply's field conflicts.
    Conflict { message: String, causes: Vec<Value> },
    /// 410, `Expired`: a watch asked for history the server no longer has.
    Expired(String),
    /// 415: a patch type the server does not know.
    UnsupportedMediaType(String),
    /// 422, `Invalid`: each cause `field: what is wrong` (or a bare message), as
    /// kubectl prints them one per line.
    Invalid {
        kind: String,
        name: String,
        causes: Vec<String>,
    },
    /// 500, for the fake's own failures (a container runtime command failing, say).
    Internal(String),
    /// 503, `ServiceUnavailable`: a proxied pod that cannot be reached.
    ServiceUnavailable(String),
    /// 429, `TooManyRequests`: API priority and fairness turning a client away, with the
    /// seconds to wait (also the `Retry-After` header).
    TooManyRequests { retry_after: u64 },
    /// 504, `Timeout`: the request did not complete within the apiserver's deadline.
    Timeout,
}

impl ApiError {
    pub(crate) fn not_found(resource: &ResourceType, name: &str) -> Self {
        ApiError::NotFound {
            kind: resource.plural.to_string(),
            group: resource.group.to_string(),
            name: name.to_string(),
        }
    }

    pub(crate) fn namespace_not_found(namespace: &str) -> Self {
        ApiError::NotFound {
            kind: "namespaces".to_string(),
            group: String::new(),
            name: namespace.to_string(),
        }
    }

    pub(crate) fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Expired(_) => 410,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Invalid { .. } => 422,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::Timeout => 504,
        }
    }

    /// The `Status` object, as the apiserver writes it.
    pub(crate) fn status(&self) -> Value {
        let qualified = |kind: &str, group: &str| {
            if group.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}.{group}")
            }
        };
        let (reason, message, details) = match self {
            ApiError::BadRequest(message) => ("BadRequest", message.clone(), None),
            ApiError::Unauthorized => ("Unauthorized", "Unauthorized".to_string(), None),
            ApiError::Forbidden { kind, name, message } => (
                "Forbidden",
                format!("{kind} \"{name}\" is forbidden: {message}"),
                Some(json!({"name": name, "kind": kind})),
            ),
            ApiError::NotFound { kind, group, name } => (
                "NotFound",
                format!("{} \"{name}\" not found", qualified(kind, group)),
                Some(json!({"name": name, "group": group, "kind": kind})),
            ),
            ApiError::NoRoute => (
                "NotFound",
                "the server could not find the requested resource".to_string(),
                None,
            ),
            ApiError::MethodNotAllowed => (
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource".to_string(),
                None,
            ),
            ApiError::AlreadyExists { kind, group, name } => (
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(kind, group)),
                Some(json!({"name": name, "group": group, "kind": kind})),
            ),
            ApiError::Conflict { message, causes } => (
                "Conflict",
                message.clone(),
                (!causes.is_empty()).then(|| json!({"causes": causes})),
            ),
            ApiError::Expired(message) => ("Expired", message.clone(), None),
            ApiError::UnsupportedMediaType(message) => ("UnsupportedMediaType", message.clone(), None),
            ApiError::Invalid { kind, name, causes } => {
                let message = match causes.as_slice() {
                    [only] => only.clone(),
                    many => format!("[{}]", many.join(", ")),
                };
                (
                    "Invalid",
                    format!("{kind} \"{name}\" is invalid: {message}"),
                    Some(
                        json!({"name": name, "kind": kind, "causes": causes.iter().map(|c| cause(c)).collect::<Vec<_>>()}),
                    ),
                )
            }
            ApiError::Internal(message) => ("InternalError", message.clone(), None),
            ApiError::ServiceUnavailable(message) => ("ServiceUnavailable", message.clone(), None),
            ApiError::TooManyRequests { retry_after } => (
                "TooManyRequests",
                "Too many requests, please try again later.".to_string(),
                Some(json!({"retryAfterSeconds": retry_after})),
            ),
            ApiError::Timeout => (
                "Timeout",
                "Timeout: request did not complete within requested timeout - context deadline exceeded"
                    .to_string(),
                None,
            ),
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": self.code(),
        });
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status();
        write!(
            f,
            "{} ({})",
            status["message"].as_str().unwrap_or_default(),
            self.code()
        )
    }
}

impl std::error::Error for ApiError {}

/// A `StatusCause` from `field: Invalid value: …` (the field named, the reason from what
/// follows it), or a bare message.
fn cause(text: &str) -> Value {
    let reasons = [
        ("Invalid value", "FieldValueInvalid"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Required value", "FieldValueRequired"),
    ];
    let found = text.split_once(": ").and_then(|(field, rest)| {
        let (_, reason) = reasons.iter().find(|(prefix, _)| rest.starts_with(prefix))?;
        Some(json!({"reason": reason, "message": rest, "field": field}))
    });
    found.unwrap_or_else(|| json!({"message": text}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_group_qualified_resource() {
        let error = ApiError::NotFound {
            kind: "deployments".into(),
            group: "apps".into(),
            name: "web".into(),
        };
        let status = error.status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
    }

    #[test]
    fn invalid_lists_each_cause_by_field_as_kubectl_prints_them() {
        let error = ApiError::Invalid {
            kind: "Service".into(),
            name: "1score".into(),
            causes: vec![
                "metadata.name: Invalid value: \"1score\": a DNS-1035 label".into(),
                "spec.type: Unsupported value: \"Loadbalancer\"".into(),
            ],
        };
        let status = error.status();
        assert_eq!(status["code"], 422);
        assert_eq!(
            status["details"]["causes"],
            json!([
                {"reason": "FieldValueInvalid", "message": "Invalid value: \"1score\": a DNS-1035 label", "field": "metadata.name"},
                {"reason": "FieldValueNotSupported", "message": "Unsupported value: \"Loadbalancer\"", "field": "spec.type"},
            ])
        );
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .starts_with("Service \"1score\" is invalid: [metadata.name")
        );
    }
}
