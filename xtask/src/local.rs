//! The `local` target: the release binary running in the background on this machine.
//!
//! What `ship` started is recorded in `instance.json` next to its log, under
//! `target/xtask/local/` (or `$XTASK_STATE_DIR`), so `smoke` and `down` — and the next
//! `ship`, which replaces it — can find it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use crate::plan::Plan;
use crate::smoke::{self, add_smoke_test};

/// How long the service may take to answer `/readyz` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping service may take: its drain deadline (20 s) plus margin.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Local {
    state_dir: PathBuf,
    binary: PathBuf,
}

/// What `ship` started.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) pid: u32,
    pub(crate) port: u16,
    pub(crate) url: String,
    pub(crate) log: PathBuf,
}

impl Local {
    pub(crate) fn new(sh: &Shell) -> Self {
        let state_dir = sh
            .var("XTASK_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| target_dir(sh).join("xtask/local"));
        Local {
            state_dir,
            binary: target_dir(sh).join("release/score-service"),
        }
    }

    fn instance_file(&self) -> PathBuf {
        self.state_dir.join("instance.json")
    }

    fn log_file(&self) -> PathBuf {
        self.state_dir.join("service.log")
    }

    /// The instance `ship` started, if it is still running.
    pub(crate) fn running(&self) -> anyhow::Result<Option<Instance>> {
        let path = self.instance_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("read {}", path.display())),
        };
        let instance: Instance = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an instance record: delete it", path.display()))?;
        Ok(is_our_service(instance.pid).then_some(instance))
    }

    /// The running instance's URL, or an error that says how to get one.
    pub(crate) fn running_url(&self) -> anyhow::Result<String> {
        match self.running()? {
            Some(instance) => Ok(instance.url),
            None => bail!("no local instance is running: start one with `cargo xtask ship`, or pass --url"),
        }
    }

    /// Build, replace any running instance, start, wait until ready, smoke-test.
    pub(crate) fn ship_plan<'a>(&'a self, sh: &'a Shell, port: u16) -> anyhow::Result<Plan<'a>> {
        let mut plan = Plan::new();
        plan.run(
            cmd!(sh, "cargo build --release --locked --package score-service"),
            "fix the build error above, then run `cargo xtask ship` again",
        );
        if let Some(old) = self.running()? {
            self.add_stop(sh, &mut plan, old);
        }
        let url = format!("http://127.0.0.1:{port}");
        let binary = &self.binary;
        let port_arg = port.to_string();
        let log = self.log_file();
        let record = {
            let (url, log, path) = (url.clone(), log.clone(), self.instance_file());
            move |pid| {
                let instance = Instance { pid, port, url, log };
                std::fs::write(&path, serde_json::to_string_pretty(&instance)?)
                    .with_context(|| format!("record the instance in {}", path.display()))
            }
        };
        plan.start(
            cmd!(
                sh,
                "{binary} --host 127.0.0.1 --port {port_arg} --log-format text"
            ),
            log,
            record,
        );
        plan.check(
            format!("wait up to {READY_TIMEOUT:?} for {url}/readyz to answer 200"),
            || self.wait_ready(),
        );
        add_smoke_test(&mut plan, url.clone(), Duration::from_secs(10));
        plan.check(format!("print how to reach {url}"), move || {
            println!("The service is running at {url}");
            println!(
                "Try it:  curl -X POST {url}/score -H 'Content-Type: application/json' -d '{}'",
                smoke::REQUEST
            );
            println!("Stop it: cargo xtask down");
            Ok(())
        });
        Ok(plan)
    }

    /// Stops the running instance, if any.
    pub(crate) fn down_plan<'a>(&'a self, sh: &'a Shell) -> anyhow::Result<Plan<'a>> {
        let mut plan = Plan::new();
        match self.running()? {
            Some(instance) => self.add_stop(sh, &mut plan, instance),
            None => {
                plan.check("nothing to stop: no local instance is running", || Ok(()));
            }
        }
        Ok(plan)
    }

    /// SIGTERM, then wait for the drain to finish and the process to exit.
    fn add_stop<'a>(&'a self, sh: &'a Shell, plan: &mut Plan<'a>, instance: Instance) {
        let pid = instance.pid.to_string();
        plan.run(
            cmd!(sh, "kill -TERM {pid}"),
            "the process may have exited already: run `cargo xtask down` again",
        );
        plan.check(
            format!("wait up to {STOP_TIMEOUT:?} for process {pid} to exit"),
            move || {
                wait_for_exit(instance.pid, STOP_TIMEOUT)?;
                let path = self.instance_file();
                std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))
            },
        );
    }

    /// Polls `/readyz` until it answers 200; fails early, quoting the log, if the
    /// process dies first (a port already in use, say).
    fn wait_ready(&self) -> anyhow::Result<()> {
        let instance = self.running()?;
        let Some(instance) = instance else {
            bail!(
                "the service exited at start-up; its log says:\n{}",
                log_tail(&self.log_file())
            );
        };
        let agent = smoke::agent(Duration::from_secs(2));
        let url = format!("{}/readyz", instance.url);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !is_our_service(instance.pid) {
                bail!(
                    "the service exited before it became ready; its log says:\n{}",
                    log_tail(&instance.log)
                );
            }
            let last = match smoke::get(&agent, &url) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {body}"),
                Err(err) => err,
            };
            if Instant::now() > deadline {
                bail!(
                    "{url} was not ready after {READY_TIMEOUT:?}: last answer: {last}\n  next: read {}",
                    instance.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn target_dir(sh: &Shell) -> PathBuf {
    sh.var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target"))
}

/// Whether `pid` is a live (not zombie) score-service process: a pid file can outlive
/// its process, and the pid can be reused by something we must not signal.
fn is_our_service(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .next()
                .is_some_and(|argv0| argv0.ends_with(b"score-service"))
        })
        .unwrap_or(false)
}

fn wait_for_exit(pid: u32, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while is_our_service(pid) {
        if Instant::now() > deadline {
            bail!("process {pid} is still running {timeout:?} after SIGTERM\n  next: `kill -KILL {pid}`");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(10)..]
                .iter()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(err) => format!("    (cannot read {}: {err})", log.display()),
    }
}
