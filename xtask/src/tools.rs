//! Finding and installing the programs tasks need.
//!
//! Debian packages are installed with apt when we run as root (as CI does); otherwise the
//! error gives the exact command. Python tools go into one venv under `target/`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::plan::Plan;

/// The venv that holds every Python tool the tasks use.
pub(crate) const VENV: &str = "target/venv";

/// The first `program` on PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    // The effective uid is the second field of the Uid line.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Plans the installation of Debian `package` when `program` is missing.
pub(crate) fn ensure_apt_package<'a>(
    sh: &'a Shell,
    plan: &mut Plan<'a>,
    program: &str,
    package: &str,
) -> anyhow::Result<()> {
    if which(program).is_some() {
        return Ok(());
    }
    if !is_root() {
        bail!("`{program}` is not installed: run `sudo apt-get install -y {package}`, then this task again");
    }
    let next = format!("install {package} by hand (`apt-get install -y {package}`) and run this task again");
    plan.run(cmd!(sh, "apt-get update -qq"), next.clone()).run(
        cmd!(sh, "apt-get install -y -qq --no-install-recommends {package}"),
        next,
    );
    Ok(())
}

/// Plans the venv and the packages of `requirements` in it; returns the venv's bin dir.
/// A stamp file holding the requirements installed last makes a repeated run free.
pub(crate) fn ensure_python_tools<'a>(sh: &'a Shell, plan: &mut Plan<'a>, requirements: &str) -> PathBuf {
    let venv = Path::new(VENV);
    let bin = venv.join("bin");
    if !sh.path_exists(bin.join("python")) {
        if which("python3").is_none() {
            plan.check("find python3", || {
                bail!("python3 is not installed: install Python 3.9 or newer (Debian: apt-get install -y python3 python3-venv)")
            });
        }
        plan.run(
            cmd!(sh, "python3 -m venv {venv}"),
            "on Debian, `apt-get install -y python3-venv`; then run this task again",
        );
    }
    let wanted = sh.read_file(requirements).unwrap_or_default();
    let stamp = venv.join(format!(".installed-{}", requirements.replace('/', "_")));
    if sh.read_file(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let pip = bin.join("pip");
        plan.run(
            cmd!(
                sh,
                "{pip} install --quiet --disable-pip-version-check -r {requirements}"
            ),
            "check that PyPI is reachable, then run this task again",
        );
        plan.check(format!("record {requirements} as installed"), move || {
            std::fs::write(&stamp, wanted).map_err(Into::into)
        });
    }
    bin
}

/// Where project-local tools go (`target/tools`, or `$XTASK_TOOLS_DIR`).
pub(crate) fn tools_dir(sh: &Shell) -> PathBuf {
    sh.var("XTASK_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/tools"))
}

/// `cargo xtask tools`: what GKE delivery needs, its versions, and how to get what is missing.
#[derive(clap::Args, Debug)]
pub(crate) struct ToolsCmd {}

/// A tool, how to ask its version, and how to install it.
struct Tool {
    name: &'static str,
    version_args: &'static [&'static str],
    install: &'static str,
}

const TOOLS: [Tool; 4] = [
    Tool {
        name: "gcloud",
        version_args: &["--version"],
        install: "install the Google Cloud SDK: https://cloud.google.com/sdk/docs/install",
    },
    Tool {
        name: "kubectl",
        version_args: &["version", "--client"],
        install: "`gcloud components install kubectl` (or your distribution's kubectl package)",
    },
    Tool {
        name: "gke-gcloud-auth-plugin",
        version_args: &["--version"],
        install: "`gcloud components install gke-gcloud-auth-plugin` (kubectl needs it to talk to GKE)",
    },
    Tool {
        name: "docker",
        version_args: &["--version"],
        install: "install Docker Engine: https://docs.docker.com/engine/install/",
    },
];

impl ToolsCmd {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        for tool in &TOOLS {
            let version = which(tool.name).and_then(|_| {
                crate::plan::query(sh.cmd(tool.name).args(tool.version_args).ignore_stderr()).ok()
            });
            match version.as_deref().and_then(|v| v.lines().next()) {
                Some(line) => println!("{:24} {line}", tool.name),
                None => {
                    println!("{:24} MISSING: {}", tool.name, tool.install);
                    missing.push(tool.name);
                }
            }
        }
        if let Some(kustomize) = crate::kustomize::installed(sh) {
            let version = crate::plan::query(cmd!(sh, "{kustomize} version")).unwrap_or_default();
            println!("{:24} {} ({})", "kustomize", version.trim(), kustomize.display());
        } else {
            println!(
                "{:24} built into kubectl (`kubectl kustomize`); `cargo xtask install-kustomize` pins one",
                "kustomize"
            );
        }
        match gcloud_auth(sh) {
            Ok(how) => println!("{:24} {how}", "gcloud authentication"),
            Err(next) => {
                println!("{:24} NOT AUTHENTICATED: {next}", "gcloud authentication");
                missing.push("gcloud authentication");
            }
        }
        if !missing.is_empty() {
            bail!("missing: {}; see above for how to get each", missing.join(", "));
        }
        Ok(())
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
