//! `cargo xtask registry up|down`: a real OCI registry (the CNCF distribution registry,
//! Debian's `docker-registry`) on loopback, storing under `<state>/registry/`. The docker
//! target pushes to it and runs containers from it by digest, as a cluster would.

use std::time::Duration;

use clap::{Args, Subcommand};
use xshell::{Shell, cmd};

use crate::daemon::Daemon;
use crate::plan::Plan;
use crate::tools::ensure_apt_package;

pub(crate) const DEFAULT_PORT: u16 = 5001;

#[derive(Args, Debug)]
pub(crate) struct RegistryCmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Start the registry in the background (nothing happens if it already runs).
    Up {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
    },
    /// Stop it; the images it stores stay under target/ for next time.
    Down,
}

impl RegistryCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        let registry = LocalRegistry::new(sh);
        let mut plan = Plan::new();
        match self.action {
            Action::Up { port } => {
                registry.add_up(sh, &mut plan, port)?;
            }
            Action::Down => match registry.daemon.running()? {
                Some(instance) => registry
                    .daemon
                    .add_stop(sh, &mut plan, instance, Duration::from_secs(10)),
                None => {
                    plan.check("nothing to stop: the local registry is not running", || Ok(()));
                }
            },
        }
        plan.execute(dry_run)
    }
}

pub(crate) struct LocalRegistry {
    daemon: Daemon,
}

impl LocalRegistry {
    pub(crate) fn new(sh: &Shell) -> Self {
        LocalRegistry {
            daemon: Daemon::new(crate::state_dir(sh).join("registry"), "docker-registry"),
        }
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
    pub(crate) fn add_up<'a>(
        &'a self,
        sh: &'a Shell,
        plan: &mut Plan<'a>,
        port: u16,
    ) -> anyhow::Result<String> {
        if let Some(instance) = self.daemon.running()? {
            let address = format!("localhost:{}", instance.port);
            plan.check(format!("the local registry already runs at {address}"), || Ok(()));
            return Ok(address);
        }
        ensure_apt_package(sh, plan, "docker-registry", "docker-registry")?;
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
            move || {
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
