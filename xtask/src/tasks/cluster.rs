//! `cargo xtask cluster-up` and `cluster-down`: the GKE cluster and the Artifact Registry
//! repository, created only when missing; deleted only after asking (or `--yes`).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use clap::Args;
use xshell::Shell;

use crate::core::settings::{Gke, SettingsArgs};
use crate::steps::gcloud;

#[derive(Args, Debug)]
pub(crate) struct ClusterUpCmd {
    #[command(flatten)]
    settings: SettingsArgs,
}

impl ClusterUpCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let settings = Gke::resolve(sh, &self.settings)?;
        gcloud::up_plan(sh, &settings).execute(dry_run)
    }
}

#[derive(Args, Debug)]
pub(crate) struct ClusterDownCmd {
    /// Delete without asking.
    #[arg(long)]
    yes: bool,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl ClusterDownCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let settings = Gke::resolve(sh, &self.settings)?;
        if !dry_run && !self.yes {
            confirm(&settings)?;
        }
        gcloud::down_plan(sh, &settings).execute(dry_run)
    }
}

/// Asks on the terminal before deleting anything.
fn confirm(settings: &Gke) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "cluster-down deletes cluster {} and repository {}: pass --yes to do it without a terminal to ask on",
            settings.cluster,
            settings.repository
        );
    }
    print!(
        "Delete cluster {} ({}) and Artifact Registry repository {} in project {}? [y/N] ",
        settings.cluster, settings.location, settings.repository, settings.project
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("nothing deleted");
    }
    Ok(())
}
