//! The Docker engine: a first step that fails in one line when it cannot be reached.

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::core::plan::{Plan, query};
use crate::core::tools::which;

pub(crate) fn add_engine_check<'a, C>(sh: &'a Shell, plan: &mut Plan<'a, C>) {
    plan.check("check that the Docker engine answers", move |_| {
        let format = "{{.Server.Version}}";
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
