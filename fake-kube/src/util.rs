//! Small helpers every module needs: timestamps in the apiserver's format, unique ids,
//! stable hashes, and a few accessors for JSON objects.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

/// `2025-01-01T00:00:00Z`: the apiserver's `metav1.Time`, which has second precision.
pub(crate) fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

pub(crate) fn now() -> String {
    timestamp(SystemTime::now())
}

/// Parses a timestamp written by [`timestamp`] (or by a client).
pub(crate) fn parse_timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

/// How long ago a timestamp was; zero for a time in the future or an unreadable one.
pub(crate) fn age(text: &str) -> Duration {
    parse_timestamp(text)
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .unwrap_or_default()
}

/// A process-wide random seed: `RandomState` is seeded from the OS, so ids differ between
/// runs without a dependency on a random-number crate.
static SEED: LazyLock<RandomState> = LazyLock::new(RandomState::new);
static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn random_u64() -> u64 {
    let mut hasher = SEED.build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// A version-4-shaped UUID, as the apiserver gives every object.
pub(crate) fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The alphabet Kubernetes uses for generated name suffixes (`rand.String`): no vowels,
/// so no words, and no easily confused characters.
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random suffix such as `x7k2q`, as `generateName` and the ReplicaSet controller use.
pub(crate) fn random_suffix(len: usize) -> String {
    let mut bits = random_u64();
    (0..len)
        .map(|_| {
            let c = NAME_ALPHABET[(bits % NAME_ALPHABET.len() as u64) as usize] as char;
            bits /= NAME_ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// The pod-template hash the deployment controller puts in ReplicaSet names: FNV-32a of
/// the template, printed in decimal, each digit mapped through the same alphabet as
/// Kubernetes' `rand.SafeEncodeString`. The input differs (canonical JSON rather than Go's
/// object dump), so the value differs from a real cluster's, but it has the same shape.
pub(crate) fn template_hash(template: &Value) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in canonical_json(&normalized(template)).bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| NAME_ALPHABET[b as usize % NAME_ALPHABET.len()] as char)
        .collect()
}

/// JSON with object keys sorted at every level, so equal values print equally.
pub(crate) fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for key in keys {
                    out.insert(key.clone(), sorted(&map[key]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// A value with nulls, `false`, and empty objects and lists removed at every level: what
/// survives a round trip through Go's typed structs (`omitempty`), so a template kubectl
/// sends back (`rollout undo` adds `creationTimestamp: null` and `resources: {}`) compares
/// equal to the one it came from.
pub(crate) fn normalized(value: &Value) -> Value {
    fn empty(value: &Value) -> bool {
        match value {
            Value::Null | Value::Bool(false) => true,
            Value::Object(map) => map.is_empty(),
            Value::Array(items) => items.is_empty(),
            _ => false,
        }
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// Follows a dotted path (`spec.template.spec`) through nested objects.
pub(crate) fn get_path<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(value, |current, key| current.as_object()?.get(key))
}

pub(crate) fn str_at<'a>(value: &'a Value, dotted: &str) -> Option<&'a str> {
    get_path(value, dotted)?.as_str()
}

pub(crate) fn i64_at(value: &Value, dotted: &str) -> Option<i64> {
    get_path(value, dotted)?.as_i64()
}

/// The object at a dotted path, created (with every object on the way) if missing.
pub(crate) fn object_at<'a>(value: &'a mut Value, dotted: &str) -> &'a mut Map<String, Value> {
    let mut current = value;
    for key in dotted.split('.') {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let map = current.as_object_mut().expect("made an object above");
        current = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !current.is_object() {
        *current = Value::Object(Map::new());
    }
    current.as_object_mut().expect("made an object above")
}

pub(crate) fn name_of(object: &Value) -> &str {
    str_at(object, "metadata.name").unwrap_or_default()
}

pub(crate) fn namespace_of(object: &Value) -> &str {
    str_at(object, "metadata.namespace").unwrap_or_default()
}

pub(crate) fn uid_of(object: &Value) -> &str {
    str_at(object, "metadata.uid").unwrap_or_default()
}

pub(crate) fn labels_of(object: &Value) -> Option<&Map<String, Value>> {
    get_path(object, "metadata.labels")?.as_object()
}

pub(crate) fn is_deleting(object: &Value) -> bool {
    get_path(object, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// The uid of the object's controlling owner (`ownerReferences[controller=true]`).
pub(crate) fn controller_uid(object: &Value) -> Option<&str> {
    get_path(object, "metadata.ownerReferences")?
        .as_array()?
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// Decodes `%XX` escapes and `+` in a query component.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a Kubernetes quantity (`128Mi`, `1G`, `500m`, `2`) into its value.
pub(crate) fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percent_decoding_handles_escapes_and_plus() {
        assert_eq!(
            percent_decode("metadata.name%3Dweb%2Ca+b"),
            "metadata.name=web,a b"
        );
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn template_hash_is_stable_and_uses_the_safe_alphabet() {
        let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}});
        let reordered = json!({"spec": {"containers": []}, "metadata": {"labels": {"app": "x"}}});
        let hash = template_hash(&template);
        assert_eq!(hash, template_hash(&reordered));
        assert!(hash.bytes().all(|b| NAME_ALPHABET.contains(&b)), "{hash}");
        assert_ne!(hash, template_hash(&json!({"spec": {}})));
    }

    #[test]
    fn normalized_drops_what_go_omits() {
        let sent_back = json!({"metadata": {"creationTimestamp": null, "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "resources": {}, "stdin": false}]}});
        let original = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}});
        assert_eq!(normalized(&sent_back), normalized(&original));
        assert_ne!(
            normalized(&original),
            normalized(&json!({"metadata": {"labels": {"a": "c"}}}))
        );
    }

    #[test]
    fn quantities_parse_with_binary_and_decimal_suffixes() {
        assert_eq!(parse_quantity("128Mi"), Some(134_217_728.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("lots"), None);
    }

    #[test]
    fn timestamps_round_trip() {
        let text = now();
        assert!(text.ends_with('Z'), "{text}");
        assert!(age(&text) < Duration::from_secs(2));
    }
}
