//! What a target is: where the service goes, how it is taken off, where it answers, what
//! runs there and its logs. `ship`, `down`, `smoke`, `status` and `logs` talk to a
//! `dyn Target` chosen once from `--target`; a new target implements this trait and adds a
//! line to `targets::choose`. Where images go is a trait of its own, [`Publish`], which
//! only the targets that run images implement (`image` and `push` talk to it): the local
//! target runs the binary and has no image to publish.

use std::time::Duration;

use crate::core::model_file::Models;
use crate::core::plan::Plan;
use crate::steps::canary::CanaryOptions;
use crate::steps::deploy::Rollout;
use crate::steps::push::Release;

/// What `ship` was asked for.
pub(crate) struct ShipOptions {
    /// Port on 127.0.0.1 (local and docker).
    pub(crate) port: u16,
    /// Build the image inside Docker from source.
    pub(crate) from_source: bool,
    /// Run the optimised build on this machine (local), not the quick debug one.
    pub(crate) release: bool,
    pub(crate) model: Option<Models>,
    /// How to roll out on a cluster.
    pub(crate) rollout: Rollout,
    /// On a cluster, release as a canary beside the stable track first.
    pub(crate) canary: Option<CanaryOptions>,
}

pub(crate) trait Target {
    /// Build, put the service on the target, wait until it answers, smoke-test it.
    fn ship_plan(&self, options: &ShipOptions) -> anyhow::Result<Plan<'_, Release>>;

    /// Take the service off the target.
    fn down_plan(&self) -> anyhow::Result<Plan<'_, Release>>;

    /// Adds the smoke test of the running service, wherever it answers.
    fn add_smoke<'s>(
        &'s self,
        plan: &mut Plan<'s, Release>,
        timeout: Duration,
        models: Vec<String>,
    ) -> anyhow::Result<()>;

    /// Print what runs there: the image (by digest), the model, how many are ready, and
    /// where it answers.
    fn status_plan(&self) -> anyhow::Result<Plan<'_, Release>>;

    /// Show the service's last `tail` log lines, and with `follow`, keep streaming them.
    fn logs_plan(&self, follow: bool, tail: u32) -> anyhow::Result<Plan<'_, Release>>;
}

/// Where a target's images go: the registry its engine or its cluster pulls from.
pub(crate) trait Publish {
    /// Where images for this target are pushed: `REGISTRY/IMAGE`.
    fn image_repository(&self) -> anyhow::Result<String>;

    /// Adds what must run before a push (starting the local registry, say).
    fn add_before_push<'s>(&'s self, _plan: &mut Plan<'s, Release>) -> anyhow::Result<()> {
        Ok(())
    }
}
