//! A real OCI registry (the CNCF distribution registry, Debian's `docker-registry`) on
//! loopback, storing under `<state>/registry/`. The docker target pushes to it and runs
//! containers from it by digest, as a cluster would.

use std::time::Duration;

use xshell::{Shell, cmd};

use crate::core::paths::state_dir;
use crate::core::plan::Plan;
use crate::core::tools::ensure_apt_package;
use crate::steps::daemon::Daemon;

pub(crate) const DEFAULT_PORT: u16 = 5001;

pub(crate) struct LocalRegistry {
    daemon: Daemon,
}

/// How long the registry may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl LocalRegistry {
    pub(crate) fn new(sh: &Shell) -> Self {
        LocalRegistry {
            daemon: Daemon::new(state_dir(sh).join("registry"), "docker-registry"),
        }
    }

    /// Adds the steps that stop the registry, or says nothing runs.
    pub(crate) fn add_down<'a, C>(&'a self, sh: &'a Shell, plan: &mut Plan<'a, C>) -> anyhow::Result<()> {
        match self.daemon.running()? {
            Some(instance) => self.daemon.add_stop(sh, plan, instance, STOP_TIMEOUT),
            None => {
                plan.check("nothing to stop: the local registry is not running", |_| Ok(()));
            }
        }
        Ok(())
    }

    /// `localhost:PORT` of the running registry, or of the one `add_up` would start.
    /// Docker treats loopback registries as trusted without TLS.
    pub(crate) fn address(&self) -> anyhow::Result<String> {
        let port = self
            .daemon
            .running()?
            .map_or(DEFAULT_PORT, |instance| instance.port);
        Ok(format!("localhost:{port}"))
    }

    /// Adds the steps that start the registry, unless it is already running; returns
    /// its address.
    pub(crate) fn add_up<'a, C>(
        &'a self,
        sh: &'a Shell,
        plan: &mut Plan<'a, C>,
        port: u16,
    ) -> anyhow::Result<String> {
        if let Some(instance) = self.daemon.running()? {
            let address = format!("localhost:{}", instance.port);
            plan.check(
                format!("the local registry already runs at {address}"),
                |_| Ok(()),
            );
            return Ok(address);
        }
        ensure_apt_package(sh, plan, "docker-registry", "docker-registry");
        let dir = self.daemon.dir();
        let config = dir.join("config.yml");
        let content = format!(
            "# Written by `cargo xtask registry up`.\n\
             version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        plan.check(format!("write {}", config.display()), {
            let config = config.clone();
            move |_| {
                std::fs::create_dir_all(config.parent().expect("config sits in a directory"))?;
                std::fs::write(&config, content).map_err(Into::into)
            }
        });
        self.daemon.add_start(
            plan,
            cmd!(sh, "docker-registry serve {config}"),
            port,
            "/v2/",
            Duration::from_secs(15),
        );
        Ok(format!("localhost:{port}"))
    }
}
