//! Finding and installing the programs tasks need.
//!
//! Debian packages are installed with apt when we run as root (as CI does); otherwise the
//! error gives the exact command. Python tools go into one venv under `target/`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::core::paths::VENV;
use crate::core::plan::Plan;

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

/// Whether we run as root (CI does; GitHub's runners do not).
pub(crate) fn is_root() -> bool {
    // The effective uid is the second field of the Uid line.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Plans the installation of Debian `package` when `program` is missing: with apt as
/// root, through `sudo -n` where sudo asks no password, and otherwise a step that stops
/// the task with the exact command to run. Nothing is refused while the plan is built,
/// so a dry run never needs root.
pub(crate) fn ensure_apt_package<'a, C>(sh: &'a Shell, plan: &mut Plan<'a, C>, program: &str, package: &str) {
    if which(program).is_some() {
        return;
    }
    let next =
        format!("install {package} by hand (`sudo apt-get install -y {package}`) and run this task again");
    if is_root() {
        plan.run(cmd!(sh, "apt-get update -qq"), next.clone()).run(
            cmd!(sh, "apt-get install -y -qq --no-install-recommends {package}"),
            next,
        );
        return;
    }
    if which("sudo").is_some() {
        // GitHub's runners are not root, and their sudo asks no password: install through
        // it there. Where sudo would ask, the check below stops with the command to run.
        plan.when(
            cmd!(sh, "sudo -n true"),
            "sudo asks no password",
            |_, probe| Ok(probe.success),
            |then| {
                then.run(cmd!(sh, "sudo -n apt-get update -qq"), next.clone())
                    .run(
                        cmd!(
                            sh,
                            "sudo -n apt-get install -y -qq --no-install-recommends {package}"
                        ),
                        next,
                    );
            },
        );
    }
    let command = format!("sudo apt-get install -y {package}");
    let program = program.to_owned();
    plan.check(
        format!("find {program}, or stop: `{command}` installs it"),
        move |_| {
            if which(&program).is_none() {
                bail!("`{program}` is not installed: run `{command}`, then this task again");
            }
            Ok(())
        },
    );
}

/// Plans the venv and the packages of `requirements` in it; returns the venv's bin dir.
/// A stamp file holding the requirements installed last makes a repeated run free.
pub(crate) fn ensure_python_tools<'a, C>(
    sh: &'a Shell,
    plan: &mut Plan<'a, C>,
    requirements: &str,
) -> PathBuf {
    let venv = Path::new(VENV);
    let bin = venv.join("bin");
    if !sh.path_exists(bin.join("python")) {
        if which("python3").is_none() {
            plan.check("find python3", |_| {
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
        plan.check(format!("record {requirements} as installed"), move |_| {
            std::fs::write(&stamp, wanted).map_err(Into::into)
        });
    }
    bin
}
