//! Programs the xtask leaves running in the background (the local service, the local
//! registry), each recorded in `<state>/<name>/instance.json` beside its log so later
//! tasks can find it, replace it or stop it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xshell::{Cmd, Shell, cmd};

use crate::core::plan::Plan;
use crate::core::{process, records};

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
        let instance: Option<Instance> = records::read(&self.instance_file())?;
        Ok(instance.filter(|instance| process::is_alive(instance.pid, self.program)))
    }

    /// Adds: start `cmd` in the background, record it, and wait until `ready_path` on
    /// `port` answers 200 (failing early, with the log, if the program exits first).
    pub(crate) fn add_start<'a, C>(
        &'a self,
        plan: &mut Plan<'a, C>,
        cmd: Cmd<'a>,
        port: u16,
        ready_path: &'static str,
        ready_timeout: Duration,
    ) {
        let url = format!("http://127.0.0.1:{port}");
        let log = self.log_file();
        let record = {
            let (url, log) = (url.clone(), log.clone());
            move |_: &mut C, pid| records::write(&self.instance_file(), &Instance { pid, port, url, log })
        };
        let ready_url = format!("{url}{ready_path}");
        plan.start(
            cmd,
            log.clone(),
            None,
            record,
            format!("wait up to {ready_timeout:?} for {ready_url} to answer 200"),
            move |_, pid| process::wait_for_http_ready(&ready_url, ready_timeout, pid, self.program, &log),
        );
    }

    /// Adds: SIGTERM, wait for the process to exit, forget it.
    pub(crate) fn add_stop<'a, C>(
        &'a self,
        sh: &'a Shell,
        plan: &mut Plan<'a, C>,
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
            move |_| {
                process::wait_for_exit(instance.pid, Some(self.program), timeout)?;
                records::remove(&self.instance_file())
            },
        );
    }
}
