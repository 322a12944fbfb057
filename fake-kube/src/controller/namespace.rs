//! Namespaces: deleting one deletes everything in it (pods gracefully, so the kubelet
//! stops their containers) and then the namespace; every live namespace gets its
//! `default` service account. And the garbage collector: ReplicaSets and pods whose
//! controlling owner is gone are deleted, as background cascading deletion does.

use std::collections::HashSet;

use serde_json::json;

use super::writer;
use crate::resources::{IDS, RESOURCES};
use crate::store::{ObjectKey, Store};
use crate::util::{controller_uid, is_deleting, name_of, uid_of};

pub(super) fn reconcile(store: &mut Store) {
    for namespace in store.list(IDS.namespaces, None) {
        let name = name_of(&namespace).to_string();
        if !is_deleting(&namespace) {
            if store.get_by(IDS.serviceaccounts, &name, "default").is_none() {
                let account =
                    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
                let _ = store.create(IDS.serviceaccounts, &name, account, &writer());
            }
            continue;
        }
        let mut remaining = 0;
        for (id, resource) in RESOURCES.iter().enumerate() {
            if !resource.namespaced {
                continue;
            }
            for object in store.list(id, Some(&name)) {
                remaining += 1;
                if !is_deleting(&object) {
                    let _ = store.delete(id, &name, name_of(&object), None, false);
                }
            }
        }
        if remaining == 0 {
            store.remove(&ObjectKey::new(IDS.namespaces, "", &name));
        }
    }
}

pub(super) fn collect_garbage(store: &mut Store) {
    let owners: HashSet<String> = [IDS.deployments, IDS.replicasets]
        .iter()
        .flat_map(|id| store.list(*id, None))
        .filter(|owner| !is_deleting(owner))
        .map(|owner| uid_of(&owner).to_string())
        .collect();
    for id in [IDS.replicasets, IDS.pods] {
        for object in store.list(id, None) {
            let orphaned = controller_uid(&object).is_some_and(|uid| !owners.contains(uid));
            if orphaned && !is_deleting(&object) {
                let namespace = crate::util::namespace_of(&object).to_string();
                let _ = store.delete(id, &namespace, name_of(&object), None, false);
            }
        }
    }
}
