//! Servers a benchmark starts for itself: each started in the background and waited on
//! until it answers, its pid kept in the plan's context, stopped (SIGTERM, then SIGKILL)
//! when its load is done — and, by the plan, when the task ends however it ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use xshell::{Cmd, Shell, cmd};

use crate::core::http;
use crate::core::plan::Plan;
use crate::core::process::{self, Poll, poll_until};

/// How long a server gets to exit after SIGTERM once its load has ended.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A plan's context that keeps the pids of the servers it started, by name.
pub(crate) trait Servers {
    fn pids(&mut self) -> &mut BTreeMap<&'static str, u32>;
}

/// A server to load: how to start it, the name of its program (to stop it), its port.
pub(crate) struct Contender<'a> {
    pub(crate) name: &'static str,
    pub(crate) program: &'static str,
    pub(crate) command: Cmd<'a>,
    pub(crate) port: u16,
    /// A request that must answer 200 before the server counts as started.
    pub(crate) ready: Probe,
}

/// Asks a starting server whether it answers yet.
pub(crate) enum Probe {
    Get(String),
    Post { url: String, body_file: PathBuf },
}

/// Adds: start `contender`, its output to `log_dir/NAME.log` (stopped when the plan ends,
/// however it ends), and wait until it answers.
pub(crate) fn add_server<'a, C: Servers>(plan: &mut Plan<'a, C>, contender: Contender<'a>, log_dir: &Path) {
    let Contender {
        name,
        program,
        command,
        port,
        ready,
    } = contender;
    let log = log_dir.join(format!("{name}.log"));
    plan.start(
        command,
        log.clone(),
        Some(program),
        move |context, pid| {
            context.pids().insert(name, pid);
            Ok(())
        },
        format!("wait up to 60s for {name} on port {port} to answer 200"),
        move |_, pid| wait_until_answering(name, program, pid, &ready, &log),
    );
}

/// Adds: stop the server `name` started, and wait for it to exit.
pub(crate) fn add_stop<'a, C: Servers>(
    sh: &'a Shell,
    plan: &mut Plan<'a, C>,
    name: &'static str,
    program: &'static str,
) {
    plan.check(
        format!("stop {name} (SIGTERM, SIGKILL {STOP_GRACE:?} later) and wait for it to exit"),
        move |context| {
            let pid = context.pids().remove(name).context("the server was started")?;
            let pid_arg = pid.to_string();
            cmd!(sh, "kill -TERM {pid_arg}").run()?;
            if process::wait_for_exit(pid, Some(program), STOP_GRACE).is_err() {
                // Its figures are in: a baseline that hangs on its way out (MLServer
                // 1.7.1's worker pool does, on a dictionary changed while iterated) is
                // killed, and the bench goes on.
                eprintln!("{name} is still running {STOP_GRACE:?} after SIGTERM");
                cmd!(sh, "kill -KILL {pid_arg}").run()?;
                process::wait_for_exit(pid, Some(program), STOP_GRACE)?;
            }
            Ok(())
        },
    );
}

/// A loopback port nothing listens on now.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_until_answering(
    name: &str,
    program: &str,
    pid: u32,
    ready: &Probe,
    log: &Path,
) -> anyhow::Result<()> {
    let agent = http::agent(Duration::from_secs(2));
    let waited = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        if !process::is_alive(pid, program) {
            return Poll::Failed(anyhow::anyhow!(
                "{name} exited; its log says:\n{}",
                process::log_tail(log)
            ));
        }
        let answer = match ready {
            Probe::Get(url) => http::get(&agent, url),
            Probe::Post { url, body_file } => match std::fs::read_to_string(body_file) {
                Ok(body) => http::post_json(&agent, url, &body),
                Err(err) => return Poll::Failed(err.into()),
            },
        };
        match answer {
            Ok((200, _)) => Poll::Ready(()),
            Ok((status, body)) => Poll::Pending(format!("{status} {body}")),
            Err(err) => Poll::Pending(err),
        }
    });
    waited.map_err(|err| anyhow::anyhow!("{name} never answered 200: {err}; see {}", log.display()))
}

/// Peak resident memory of `pid` and its direct children (gunicorn's and MLServer's
/// workers), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let children = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let parent: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            (parent == pid).then_some(child)
        });
    std::iter::once(pid).chain(children).map(vm_hwm_kib).sum()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
            line.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}
