//! `cargo xtask config`: the deployment settings in force, and where each came from.

use clap::Args;
use xshell::Shell;

use crate::core::plan::Plan;
use crate::core::settings::{Given, SettingsArgs};

#[derive(Args, Debug)]
pub(crate) struct ConfigCmd {
    #[command(flatten)]
    settings: SettingsArgs,
}

impl ConfigCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let mut plan: Plan = Plan::new();
        plan.check(
            "resolve the settings from flags, XTASK_* variables and deploy.yaml (asking `gcloud config get project` when none names the project), and print each with where it came from",
            move |_| {
                // Every setting is listed, set or not, before any is judged.
                let given = Given::gather(sh, &self.settings)?;
                let listed = given.listed();
                let width = "image_repository".len();
                for (key, value) in &listed {
                    match value {
                        Some((value, source)) => println!("{key:width$}  {value:24}  ({source})"),
                        None if *key == "replicas" => {
                            println!("{key:width$}  {:24}  (the overlay's manifests)", "(the overlay's)")
                        }
                        None => println!("{key:width$}  {:24}  (not set)", "-"),
                    }
                }
                let (settings, _) = given.settings()?;
                println!("{:width$}  {}  (derived)", "image_repository", settings.image_repository());
                Ok(())
            },
        );
        plan.execute(dry_run)
    }
}
