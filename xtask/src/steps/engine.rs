//! The Docker engine: a first step that fails in one line when it cannot be reached, and
//! for CI, a set-up step that starts an installed engine that is not running.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::core::paths::target_dir;
use crate::core::plan::{Plan, query};
use crate::core::process::Started;
use crate::core::tools::{is_root, which};

/// What `docker version` prints of the engine: nothing, and a failure, when none answers.
const ENGINE_VERSION: &str = "{{.Server.Version}}";

/// How long a freshly started engine may take to answer.
const ENGINE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Plans, for a machine we set up ourselves: when the engine does not answer, no
/// DOCKER_HOST names another one, and we run as root with `dockerd` installed (a CI
/// machine whose daemon is not running), start it in the background, its log under
/// `target/`, and wait until it answers. Then the usual check, which names what to do in
/// every other case. Nothing runs in a dry run.
pub(crate) fn add_engine_start<'a, C>(sh: &'a Shell, plan: &mut Plan<'a, C>) {
    let format = ENGINE_VERSION;
    let log = target_dir(sh).join("dockerd.log");
    plan.when(
        cmd!(sh, "docker version --format {format}"),
        "the Docker engine does not answer, DOCKER_HOST is unset, we run as root and dockerd is installed",
        |_, probe| {
            Ok(!probe.success
                && std::env::var_os("DOCKER_HOST").is_none()
                && is_root()
                && which("dockerd").is_some())
        },
        |then| {
            then.start(
                cmd!(sh, "dockerd"),
                log.clone(),
                None,
                |_, _| Ok(()),
                format!("wait up to {ENGINE_START_TIMEOUT:?} for the Docker engine to answer"),
                move |_, pid| wait_for_engine(sh, pid, &log),
            );
        },
    );
    add_engine_check(sh, plan);
}

fn wait_for_engine(sh: &Shell, pid: u32, log: &Path) -> anyhow::Result<()> {
    let format = ENGINE_VERSION;
    let dockerd = Started {
        pid,
        program: "dockerd",
        log,
    };
    dockerd.wait_until_ready(
        "the Docker engine",
        ENGINE_START_TIMEOUT,
        Duration::from_millis(200),
        || {
            let output = cmd!(sh, "docker version --format {format}")
                .quiet()
                .ignore_status()
                .output()
                .map_err(|err| err.to_string())?;
            if output.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(stderr.lines().last().unwrap_or("no answer").to_owned())
        },
    )
}

pub(crate) fn add_engine_check<'a, C>(sh: &'a Shell, plan: &mut Plan<'a, C>) {
    plan.check("check that the Docker engine answers", move |_| {
        let format = ENGINE_VERSION;
        match query(cmd!(sh, "docker version --format {format}").ignore_stderr()) {
            Ok(_) => Ok(()),
            Err(err) if which("docker").is_none() => {
                bail!("docker is not installed ({err}): install Docker Engine, https://docs.docker.com/engine/install/")
            }
            Err(_) => bail!(
                "the Docker engine is not reachable: start it (`sudo systemctl start docker`) or point DOCKER_HOST at one"
            ),
        }
    });
}
