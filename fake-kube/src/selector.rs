//! Label and field selectors: the `labelSelector=`/`fieldSelector=` query strings kubectl
//! sends, and the `LabelSelector` objects in Deployments, Services and the like.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::util::{get_path, labels_of};

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        match self {
            Requirement::Equals(key, want) => value(key) == Some(want.as_str()),
            Requirement::NotEquals(key, want) => value(key) != Some(want.as_str()),
            Requirement::In(key, wants) => value(key).is_some_and(|v| wants.iter().any(|w| w == v)),
            Requirement::NotIn(key, wants) => !value(key).is_some_and(|v| wants.iter().any(|w| w == v)),
            Requirement::Exists(key) => value(key).is_some(),
            Requirement::DoesNotExist(key) => value(key).is_none(),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses (`a in (x,y),b=c`).
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_set(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    /// Parses the query-string form: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`,
    /// `k`, `!k`.
    pub(crate) fn parse(text: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::BadRequest(format!(
                "unable to parse requirement: invalid label selector {text:?}"
            ))
        };
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let requirement = if let Some((key, values)) = term.split_once(" notin ") {
                Requirement::NotIn(key.trim().to_string(), parse_set(values).ok_or_else(invalid)?)
            } else if let Some((key, values)) = term.split_once(" in ") {
                Requirement::In(key.trim().to_string(), parse_set(values).ok_or_else(invalid)?)
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = term.split_once("==") {
                Requirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = term.split_once('=') {
                Requirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if term.contains(char::is_whitespace) {
                return Err(invalid());
            } else {
                Requirement::Exists(term.to_string())
            };
            requirements.push(requirement);
        }
        Ok(LabelSelector { requirements })
    }

    /// Reads a `LabelSelector` object (`matchLabels` and `matchExpressions`). A missing or
    /// null selector matches nothing, as for a Service without a selector.
    pub(crate) fn from_object(selector: Option<&Value>) -> Option<Self> {
        let selector = selector?.as_object()?;
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                requirements.push(Requirement::Equals(key.clone(), value.as_str()?.to_string()));
            }
        }
        for expression in selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = expression.get("key")?.as_str()?.to_string();
            let values: Vec<String> = expression
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            requirements.push(match expression.get("operator")?.as_str()? {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => return None,
            });
        }
        Some(LabelSelector { requirements })
    }

    /// A selector from a plain label map (a Service's `spec.selector`).
    pub(crate) fn from_map(labels: &Map<String, Value>) -> Self {
        LabelSelector {
            requirements: labels
                .iter()
                .map(|(k, v)| Requirement::Equals(k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        }
    }

    pub(crate) fn matches_labels(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.matches_labels(labels_of(object))
    }
}

/// A parsed field selector: `a=b`, `a==b` and `a!=b` terms on dotted paths.
///
/// The apiserver supports a fixed list of fields per kind and refuses others; this fake
/// follows any dotted path, which is a superset.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, value, equal) = if let Some((path, value)) = term.split_once("!=") {
                (path, value, false)
            } else if let Some((path, value)) = term.split_once("==") {
                (path, value, true)
            } else if let Some((path, value)) = term.split_once('=') {
                (path, value, true)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid field selector {text:?}: {term:?} is not of the form field=value"
                )));
            };
            terms.push((path.trim().to_string(), value.trim().to_string(), equal));
        }
        Ok(FieldSelector { terms })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, want, equal)| {
            let actual = match get_path(object, path) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors_cover_every_operator() {
        let object = pod(json!({"app": "web", "tier": "front"}));
        let cases = [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("app in (api,web)", true),
            ("app notin (api,web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing,app in (web)", true),
            ("", true),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).expect(text);
            assert_eq!(selector.matches(&object), expected, "{text}");
        }
    }

    #[test]
    fn selector_objects_read_match_labels_and_expressions() {
        let selector = LabelSelector::from_object(Some(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}],
        })))
        .expect("valid selector");
        assert!(selector.matches(&pod(json!({"app": "web", "tier": "front"}))));
        assert!(!selector.matches(&pod(json!({"app": "web"}))));
        assert_eq!(LabelSelector::from_object(None), None);
    }

    #[test]
    fn field_selectors_follow_dotted_paths() {
        let object = pod(json!({}));
        let selector = FieldSelector::parse("metadata.name=p,status.phase!=Pending").expect("valid");
        assert!(selector.matches(&object));
        assert!(
            !FieldSelector::parse("metadata.name=q")
                .expect("valid")
                .matches(&object)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
