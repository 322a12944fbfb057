//! Storage, the layer under the write path: every object by resource, namespace and
//! name, one global resourceVersion counter, and the history of changes that watches
//! replay (older resourceVersions get 410 Gone). It stores what it is given: defaults,
//! validation and admission belong to the write path above (`store.rs`), as etcd and the
//! watch cache sit under the API server's registry.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::resources::ResourceId;
use crate::util::{name_of, namespace_of};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectKey {
    pub(crate) resource: ResourceId,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl ObjectKey {
    pub(crate) fn new(resource: ResourceId, namespace: &str, name: &str) -> Self {
        ObjectKey {
            resource,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub(crate) fn of(resource: ResourceId, object: &Value) -> Self {
        ObjectKey::new(resource, namespace_of(object), name_of(object))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watches see it.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) revision: u64,
    pub(crate) kind: EventType,
    pub(crate) resource: ResourceId,
    pub(crate) object: Arc<Value>,
    /// The object before a modification, so a watch can tell an object entering or
    /// leaving its selector (which it reports as ADDED or DELETED).
    pub(crate) previous: Option<Arc<Value>>,
}

/// How many changes watches can replay; older resourceVersions get 410 Gone.
const HISTORY: usize = 20_000;

pub(crate) struct Storage {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    revision: u64,
    history: VecDeque<Arc<Change>>,
    changes: broadcast::Sender<Arc<Change>>,
    /// The latest revision, for the controllers to wait on.
    revision_tx: watch::Sender<u64>,
}

impl Storage {
    pub(crate) fn new() -> Self {
        let (changes, _) = broadcast::channel(4096);
        let (revision_tx, _) = watch::channel(0);
        Storage {
            objects: BTreeMap::new(),
            revision: 0,
            history: VecDeque::new(),
            changes,
            revision_tx,
        }
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    pub(crate) fn watch_revision(&self) -> watch::Receiver<u64> {
        self.revision_tx.subscribe()
    }

    /// Changes after `revision`, or None when that is older than the history kept.
    pub(crate) fn changes_since(&self, revision: u64) -> Option<Vec<Arc<Change>>> {
        if let Some(oldest) = self.history.front()
            && revision + 1 < oldest.revision
            && self.history.len() >= HISTORY
        {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|c| c.revision > revision)
                .cloned()
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &ObjectKey) -> Option<&Arc<Value>> {
        self.objects.get(key)
    }

    pub(crate) fn contains(&self, key: &ObjectKey) -> bool {
        self.objects.contains_key(key)
    }

    pub(crate) fn get_by(&self, resource: ResourceId, namespace: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects.get(&ObjectKey::new(resource, namespace, name))
    }

    /// Objects of a resource, in one namespace or all, in key order (namespace, name), as
    /// etcd returns them.
    pub(crate) fn list(&self, resource: ResourceId, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let start = ObjectKey::new(resource, namespace.unwrap_or_default(), "");
        self.objects
            .range(start..)
            .take_while(|(key, _)| key.resource == resource && namespace.is_none_or(|ns| key.namespace == ns))
            .map(|(_, object)| object.clone())
            .collect()
    }

    fn record(
        &mut self,
        kind: EventType,
        resource: ResourceId,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let change = Arc::new(Change {
            revision: self.revision,
            kind,
            resource,
            object,
            previous,
        });
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        // Nobody listening is fine.
        let _ = self.changes.send(change);
        self.revision_tx.send_replace(self.revision);
    }

    /// Stores an object as it is, with a new resourceVersion.
    pub(crate) fn put(&mut self, key: ObjectKey, mut object: Value) -> Arc<Value> {
        self.revision += 1;
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".into(), json!(self.revision.to_string()));
        }
        let object = Arc::new(object);
        let previous = self.objects.insert(key.clone(), object.clone());
        let kind = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(kind, key.resource, object.clone(), previous);
        object
    }

    /// Removes an object for good; watches see it DELETED with a new resourceVersion.
    pub(crate) fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Value>> {
        let previous = self.objects.remove(key)?;
        self.revision += 1;
        let mut last = (*previous).clone();
        if let Some(metadata) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".into(), json!(self.revision.to_string()));
        }
        let last = Arc::new(last);
        self.record(EventType::Deleted, key.resource, last.clone(), Some(previous));
        Some(last)
    }
}
