//! What the bench learns as it runs (its servers' pids, every figure), and the names and
//! sizes its plan and its report share.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;

use crate::steps::servers::Servers;
use crate::steps::wrk::Figures;

/// What the bench learns as it runs: its servers' pids, and every figure.
#[derive(Default)]
pub(super) struct Bench {
    pub(super) pids: BTreeMap<&'static str, u32>,
    /// Values per row of each model's input, as the service's loader reads it.
    pub(super) row_sizes: BTreeMap<String, usize>,
    pub(super) measurements: Vec<Measurement>,
    /// Requests per second of the service and the floor, loaded in turn.
    pub(super) alternation: Vec<(&'static str, f64)>,
    pub(super) container: ContainerFigures,
    pub(super) timings: Vec<Timing>,
    /// Peak resident memory of a server holding a repository: (server, models, MiB).
    pub(super) memory: Vec<(&'static str, usize, f64)>,
}

/// One server under one load.
#[derive(Serialize, Debug, Clone)]
pub(super) struct Measurement {
    pub(super) server: &'static str,
    pub(super) model: String,
    /// What was sent: the endpoint and how many rows.
    pub(super) load: String,
    #[serde(flatten)]
    pub(super) figures: Figures,
    pub(super) peak_rss_mib: f64,
}

/// A runtime's own time per run, no HTTP.
#[derive(Serialize, Debug, Clone)]
pub(super) struct Timing {
    pub(super) model: String,
    pub(super) runtime: &'static str,
    pub(super) rows: usize,
    pub(super) median_us: f64,
}

/// What the image costs: its size, and how long a container takes to become ready.
#[derive(Serialize, Debug, Default, Clone)]
pub(super) struct ContainerFigures {
    pub(super) image_size_mib: f64,
    /// `docker run` to the first 200 from /readyz, each run.
    pub(super) start_to_ready_ms: Vec<f64>,
    pub(super) median_start_to_ready_ms: f64,
}

/// Rows per run when timing the runtimes alone: trees, and networks.
pub(super) const TIMED_ROWS: [usize; 3] = [1, 64, 1024];
pub(super) const TIMED_NETWORK_ROWS: [usize; 2] = [1, 64];
/// Rounds of the service and the floor loaded in turn.
pub(super) const ALTERNATIONS: usize = 5;

/// The names the echo report reads the service's and the floor's figures by.
pub(super) const SERVICE: &str = "score-service";
pub(super) const FLOOR: &str = "hyper-floor";

impl Servers for Bench {
    fn pids(&mut self) -> &mut BTreeMap<&'static str, u32> {
        &mut self.pids
    }
}

impl Bench {
    /// Values per row of `model`'s input, read earlier in the plan.
    pub(super) fn row_size(&self, model: &str) -> anyhow::Result<usize> {
        self.row_sizes
            .get(model)
            .copied()
            .with_context(|| format!("no row size was read for {model}"))
    }
}
