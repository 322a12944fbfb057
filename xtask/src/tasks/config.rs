//! `cargo xtask config`: the deployment settings in force, and where each came from.

use clap::Args;
use xshell::Shell;

use crate::core::plan::Plan;
use crate::core::settings::{Settings, SettingsArgs};

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
                let (settings, sources) = Settings::resolve(sh, &self.settings)?;
                let width = sources.iter().map(|(key, ..)| key.len()).max().unwrap_or(0);
                for (key, value, source) in &sources {
                    println!("{key:width$}  {value:24}  ({source})");
                }
                println!("{:width$}  {}  (derived)", "image_repository", settings.image_repository());
                Ok(())
            },
        );
        plan.execute(dry_run)
    }
}
