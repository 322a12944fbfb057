//! Programs the xtask leaves running in the background (the local service, the local
//! registry), each recorded in `<state>/<name>/instance.json` beside its log so later
//! tasks can find it, replace it or stop it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use xshell::{Cmd, Shell, cmd};

use crate::plan::Plan;
use crate::smoke;

/// A kind of background program and where its records live.
pub(crate) struct Daemon {
    dir: PathBuf,
    /// The executable's file name, checked before signalling a recorded pid.
    program: &'static str,
}

/// What was started.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) pid: u32,
    pub(crate) port: u16,
    pub(crate) url: String,
    pub(crate) log: PathBuf,
}

impl Daemon {
    pub(crate) fn new(dir: PathBuf, program: &'static str) -> Self {
        Daemon { dir, program }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn instance_file(&self) -> PathBuf {
        self.dir.join("instance.json")
    }

    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.program))
    }

    /// The recorded instance, if it is still running.
    pub(crate) fn running(&self) -> anyhow::Result<Option<Instance>> {
        let path = self.instance_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("read {}", path.display())),
        };
        let instance: Instance = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an instance record: delete it", path.display()))?;
        Ok(is_alive(instance.pid, self.program).then_some(instance))
    }

    /// Adds: start `cmd` in the background, record it, and wait until `ready_path` on
    /// `port` answers 200 (failing early, with the log, if the program exits first).
    pub(crate) fn add_start<'a>(
        &'a self,
        plan: &mut Plan<'a>,
        cmd: Cmd<'a>,
        port: u16,
        ready_path: &'static str,
        ready_timeout: Duration,
    ) {
        let url = format!("http://127.0.0.1:{port}");
        let log = self.log_file();
        let record = {
            let (url, log, path) = (url.clone(), log.clone(), self.instance_file());
            move |pid| {
                let instance = Instance { pid, port, url, log };
                std::fs::write(&path, serde_json::to_string_pretty(&instance)?)
                    .with_context(|| format!("record the instance in {}", path.display()))
            }
        };
        plan.start(cmd, log, record);
        plan.check(
            format!("wait up to {ready_timeout:?} for {url}{ready_path} to answer 200"),
            move || self.wait_ready(ready_path, ready_timeout),
        );
    }

    /// Adds: SIGTERM, wait for the process to exit, forget it.
    pub(crate) fn add_stop<'a>(
        &'a self,
        sh: &'a Shell,
        plan: &mut Plan<'a>,
        instance: Instance,
        timeout: Duration,
    ) {
        let pid = instance.pid.to_string();
        plan.run(
            cmd!(sh, "kill -TERM {pid}"),
            "the process may have exited already: run this task again",
        );
        plan.check(
            format!("wait up to {timeout:?} for process {pid} to exit"),
            move || {
                wait_for_exit(instance.pid, Some(self.program), timeout)?;
                let path = self.instance_file();
                std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))
            },
        );
    }

    fn wait_ready(&self, path: &str, timeout: Duration) -> anyhow::Result<()> {
        let record = self.instance_file();
        let instance: Instance = serde_json::from_str(&std::fs::read_to_string(&record)?)
            .with_context(|| format!("read {}", record.display()))?;
        let agent = smoke::agent(Duration::from_secs(2));
        let url = format!("{}{path}", instance.url);
        let deadline = Instant::now() + timeout;
        loop {
            if !is_alive(instance.pid, self.program) {
                bail!(
                    "{} (pid {}) exited before it became ready; its log says:\n{}",
                    self.program,
                    instance.pid,
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
                    "{url} was not ready after {timeout:?}: last answer: {last}\n  next: read {}",
                    instance.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `pid` is running: it exists and is not a zombie (a child we started stays one
/// until we exit, so existence alone says nothing).
pub(crate) fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Whether `pid` is a running process of `program`: a record can outlive its process,
/// and the pid can be reused by something we must not signal.
fn is_alive(pid: u32, program: &str) -> bool {
    if !is_running(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        // Empty for a moment while a process we just started is still inside execve (the
        // kernel lets the parent go on before the new arguments are in place).
        Ok(cmdline) if cmdline.is_empty() => true,
        Ok(cmdline) => cmdline
            .split(|b| *b == 0)
            .next()
            .is_some_and(|argv0| argv0.ends_with(program.as_bytes())),
        Err(_) => false,
    }
}

/// Waits until `pid` has exited; a `program` given must also match, so a reused pid
/// does not keep us waiting.
pub(crate) fn wait_for_exit(pid: u32, program: Option<&str>, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while program.map_or_else(|| is_running(pid), |program| is_alive(pid, program)) {
        if Instant::now() > deadline {
            bail!("process {pid} is still running {timeout:?} after SIGTERM\n  next: `kill -KILL {pid}`");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The last lines of a log file, indented, for an error message.
pub(crate) fn log_tail(log: &Path) -> String {
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
