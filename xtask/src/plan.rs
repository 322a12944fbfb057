//! Plans: what a task will do, built as data before anything runs.
//!
//! A task first builds a [`Plan`] — the external commands in order, plus the checks the
//! xtask performs itself — so `--dry-run` can print it whole and tests can assert it. Only
//! then is it executed, each command echoed as `$ …` just before it runs.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{self, Stdio};

use anyhow::{Context, bail};
use xshell::Cmd;

/// How many lines of a failed command's stderr to repeat in the error.
const STDERR_TAIL_LINES: usize = 15;

pub(crate) struct Plan<'a> {
    steps: Vec<Step<'a>>,
}

enum Step<'a> {
    /// An external command, run to completion in the foreground.
    Run {
        cmd: Command<'a>,
        next: String,
        /// Runs when the command fails (diagnose, roll back) before the failure is reported.
        on_failure: Option<Action<'a, ()>>,
    },
    /// Like `Run`, but its stdout is captured and handed to `on_output`.
    Read {
        cmd: Command<'a>,
        next: String,
        on_output: Action<'a, String>,
    },
    /// An external program left running in the background, its output going to `log`.
    Start {
        cmd: Cmd<'a>,
        log: PathBuf,
        on_start: Action<'a, u32>,
    },
    /// A probe command whose outcome decides whether the steps of `then` run (create
    /// the cluster only if `describe` finds none, say).
    When {
        probe: Command<'a>,
        condition: String,
        decide: Decision<'a>,
        then: Plan<'a>,
    },
    /// Work the xtask does itself (an HTTP check, a wait), shown as a `#` line.
    Check {
        description: String,
        action: Action<'a, ()>,
    },
}

type Action<'a, T> = Box<dyn FnOnce(T) -> anyhow::Result<()> + 'a>;
/// Reads a probe's outcome: whether the steps that depend on it should run.
type Decision<'a> = Box<dyn FnOnce(&Probe) -> anyhow::Result<bool> + 'a>;

/// What a probe command reported.
pub(crate) struct Probe {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Probe {
    /// Whether the command failed because what it asked about does not exist, in the words
    /// gcloud and kubectl use for that.
    pub(crate) fn says_not_found(&self) -> bool {
        !self.success
            && ["NOT_FOUND", "code=404", "not found", "NotFound", "was not found"]
                .iter()
                .any(|needle| self.stderr.contains(needle))
    }
}

/// A command known when the plan is built, or one whose arguments come from an earlier
/// step (the digest a push reported, say), shown in the plan by a template.
pub(crate) enum Command<'a> {
    Now(Cmd<'a>),
    Later {
        shown: String,
        make: Box<dyn FnOnce() -> anyhow::Result<Cmd<'a>> + 'a>,
    },
}

impl<'a> From<Cmd<'a>> for Command<'a> {
    fn from(cmd: Cmd<'a>) -> Self {
        Command::Now(cmd)
    }
}

impl<'a> Command<'a> {
    /// A command built when its turn comes; `shown` stands for it in the plan.
    pub(crate) fn later(
        shown: impl Into<String>,
        make: impl FnOnce() -> anyhow::Result<Cmd<'a>> + 'a,
    ) -> Self {
        Command::Later {
            shown: shown.into(),
            make: Box::new(make),
        }
    }

    fn resolve(self) -> anyhow::Result<Cmd<'a>> {
        match self {
            Command::Now(cmd) => Ok(cmd),
            Command::Later { make, .. } => make(),
        }
    }
}

impl fmt::Display for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Now(cmd) => write!(f, "{cmd}"),
            Command::Later { shown, .. } => f.write_str(shown),
        }
    }
}

impl<'a> Plan<'a> {
    pub(crate) fn new() -> Self {
        Plan { steps: Vec::new() }
    }

    /// Adds a command; `next` tells the user what to do if it fails.
    pub(crate) fn run(&mut self, cmd: impl Into<Command<'a>>, next: impl Into<String>) -> &mut Self {
        self.steps.push(Step::Run {
            cmd: cmd.into(),
            next: next.into(),
            on_failure: None,
        });
        self
    }

