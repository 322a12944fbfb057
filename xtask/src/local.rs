//! The `local` target: the release binary running in the background on this machine,
//! recorded under `<state>/local/` so `smoke` and `down` — and the next `ship`, which
//! replaces it — can find it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::daemon::Daemon;
use crate::plan::Plan;
use crate::ship::ModelFile;
use crate::smoke::add_smoke_test;

/// How long the service may take to answer `/readyz` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping service may take: its drain deadline (20 s) plus margin.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Local {
    daemon: Daemon,
    binary: PathBuf,
}

impl Local {
    pub(crate) fn new(sh: &Shell) -> Self {
        Local {
            daemon: Daemon::new(crate::state_dir(sh).join("local"), "score-service"),
            binary: target_dir(sh).join("release/score-service"),
        }
    }

    /// The running instance's URL, or an error that says how to get one.
    pub(crate) fn running_url(&self) -> anyhow::Result<String> {
        match self.daemon.running()? {
            Some(instance) => Ok(instance.url),
            None => bail!("no local instance is running: start one with `cargo xtask ship`, or pass --url"),
        }
    }

    /// Build, replace any running instance, start, wait until ready, smoke-test.
    pub(crate) fn ship_plan<'a>(
        &'a self,
        sh: &'a Shell,
        port: u16,
        model: Option<&ModelFile>,
    ) -> anyhow::Result<Plan<'a>> {
        let mut plan = Plan::new();
        plan.run(
            cmd!(sh, "cargo build --release --locked --package score-service"),
            "fix the build error above, then run `cargo xtask ship` again",
        );
        if let Some(old) = self.daemon.running()? {
            self.daemon.add_stop(sh, &mut plan, old, STOP_TIMEOUT);
        }
        let binary = &self.binary;
        let port_arg = port.to_string();
        let model_args = model
            .map(|m| vec!["--model".into(), m.path.display().to_string()])
            .unwrap_or_default();
        self.daemon.add_start(
            &mut plan,
            cmd!(
                sh,
                "{binary} --host 127.0.0.1 --port {port_arg} --log-format text {model_args...}"
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
            model.map(|m| m.name.clone()),
        );
        add_how_to_reach(&mut plan, url, model.map(|m| m.name.clone()), "cargo xtask down");
        Ok(plan)
    }

    /// Stops the running instance, if any.
    pub(crate) fn down_plan<'a>(&'a self, sh: &'a Shell) -> anyhow::Result<Plan<'a>> {
        let mut plan = Plan::new();
        match self.daemon.running()? {
            Some(instance) => self.daemon.add_stop(sh, &mut plan, instance, STOP_TIMEOUT),
            None => {
                plan.check("nothing to stop: no local instance is running", || Ok(()));
            }
        }
        Ok(plan)
    }
}

/// Adds the closing lines of a `ship`: where the service is, how to try it and stop it.
pub(crate) fn add_how_to_reach(plan: &mut Plan<'_>, url: String, model: Option<String>, stop: &'static str) {
    plan.check(format!("print how to reach {url}"), move || {
        println!("The service is running at {url}");
        match model {
            None => println!(
                "Try it:  curl -X POST {url}/score -H 'Content-Type: application/json' -d '{}'",
                crate::smoke::REQUEST
            ),
            Some(model) => {
                println!("Its model: curl {url}/v2/models/{model}   (then POST /score with rows that wide)")
            }
        }
        println!("Stop it: {stop}");
        Ok(())
    });
}

pub(crate) fn target_dir(sh: &Shell) -> PathBuf {
    sh.var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target"))
}
