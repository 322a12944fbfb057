//! The controllers kube-controller-manager runs, in one task: deployments, replica sets,
//! horizontal pod autoscalers, disruption budgets, namespaces (deletion, and the default
//! service account) and the garbage collector.
//!
//! Each pass is level-triggered, as the real controllers are: it reads the whole state
//! and writes only what differs, so running it again changes nothing. A pass runs after
//! every change and every quarter second (for deadlines), holding the store's lock
//! throughout, so it sees and leaves a consistent state.

mod deployment;
mod namespace;
mod policy;
pub(crate) mod replicaset;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Shared;
use crate::store::{Store, Writer};

/// The field manager the controllers write as.
pub(crate) const MANAGER: &str = "kube-controller-manager";

pub(crate) fn writer() -> Writer<'static> {
    Writer::system(MANAGER)
}

/// How often a pass runs when nothing changes, so deadlines are noticed.
const TICK: Duration = Duration::from_millis(250);

/// What the controllers remember between passes.
#[derive(Default)]
pub(crate) struct Controllers {
    /// ReplicaSets whose pod creation failed, by uid: when to try again, and the next
    /// delay. The real controller backs off too, so a refused pod does not flood events.
    create_backoff: HashMap<String, (Instant, Duration)>,
    progress_deadline: Option<Duration>,
}

impl Controllers {
    pub(crate) fn new(progress_deadline: Option<Duration>) -> Self {
        Controllers {
            create_backoff: HashMap::new(),
            progress_deadline,
        }
    }

    /// One pass of every controller.
    pub(crate) fn reconcile(&mut self, store: &mut Store) {
        namespace::reconcile(store);
        namespace::collect_garbage(store);
        policy::reconcile_autoscalers(store);
        deployment::reconcile(store, self.progress_deadline);
        replicaset::reconcile(store, &mut self.create_backoff);
        policy::reconcile_disruption_budgets(store);
    }
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut controllers = Controllers::new(shared.options.progress_deadline);
    let mut revision = shared.store().watch_revision();
    let mut shutdown = shared.shutdown_signal();
    loop {
        controllers.reconcile(&mut shared.store());
        revision.mark_unchanged();
        tokio::select! {
            _ = revision.changed() => {
                // Let a burst of writes (an apply of several objects) land first.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// Reads an int-or-percent (`1`, `"25%"`) against a total, rounding up or down.
pub(crate) fn int_or_percent(value: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(percent) => {
                let scaled = percent * total;
                if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                }
            }
            None => s.parse().unwrap_or(default),
        },
        _ => default,
    }
}

/// A condition list entry for `status.conditions`: replaces the one of the same type,
/// keeping `lastTransitionTime` when the status did not change and keeping the whole
/// condition when neither status nor reason nor message did (so a pass that learns
/// nothing new writes nothing).
pub(crate) fn set_condition(conditions: &mut Vec<Value>, mut condition: Value) {
    let kind = condition["type"].clone();
    if let Some(existing) = conditions.iter_mut().find(|c| c["type"] == kind) {
        if existing["status"] == condition["status"]
            && existing["reason"] == condition["reason"]
            && existing["message"] == condition["message"]
        {
            return;
        }
        if existing["status"] == condition["status"]
            && let Some(at) = existing.get("lastTransitionTime").cloned()
        {
            condition["lastTransitionTime"] = at;
        }
        *existing = condition;
    } else {
        conditions.push(condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int_or_percent_rounds_as_the_deployment_controller_does() {
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, true, 0), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, false, 0), 0);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, false, 0), 2);
        assert_eq!(int_or_percent(None, 3, false, 7), 7);
    }

    #[test]
    fn set_condition_keeps_unchanged_conditions_whole() {
        let mut conditions = vec![
            json!({"type": "Ready", "status": "True", "reason": "A", "message": "",
            "lastTransitionTime": "t0", "lastUpdateTime": "t0"}),
        ];
        set_condition(
            &mut conditions,
            json!({"type": "Ready", "status": "True", "reason": "A", "message": "", "lastTransitionTime": "t1", "lastUpdateTime": "t1"}),
        );
        assert_eq!(conditions[0]["lastUpdateTime"], "t0");
        set_condition(
            &mut conditions,
            json!({"type": "Ready", "status": "True", "reason": "B", "message": "", "lastTransitionTime": "t2", "lastUpdateTime": "t2"}),
        );
        assert_eq!(conditions[0]["lastTransitionTime"], "t0");
        assert_eq!(conditions[0]["lastUpdateTime"], "t2");
    }
}