    /// Adds a command; if it fails, `on_failure` runs before the failure is reported.
    pub(crate) fn run_or_else(
        &mut self,
        cmd: impl Into<Command<'a>>,
        next: impl Into<String>,
        on_failure: impl FnOnce() -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Run {
            cmd: cmd.into(),
            next: next.into(),
            on_failure: Some(Box::new(|()| on_failure())),
        });
        self
    }

    /// Adds a command whose stdout `on_output` receives.
    pub(crate) fn read(
        &mut self,
        cmd: impl Into<Command<'a>>,
        next: impl Into<String>,
        on_output: impl FnOnce(String) -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Read {
            cmd: cmd.into(),
            next: next.into(),
            on_output: Box::new(on_output),
        });
        self
    }

    /// Adds a background program; `on_start` receives its pid once it is running.
    pub(crate) fn start(
        &mut self,
        cmd: Cmd<'a>,
        log: PathBuf,
        on_start: impl FnOnce(u32) -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Start {
            cmd,
            log,
            on_start: Box::new(on_start),
        });
        self
    }

    /// Adds work the xtask does itself.
    pub(crate) fn check(
        &mut self,
        description: impl Into<String>,
        action: impl FnOnce() -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Check {
            description: description.into(),
            action: Box::new(|()| action()),
        });
        self
    }

    /// Adds `probe`, then the steps `build` adds, which run only if `decide` says so
    /// once the probe has run. `condition` names the case in the plan.
    pub(crate) fn when(
        &mut self,
        probe: impl Into<Command<'a>>,
        condition: impl Into<String>,
        decide: impl FnOnce(&Probe) -> anyhow::Result<bool> + 'a,
        build: impl FnOnce(&mut Plan<'a>),
    ) -> &mut Self {
        let mut then = Plan::new();
        build(&mut then);
        self.steps.push(Step::When {
            probe: probe.into(),
            condition: condition.into(),
            decide: Box::new(decide),
            then,
        });
        self
    }

    /// One line per step, as `--dry-run` prints them; the steps under a condition are
    /// indented below it.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for step in &self.steps {
            lines.push(step.to_string());
            if let Step::When { condition, then, .. } = step {
                lines.push(format!("# only if {condition}:"));
                lines.extend(then.lines().into_iter().map(|line| format!("  {line}")));
            }
        }
        lines
    }

    /// Prints the plan (`dry_run`) or carries it out, stopping at the first failure.
    pub(crate) fn execute(self, dry_run: bool) -> anyhow::Result<()> {
        if dry_run {
            for line in self.lines() {
                println!("{line}");
            }
            return Ok(());
        }
        for step in self.steps {
            match step {
                Step::Run {
                    cmd,
                    next,
                    on_failure,
                } => {
                    let result = run_teeing_stderr(cmd.resolve()?, &next, Stdio::inherit());
                    if result.is_err()
                        && let Some(on_failure) = on_failure
                    {
                        eprintln!("# it failed; finding out why");
                        if let Err(also) = on_failure(()) {
                            eprintln!("# while doing so: {also:#}");
                        }
                    }
                    result?;
                }
                Step::Read { cmd, next, on_output } => {
                    let stdout = run_teeing_stderr(cmd.resolve()?, &next, Stdio::piped())?;
                    on_output(stdout)?;
                }
                Step::Start { cmd, log, on_start } => {
                    eprintln!("$ {cmd} >{} 2>&1 &", log.display());
                    let pid = start_in_background(cmd, &log)?;
                    on_start(pid)?;
                }
                Step::When {
                    probe,
                    condition,
                    decide,
                    then,
                } => {
                    let probe = run_probe(probe.resolve()?)?;
                    if decide(&probe)? {
                        eprintln!("# {condition}: yes");
                        then.execute(false)?;
                    } else {
                        eprintln!("# {condition}: no, so skipping what depends on it");
                    }
                }
                Step::Check { description, action } => {
                    eprintln!("# {description}");
                    action(())?;
                }
            }
        }
        Ok(())
    }
}

/// Runs a probe, echoed, capturing both outputs whatever its exit status.
fn run_probe(cmd: Cmd<'_>) -> anyhow::Result<Probe> {
    let shown = cmd.to_string();
    eprintln!("$ {shown}");
    let output = process::Command::from(cmd)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| spawn_error(&shown, err))?;
    Ok(Probe {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run { cmd, .. } | Step::Read { cmd, .. } => write!(f, "$ {cmd}"),
            Step::Start { cmd, log, .. } => write!(f, "$ {cmd} >{} 2>&1 &", log.display()),
            Step::When { probe, .. } => write!(f, "$ {probe}"),
            Step::Check { description, .. } => write!(f, "# {description}"),
        }
    }
}

