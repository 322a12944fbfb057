//! The `local` target: the service running in the background on this machine (the quick
//! debug build, or the optimised one with `--release`),
//! recorded under `<state>/local/` so `smoke` and `down` — and the next `ship`, which
//! replaces it — can find it.

use std::time::Duration;

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::core::http;
use crate::core::model_file::Models;
use crate::core::paths::state_dir;
use crate::core::plan::Plan;
use crate::steps::daemon::Daemon;
use crate::steps::push::Release;
use crate::steps::release::{debug_build, debug_dir, release_build, release_dir};
use crate::steps::smoke::{add_how_to_reach, add_smoke_test, served_at};
use crate::targets::target::{ShipOptions, Target};

/// How long the service may take to answer `/readyz` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping service may take: its drain deadline (20 s) plus margin.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Local<'a> {
    sh: &'a Shell,
    daemon: Daemon,
}

impl<'a> Local<'a> {
    pub(crate) fn new(sh: &'a Shell) -> Self {
        Local {
            sh,
            daemon: Daemon::new(state_dir(sh).join("local"), "score-service"),
        }
    }

    /// The running instance's URL, or an error that says how to get one.
    fn running_url(&self) -> anyhow::Result<String> {
        match self.daemon.running()? {
            Some(instance) => Ok(instance.url),
            None => bail!("no local instance is running: start one with `cargo xtask ship`, or pass --url"),
        }
    }
}

impl Target for Local<'_> {
    /// Build, replace any running instance, start, wait until ready, smoke-test.
    fn ship_plan(&self, options: &ShipOptions) -> anyhow::Result<Plan<'_, Release>> {
        let (sh, port, model) = (self.sh, options.port, options.model.as_ref());
        let mut plan = Plan::new();
        let (build, binary) = if options.release {
            (release_build(sh, &[]), release_dir(sh).join("score-service"))
        } else {
            plan.check(
                "the debug build: quick to build, about a fifth of the optimised build's speed (`--release` runs that one)".to_owned(),
                |_| Ok(()),
            );
            (debug_build(sh), debug_dir(sh).join("score-service"))
        };
        plan.run(
            build,
            "fix the build error above, then run `cargo xtask ship` again",
        );
        if let Some(old) = self.daemon.running()? {
            self.daemon.add_stop(sh, &mut plan, old, STOP_TIMEOUT);
        }
        let binary = &binary;
        let port_arg = port.to_string();
        let model_args = model.map(Models::service_args).unwrap_or_default();
        self.daemon.add_start(
            &mut plan,
            cmd!(
                sh,
                // One port for everything, metrics included: on this machine there is no
                // load balancer to keep them from.
                "{binary} --host 127.0.0.1 --port {port_arg} --metrics-port {port_arg} --log-format text {model_args...}"
            ),
            port,
            "/readyz",
            READY_TIMEOUT,
        );
        let url = format!("http://127.0.0.1:{port}");
        add_smoke_test(
            &mut plan,
            url.clone(),
            Duration::from_secs(10),
            model.map(Models::names).unwrap_or_default(),
        );
        add_how_to_reach(
            &mut plan,
            url,
            model.map(Models::names).unwrap_or_default(),
            "cargo xtask down",
        );
        Ok(plan)
    }

    /// Stops the running instance, if any.
    fn down_plan(&self) -> anyhow::Result<Plan<'_, Release>> {
        let mut plan = Plan::new();
        match self.daemon.running()? {
            Some(instance) => self.daemon.add_stop(self.sh, &mut plan, instance, STOP_TIMEOUT),
            None => {
                plan.check("nothing to stop: no local instance is running", |_| Ok(()));
            }
        }
        Ok(plan)
    }

    fn add_smoke<'s>(
        &'s self,
        plan: &mut Plan<'s, Release>,
        timeout: Duration,
        models: Vec<String>,
    ) -> anyhow::Result<()> {
        add_smoke_test(plan, self.running_url()?, timeout, models);
        Ok(())
    }

    fn status_plan(&self) -> anyhow::Result<Plan<'_, Release>> {
        let mut plan = Plan::new();
        let instance = self.daemon.running()?;
        plan.check("describe the running instance and ask it /readyz", move |_| {
            let Some(instance) = instance else {
                println!(
                    "{:10}local: nothing runs (`cargo xtask ship` starts it)",
                    "target"
                );
                return Ok(());
            };
            // The command line says which binary and which model, as the process sees it.
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", instance.pid)).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            let given: Vec<&str> = args
                .windows(2)
                .filter(|pair| pair[0] == "--model" || pair[0] == "--model-repository")
                .map(|pair| pair[1].as_str())
                .collect();
            let model = if given.is_empty() {
                "identity".to_owned()
            } else {
                given.join(", ")
            };
            let ready = match http::get(
                &http::agent(Duration::from_secs(2)),
                &format!("{}/readyz", instance.url),
            ) {
                Ok((status, _)) => format!("GET /readyz answered {status}"),
                Err(err) => format!("GET /readyz failed: {err}"),
            };
            println!("{:10}local (pid {})", "target", instance.pid);
            println!("{:10}{}", "binary", args.first().map_or("?", String::as_str));
            println!("{:10}{model}", "model");
            println!("{:10}{}", "serving", served_at(&instance.url));
            println!("{:10}{ready}", "ready");
            println!("{:10}{}", "address", instance.url);
            println!("{:10}{}", "log", instance.log.display());
            Ok(())
        });
        Ok(plan)
    }

    fn logs_plan(&self, follow: bool, tail: u32) -> anyhow::Result<Plan<'_, Release>> {
        let sh = self.sh;
        let Some(instance) = self.daemon.running()? else {
            bail!("no local instance is running: start one with `cargo xtask ship`");
        };
        let (log, lines) = (instance.log, tail.to_string());
        let follow = follow.then_some("--follow");
        let mut plan = Plan::new();
        plan.run(
            cmd!(sh, "tail --lines {lines} {follow...} {log}"),
            "the log file is gone: ship again",
        );
        Ok(plan)
    }
}
