//! `cargo xtask smoke`: the tutorial's request against a running service.

use std::time::Duration;

use clap::Args;
use xshell::Shell;

use crate::core::plan::Plan;
use crate::core::settings::SettingsArgs;
use crate::core::target::TargetArg;
use crate::steps::smoke::add_smoke_test;
use crate::targets::choose;

#[derive(Args, Debug)]
pub(crate) struct SmokeCmd {
    #[command(flatten)]
    target: TargetArg,

    /// Base URL of the service; by default the target's running instance.
    #[arg(long)]
    url: Option<String>,

    /// Seconds to keep retrying (a new cloud load balancer can take minutes).
    #[arg(long, default_value_t = 60)]
    timeout: u64,

    /// The service serves this model (the .onnx file's name, without .onnx, or a
    /// repository's model; repeat it for each of several): send a row shaped as it takes
    /// instead of the tutorial's echo request.
    #[arg(long)]
    model: Vec<String>,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl SmokeCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(self.timeout);
        if let Some(url) = self.url {
            let mut plan: Plan = Plan::new();
            add_smoke_test(&mut plan, url, timeout, self.model);
            return plan.execute(dry_run);
        }
        let target = choose(self.target.target, sh, &self.settings)?;
        let mut plan = Plan::new();
        target.add_smoke(&mut plan, timeout, self.model)?;
        plan.execute(dry_run)
    }
}