/// Runs a command that only reads (a git or docker query) and returns its stdout. It is
/// echoed like every command, and runs even for `--dry-run`, so plans can show real values.
pub(crate) fn query(cmd: Cmd<'_>) -> anyhow::Result<String> {
    eprintln!("$ {cmd}");
    Ok(cmd.quiet().read()?)
}

/// Runs `cmd` with stderr both shown and remembered, so a failure can quote the lines
/// that explain it. Returns stdout when `stdout` is piped, else an empty string.
fn run_teeing_stderr(cmd: Cmd<'_>, next: &str, stdout: Stdio) -> anyhow::Result<String> {
    let shown = cmd.to_string();
    eprintln!("$ {shown}");
    let mut command = process::Command::from(cmd);
    command.stdout(stdout).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|err| spawn_error(&shown, err))?;
    // Drain stdout on its own thread so neither pipe can fill up and stall the child.
    let captured = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut out, &mut text).map(|_| text)
        })
    });
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).split(b'\n') {
            let line = String::from_utf8_lossy(&line.context("read the command's stderr")?).into_owned();
            eprintln!("{line}");
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    let status = child.wait().with_context(|| format!("wait for `{shown}`"))?;
    let stdout = match captured {
        Some(reader) => reader
            .join()
            .map_err(|_| anyhow::anyhow!("reading the stdout of `{shown}` panicked"))?
            .with_context(|| format!("read the stdout of `{shown}`"))?,
        None => String::new(),
    };
    if status.success() {
        return Ok(stdout);
    }
    let status = match status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("{status}"),
    };
    let tail = if tail.is_empty() {
        "    (nothing)".to_owned()
    } else {
        tail.iter()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    bail!("`{shown}` failed with {status}\n  last lines of its stderr:\n{tail}\n  next: {next}")
}

/// Starts `cmd` detached from our terminal's process group (so Ctrl-C here does not reach
/// it) with its output appended to `log`; returns its pid.
fn start_in_background(cmd: Cmd<'_>, log: &PathBuf) -> anyhow::Result<u32> {
    let shown = cmd.to_string();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let out = File::create(log).with_context(|| format!("create the log file {}", log.display()))?;
    let err = out.try_clone().context("share the log file")?;
    let mut command = process::Command::from(cmd);
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = command.spawn().map_err(|err| spawn_error(&shown, err))?;
    Ok(child.id())
}

fn spawn_error(shown: &str, err: std::io::Error) -> anyhow::Error {
    let program = shown.split(' ').next().unwrap_or(shown);
    if err.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("`{program}` was not found: install it, or put it on PATH, then run this task again")
    } else {
        anyhow::Error::new(err).context(format!("could not start `{shown}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xshell::{Shell, cmd};

    #[test]
    fn a_failure_names_the_command_its_status_and_its_stderr() {
        let sh = Shell::new().unwrap();
        let script = "for i in $(seq 1 30); do echo line $i >&2; done; exit 3";
        let mut plan = Plan::new();
        plan.run(cmd!(sh, "sh -c {script}"), "fix it");
        let err = format!("{:#}", plan.execute(false).unwrap_err());
        assert!(err.contains("failed with exit status 3"), "{err}");
        assert!(
            err.contains("line 30") && err.contains("line 16"),
            "the last lines are quoted: {err}"
        );
        assert!(!err.contains("line 15\n"), "only the tail is quoted: {err}");
        assert!(err.contains("next: fix it"), "{err}");
    }

    #[test]
    fn a_missing_program_says_so() {
        let sh = Shell::new().unwrap();
        let mut plan = Plan::new();
        plan.run(cmd!(sh, "no-such-program-here --flag"), "unused");
        let err = format!("{:#}", plan.execute(false).unwrap_err());
        assert!(err.contains("`no-such-program-here` was not found"), "{err}");
    }

    #[test]
    fn a_dry_run_runs_nothing() {
        let sh = Shell::new().unwrap();
        let mut plan = Plan::new();
        plan.run(cmd!(sh, "false"), "unused")
            .check("would fail", || bail!("ran"));
        assert_eq!(plan.lines(), ["$ false", "# would fail"]);
        plan.execute(true).unwrap();
    }
}
