//! `cargo xtask config`: the deployment settings in force, and where each came from.

use clap::Args;
use xshell::Shell;

use crate::core::plan::Plan;
use crate::core::settings::{Given, SettingsArgs};
use crate::core::target::{ClusterKind, ClusterTargetArg};
use crate::steps::kubectl::current_context;

#[derive(Args, Debug)]
pub(crate) struct ConfigCmd {
    #[command(flatten)]
    target: ClusterTargetArg,

    #[command(flatten)]
    settings: SettingsArgs,
}

impl ConfigCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let kind = self.target.target;
        let mut plan: Plan = Plan::new();
        let gcloud = if kind == ClusterKind::Gke {
            " (asking `gcloud config get project` when none names the project)"
        } else {
            ""
        };
        plan.check(
            format!("resolve the settings from flags, XTASK_* variables and deploy.yaml{gcloud}, and print each with where it came from"),
            move |_| {
                // Every setting is listed, set or not, before any is judged.
                let mut given = Given::gather(sh, &self.settings, kind == ClusterKind::Gke)?;
                let width = "image_repository".len();
                for (key, value) in given.listed() {
                    match value {
                        Some((value, source)) => println!("{key:width$}  {value:24}  ({source})"),
                        None if key == "replicas" => {
                            println!("{key:width$}  {:24}  (the overlay's manifests)", "(the overlay's)")
                        }
                        None => println!("{key:width$}  {:24}  (not set)", "-"),
                    }
                }
                let settings = given.deploy();
                let image = settings.as_ref().map(|s| s.image.clone()).unwrap_or_default();
                let (registry, context) = match kind {
                    ClusterKind::Gke => {
                        let gke = given.gke();
                        let settings = given.finish(settings.zip(gke))?;
                        let (settings, gke) = settings;
                        (
                            settings.registry.unwrap_or_else(|| gke.registry()),
                            settings.context.unwrap_or_else(|| gke.context()),
                        )
                    }
                    ClusterKind::Kube => {
                        let settings = given.finish(settings)?;
                        let context = match settings.context {
                            Some(context) => context,
                            None => current_context(sh)?,
                        };
                        let registry = settings
                            .registry
                            .unwrap_or_else(|| "(set --registry)".into());
                        (registry, context)
                    }
                };
                println!("{:width$}  {registry}/{image}  (derived)", "image_repository");
                println!("{:width$}  {context}  (derived)", "kubectl_context");
                Ok(())
            },
        );
        plan.execute(dry_run)
    }
}
