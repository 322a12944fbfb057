//! `cargo xtask ship`: put the service on the target, wait until it answers, smoke-test.

use anyhow::bail;
use clap::Args;
use xshell::Shell;

use crate::core::model_file::ModelArgs;
use crate::core::settings::SettingsArgs;
use crate::core::target::{TargetArg, TargetKind};
use crate::steps::canary::CanaryOptions;
use crate::steps::deploy::Rollout;
use crate::steps::tracks::Thresholds;
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

    /// Local target: run the optimised build images and benches use (4-6 minutes cold on
    /// 2 cores, about 5x the requests per second) instead of the quick debug build.
    #[arg(long)]
    release: bool,

    #[command(flatten)]
    model: ModelArgs,

    #[command(flatten)]
    rollout: Rollout,

    #[command(flatten)]
    canary: CanaryArgs,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl ShipCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let canary = self.canary.options();
        if self.release && self.target.target != TargetKind::Local {
            bail!("--release chooses the local target's build; images are always the optimised build");
        }
        if canary.is_some() && !matches!(self.target.target, TargetKind::Gke | TargetKind::Kube) {
            bail!("--canary releases beside a stable track on a cluster: use --target gke or --target kube");
        }
        let target = choose(self.target.target, sh, &self.settings)?;
        let options = ShipOptions {
            port: self.port,
            from_source: self.from_source,
            release: self.release,
            model: self.model.chosen()?,
            rollout: self.rollout,
            canary,
        };
        target.ship_plan(&options)?.execute(dry_run)
    }
}

/// A canary release's flags: how much traffic, for how long, and what it must hold.
#[derive(Args, Debug)]
struct CanaryArgs {
    /// On a cluster, release beside the stable track first, as a canary taking about this
    /// share of requests (its share of ready pods), analysed, then promoted or aborted.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
    canary: Option<u8>,

    /// How long the analysis watches both tracks.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, requires = "canary")]
    canary_duration: std::time::Duration,

    /// A /score body (`{"X": …}`) to send both tracks, with `"expected": {"score": …}` for
    /// the answer the canary must give; without `expected`, the canary must agree with the
    /// stable track. Default: the smoke row.
    #[arg(long, value_name = "FILE", requires = "canary")]
    check_rows: Option<std::path::PathBuf>,

    /// How far (relative to the larger magnitude, at least 1) a canary's number may be
    /// from the stable track's or the expected one.
    #[arg(long, default_value_t = 1e-6, requires = "canary")]
    agree_within: f64,

    /// Most 5xx answers, in percentage points of requests above the stable track's.
    #[arg(long, default_value_t = 1.0, requires = "canary")]
    max_server_error_rate: f64,

    /// Most 4xx answers, in percentage points of requests above the stable track's.
    #[arg(long, default_value_t = 5.0, requires = "canary")]
    max_client_error_rate: f64,

    /// Most p99 latency, as a multiple of the stable track's…
    #[arg(long, default_value_t = 1.5, requires = "canary")]
    max_latency_ratio: f64,

    /// …counted only once it is also this many milliseconds more.
    #[arg(long, default_value_t = 5.0, requires = "canary")]
    latency_slack_ms: f64,

    /// Fewest requests the canary must answer during the analysis.
    #[arg(long, default_value_t = 20, requires = "canary")]
    min_canary_requests: u64,
}

impl CanaryArgs {
    fn options(&self) -> Option<CanaryOptions> {
        Some(CanaryOptions {
            percent: self.canary?,
            duration: self.canary_duration,
            check_rows: self.check_rows.clone(),
            tolerance: self.agree_within,
            thresholds: Thresholds {
                max_server_error_rate: self.max_server_error_rate / 100.0,
                max_client_error_rate: self.max_client_error_rate / 100.0,
                max_latency_ratio: self.max_latency_ratio,
                latency_slack_ms: self.latency_slack_ms,
                min_requests: self.min_canary_requests as f64,
            },
        })
    }
}
