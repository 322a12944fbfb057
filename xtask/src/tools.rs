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
