//! `cargo xtask ship`: put the service on the target, wait until it answers, smoke-test.

use clap::Args;
use xshell::Shell;

use crate::core::model_file::ModelFile;
use crate::core::settings::SettingsArgs;
use crate::core::target::TargetArg;
use crate::steps::deploy::Rollout;
use crate::targets::choose;
use crate::targets::target::ShipOptions;

#[derive(Args, Debug)]
pub(crate) struct ShipCmd {
    #[command(flatten)]
    target: TargetArg,

    /// Port to serve on, on 127.0.0.1 (local and docker targets).
    #[arg(long, default_value_t = 5000)]
    port: u16,

    /// Build the image inside Docker from source instead of packaging a binary built here.
    #[arg(long)]
    from_source: bool,

    /// Serve this ONNX model instead of the identity echo: mounted read-only (local,
    /// docker), or on a cluster, a model image built on the service image and pushed.
    #[arg(long, value_parser = ModelFile::parse)]
    model: Option<ModelFile>,

    /// Seconds to wait for a cluster's rollout.
    #[arg(long, default_value_t = 300)]
    rollout_timeout: u64,

    /// On a cluster, if the new pods do not become ready, `kubectl rollout undo` back to
    /// the revision before.
    #[arg(long)]
    rollback_on_failure: bool,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl ShipCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let target = choose(self.target.target, sh, &self.settings)?;
        let options = ShipOptions {
            port: self.port,
            from_source: self.from_source,
            model: self.model,
            rollout: Rollout {
                timeout: self.rollout_timeout,
                rollback_on_failure: self.rollback_on_failure,
            },
        };
        target.ship_plan(&options)?.execute(dry_run)
    }
}
