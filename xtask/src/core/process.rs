//! Processes as /proc sees them, and the one loop that waits for something to become
//! ready: a background program, a container, a load balancer.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

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
pub(crate) fn is_alive(pid: u32, program: &str) -> bool {
    if !is_running(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        // Empty for a moment while a process we just started is still inside execve (the
        // kernel lets the parent go on before the new arguments are in place).
        Ok(cmdline) if cmdline.is_empty() => true,
        Ok(cmdline) => cmdline
            .split(|b| *b == 0)
            .take(2)
            // A script runs as its interpreter: `python app.py`; look at both.
            .any(|arg| arg.ends_with(program.as_bytes())),
        Err(_) => false,
    }
}

/// Waits until `pid` has exited; a `program` given must also match, so a reused pid
/// does not keep us waiting.
pub(crate) fn wait_for_exit(pid: u32, program: Option<&str>, timeout: Duration) -> anyhow::Result<()> {
    let alive = || program.map_or_else(|| is_running(pid), |program| is_alive(pid, program));
    poll_until(timeout, Duration::from_millis(20), || {
        if alive() {
            Poll::Pending("still running".into())
        } else {
            Poll::Ready(())
        }
    })
    .map_err(|_| {
        anyhow::anyhow!(
            "process {pid} is still running {timeout:?} after SIGTERM\n  next: `kill -KILL {pid}`"
        )
    })
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

/// One look at something being waited for.
pub(crate) enum Poll<T> {
    Ready(T),
    /// Not yet; what was seen, for the error if time runs out.
    Pending(String),
    /// It will never be ready (the process exited): stop waiting.
    Failed(anyhow::Error),
}

/// Why a wait ended without the thing being ready.
#[derive(Debug)]
pub(crate) enum WaitError {
    TimedOut { waited: Duration, last: String },
    Failed(anyhow::Error),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::TimedOut { waited, last } => {
                write!(f, "not ready after {waited:.1?}: last answer: {last}")
            }
            WaitError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

impl std::error::Error for WaitError {}

/// Looks every `interval` until `poll` says ready, or fails, or `timeout` has passed.
pub(crate) fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut poll: impl FnMut() -> Poll<T>,
) -> Result<T, WaitError> {
    let started = Instant::now();
    loop {
        match poll() {
            Poll::Ready(value) => return Ok(value),
            Poll::Failed(err) => return Err(WaitError::Failed(err)),
            Poll::Pending(last) if started.elapsed() >= timeout => {
                return Err(WaitError::TimedOut {
                    waited: started.elapsed(),
                    last,
                });
            }
            Poll::Pending(_) => std::thread::sleep(interval),
        }
    }
}

/// Waits until `url` answers 200 while the process `pid` of `program` runs; if it exits
/// first, fails with the last lines of its `log`.
pub(crate) fn wait_for_http_ready(
    url: &str,
    timeout: Duration,
    pid: u32,
    program: &str,
    log: &Path,
) -> anyhow::Result<()> {
    let agent = crate::core::http::agent(Duration::from_secs(2));
    let started = Started { pid, program, log };
    started.wait_until_ready(
        url,
        timeout,
        Duration::from_millis(50),
        || match crate::core::http::get(&agent, url) {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("{status} {body}")),
            Err(err) => Err(err),
        },
    )
}

/// A program this task started in the background, and its log.
pub(crate) struct Started<'a> {
    pub(crate) pid: u32,
    pub(crate) program: &'a str,
    pub(crate) log: &'a Path,
}

impl Started<'_> {
    /// Asks `ready` every `interval` until it says yes, while the program runs: if it
    /// exits first, or `timeout` passes, fails naming `what` and the program's log.
    /// `ready`'s error is what it saw instead, quoted when time runs out.
    pub(crate) fn wait_until_ready(
        &self,
        what: &str,
        timeout: Duration,
        interval: Duration,
        mut ready: impl FnMut() -> Result<(), String>,
    ) -> anyhow::Result<()> {
        let Started { pid, program, log } = *self;
        let waited = poll_until(timeout, interval, || {
            if !is_alive(pid, program) {
                return Poll::Failed(anyhow::anyhow!(
                    "{program} (pid {pid}) exited before it became ready; its log says:\n{}\n  next: fix what the log names, then run this task again",
                    log_tail(log)
                ));
            }
            match ready() {
                Ok(()) => Poll::Ready(()),
                Err(seen) => Poll::Pending(seen),
            }
        });
        match waited {
            Ok(()) => Ok(()),
            Err(WaitError::Failed(err)) => Err(err),
            Err(timed_out) => bail!("{what} was {timed_out}\n  next: read {}", log.display()),
        }
    }
}
