//! `cargo xtask tools`: what GKE delivery needs, its versions, and how to get what is
//! missing; whether gcloud can authenticate; given GKE, whether the IAM policies grant
//! you and the nodes the roles cluster-up and ship need; and, given a cluster target whose
//! context exists, whether you may do there what the plans do (`kubectl auth can-i`).

use anyhow::bail;
use clap::Args;
use xshell::{Shell, cmd};

use crate::core::plan::{Plan, query};
use crate::core::settings::{Settings, SettingsArgs};
use crate::core::target::{TargetArg, TargetKind};
use crate::core::tools::which;
use crate::steps::iam::add_iam_checks;
use crate::steps::kustomize;
use crate::targets::cluster::Cluster;

#[derive(Args, Debug)]
pub(crate) struct ToolsCmd {
    /// With `gke` or `kube`, also ask that cluster whether you may do what the plans do.
    #[command(flatten)]
    target: TargetArg,

    #[command(flatten)]
    settings: SettingsArgs,
}

/// A tool, how to ask its version, and how to install it.
struct Tool {
    name: &'static str,
    version_args: &'static [&'static str],
    install: &'static str,
    /// Needed only for GKE.
    google: bool,
}

const TOOLS: [Tool; 4] = [
    Tool {
        name: "gcloud",
        version_args: &["--version"],
        install: "install the Google Cloud SDK: https://cloud.google.com/sdk/docs/install",
        google: true,
    },
    Tool {
        name: "kubectl",
        version_args: &["version", "--client"],
        install: "`gcloud components install kubectl` (or your distribution's kubectl package)",
        google: false,
    },
    Tool {
        name: "gke-gcloud-auth-plugin",
        version_args: &["--version"],
        install: "`gcloud components install gke-gcloud-auth-plugin` (kubectl needs it to talk to GKE)",
        google: true,
    },
    Tool {
        name: "docker",
        version_args: &["--version"],
        install: "install Docker Engine: https://docs.docker.com/engine/install/",
        google: false,
    },
];

impl ToolsCmd {
    /// One step per tool, each noting what is missing in the plan's context; the last
    /// step fails if anything is.
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        // Settings are resolved (and refused) before anything runs.
        let (cluster, gke) = match self.target.target {
            TargetKind::Gke => {
                let (settings, gke) = Settings::resolve_with_gke(sh, &self.settings)?;
                (Some(Cluster::of_gke(sh, settings, &gke)), Some(gke))
            }
            TargetKind::Kube => (Some(Cluster::kube(sh, &self.settings)?), None),
            TargetKind::Local | TargetKind::Docker => (None, None),
        };
        // Any other cluster needs nothing of Google's.
        let google = self.target.target != TargetKind::Kube;
        let mut plan: Plan<Vec<String>> = Plan::new();
        for tool in TOOLS.iter().filter(|tool| google || !tool.google) {
            let asked = format!("{} {}", tool.name, tool.version_args.join(" "));
            plan.check(format!("ask `{asked}`"), move |missing| {
                let version = which(tool.name)
                    .and_then(|_| query(sh.cmd(tool.name).args(tool.version_args).ignore_stderr()).ok());
                match version.as_deref().and_then(|v| v.lines().next()) {
                    Some(line) => println!("{:24} {line}", tool.name),
                    None => {
                        println!("{:24} MISSING: {}", tool.name, tool.install);
                        missing.push(tool.name.to_owned());
                    }
                }
                Ok(())
            });
        }
        plan.check("find the project-local kustomize (`cargo xtask install-kustomize`)", move |_| {
            match kustomize::installed(sh) {
                Some(kustomize) => {
                    let version = query(cmd!(sh, "{kustomize} version")).unwrap_or_default();
                    println!("{:24} {} ({})", "kustomize", version.trim(), kustomize.display());
                }
                None => println!(
                    "{:24} built into kubectl (`kubectl kustomize`); `cargo xtask install-kustomize` pins one",
                    "kustomize"
                ),
            }
            Ok(())
        });
        if google {
            plan.check(
                "ask `gcloud auth print-access-token` whether gcloud can authenticate",
                move |missing| {
                    match gcloud_auth(sh) {
                        Ok(how) => println!("{:24} {how}", "gcloud authentication"),
                        Err(next) => {
                            println!("{:24} NOT AUTHENTICATED: {next}", "gcloud authentication");
                            missing.push("gcloud authentication".to_owned());
                        }
                    }
                    Ok(())
                },
            );
        }
        if let Some(gke) = &gke {
            add_iam_checks(sh, &mut plan, gke);
        }
        if let Some(cluster) = &cluster {
            cluster.add_access_checks(&mut plan);
        }
        plan.check("fail if anything above is missing", |missing| {
            if !missing.is_empty() {
                bail!("missing: {}; see above for how to get each", missing.join(", "));
            }
            Ok(())
        });
        plan.execute(dry_run)
    }
}

/// Whether gcloud can get an access token — however it is configured to: an account, an
/// access-token file or a credential-file override (CI's Workload Identity Federation).
/// gcloud answers for itself; we only translate a refusal.
fn gcloud_auth(sh: &Shell) -> Result<String, String> {
    if which("gcloud").is_none() {
        return Err("gcloud is missing".into());
    }
    eprintln!("$ gcloud auth print-access-token --quiet");
    let output = cmd!(sh, "gcloud auth print-access-token --quiet")
        .quiet()
        .ignore_status()
        .secret()
        .output();
    let output = output.map_err(|err| err.to_string())?;
    if output.status.success() {
        let how = if sh.var("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE").is_ok() {
            "yes (access token file)"
        } else if sh.var("CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE").is_ok() {
            "yes (credential file override)"
        } else {
            "yes"
        };
        return Ok(how.into());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(
        if stderr.contains("You do not currently have an active account selected") {
            "run `gcloud auth login` (people) or authenticate with Workload Identity Federation (CI)".into()
        } else {
            format!("gcloud auth print-access-token failed: {}", stderr.trim())
        },
    )
}
