//! The write path's table of per-kind strategies, as the API server's registry gives each
//! resource its own: the rule its names follow, the defaults filled in, the check of its
//! values, where Pod Security finds its pod spec, whether a spec change bumps
//! `metadata.generation`, and how a delete finishes. The store (`store.rs`) applies them
//! to every write; nothing else in the write path asks what kind an object is.

use std::sync::LazyLock;

use serde_json::Value;

use crate::defaults::{self, Defaults};
use crate::resources::{RESOURCES, ResourceId};
use crate::values::{self, Check, Names};

/// How a delete finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deletion {
    /// Removed at once.
    Immediate,
    /// Marked with a grace period; the kubelet stops the containers and removes it (at
    /// once when the grace period asked for is zero).
    Graceful,
    /// Marked `Terminating`; the namespace controller empties and removes it.
    Finalized,
}

/// Where a kind holds a pod spec, for Pod Security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodSpec {
    /// A Pod's own `spec`: the namespace's `enforce` level refuses it, `warn` warns.
    Own,
    /// A workload's `spec.template.spec`: only warned about, as its pods will be checked.
    Template,
}

impl PodSpec {
    pub(crate) fn path(self) -> &'static str {
        match self {
            PodSpec::Own => "spec",
            PodSpec::Template => "spec.template.spec",
        }
    }
}

pub(crate) struct Strategy {
    group: &'static str,
    plural: &'static str,
    pub(crate) names: Names,
    pub(crate) defaults: Defaults,
    pub(crate) check: Check,
    pub(crate) pod_spec: Option<PodSpec>,
    /// Whether a change of `spec` increments `metadata.generation` (core kinds served
    /// here carry none).
    pub(crate) generation: bool,
    pub(crate) deletion: Deletion,
}

const fn plain(group: &'static str, plural: &'static str) -> Strategy {
    Strategy {
        group,
        plural,
        names: Names::Dns1123Subdomain,
        defaults: defaults::none,
        check: values::unchecked,
        pod_spec: None,
        generation: !group.is_empty(),
        deletion: Deletion::Immediate,
    }
}

static STRATEGIES: [Strategy; 14] = [
    Strategy {
        names: Names::Dns1123Label,
        defaults: defaults::namespace,
        check: values::namespace,
        deletion: Deletion::Finalized,
        ..plain("", "namespaces")
    },
    Strategy {
        defaults: defaults::pod,
        check: values::pod,
        pod_spec: Some(PodSpec::Own),
        deletion: Deletion::Graceful,
        ..plain("", "pods")
    },
    Strategy {
        names: Names::Dns1035Label,
        defaults: defaults::service,
        check: values::service,
        ..plain("", "services")
    },
    plain("", "events"),
    plain("", "serviceaccounts"),
    Strategy {
        defaults: defaults::deployment,
        check: values::deployment,
        pod_spec: Some(PodSpec::Template),
        ..plain("apps", "deployments")
    },
    Strategy {
        defaults: defaults::replicaset,
        check: values::replicaset,
        pod_spec: Some(PodSpec::Template),
        ..plain("apps", "replicasets")
    },
    Strategy {
        defaults: defaults::autoscaler,
        ..plain("autoscaling", "horizontalpodautoscalers")
    },
    plain("policy", "poddisruptionbudgets"),
    plain("networking.k8s.io", "networkpolicies"),
    plain("gateway.networking.k8s.io", "gatewayclasses"),
    Strategy {
        check: values::gateway,
        ..plain("gateway.networking.k8s.io", "gateways")
    },
    Strategy {
        check: values::http_route,
        ..plain("gateway.networking.k8s.io", "httproutes")
    },
    Strategy {
        check: values::health_check_policy,
        ..plain("networking.gke.io", "healthcheckpolicies")
    },
];

/// Each resource's strategy, by resource id.
static BY_RESOURCE: LazyLock<Vec<&'static Strategy>> = LazyLock::new(|| {
    RESOURCES
        .iter()
        .map(|resource| {
            STRATEGIES
                .iter()
                .find(|s| resource.is(s.group, s.plural))
                .unwrap_or_else(|| panic!("{} has a strategy", resource.qualified_plural()))
        })
        .collect()
});

impl Strategy {
    pub(crate) fn of(resource: ResourceId) -> &'static Strategy {
        BY_RESOURCE[resource]
    }

    /// Fills in what a manifest left out; idempotent, so an unchanged re-apply is a no-op.
    pub(crate) fn fill_defaults(&self, object: &mut Value) {
        let name = crate::util::name_of(object).to_owned();
        if let Some(map) = object.as_object_mut() {
            (self.defaults)(map, &name);
        }
    }

    /// What is wrong with the object's name and values, one message per field.
    pub(crate) fn invalid_values(&self, object: &Value) -> Vec<String> {
        let mut out = Vec::new();
        values::check_name(self.names, crate::util::name_of(object), &mut out);
        (self.check)(object, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::IDS;

    #[test]
    fn every_resource_has_exactly_one_strategy() {
        assert_eq!(STRATEGIES.len(), RESOURCES.len());
        for (id, resource) in RESOURCES.iter().enumerate() {
            let strategy = Strategy::of(id);
            assert!(resource.is(strategy.group, strategy.plural));
        }
    }

    #[test]
    fn names_follow_their_kinds_rule() {
        let named = |resource, name: &str| {
            Strategy::of(resource).invalid_values(&json!({"metadata": {"name": name}}))
        };
        assert_eq!(
            named(IDS.services, "1score").len(),
            1,
            "a Service name is a DNS-1035 label"
        );
        assert!(
            named(IDS.deployments, "1score").is_empty(),
            "a subdomain may start with a digit"
        );
        assert_eq!(
            named(IDS.namespaces, "ml.ops").len(),
            1,
            "a namespace is one label"
        );
        assert_eq!(named(IDS.deployments, "Score_App").len(), 1);
    }
}
