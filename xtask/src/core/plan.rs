//! Plans: what a task will do, built as data before anything runs.
//!
//! A task first builds a [`Plan`] — the external commands in order, plus the checks the
//! xtask performs itself — so `--dry-run` can print it whole and tests can assert it. Only
//! then is it executed, each command echoed as `$ …` just before it runs.
//!
//! Steps hand values to later steps through the plan's context `C`, a plain struct the
//! task defines (the digest a push read back, the figures a benchmark measured): each
//! step's closure receives `&mut C`, and a command built late (`Command::later`) reads
//! it. Background programs started as scoped (see [`Plan::start`]) are stopped when the plan
//! ends, however it ends — success, failure, or an interrupt.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use xshell::Cmd;

use crate::core::process;

/// How many lines of a failed command's stderr to repeat in the error.
const STDERR_TAIL_LINES: usize = 15;

pub(crate) struct Plan<'a, C = ()> {
    steps: Vec<Step<'a, C>>,
}

/// What a step does with what it gets, given the plan's context.
type Action<'a, C, T> = Box<dyn FnOnce(&mut C, T) -> anyhow::Result<()> + 'a>;
/// Reads a probe's outcome: whether the steps that depend on it should run.
type Decision<'a, C> = Box<dyn FnOnce(&mut C, &Probe) -> anyhow::Result<bool> + 'a>;
/// Decides, by itself, whether the steps that depend on it should run.
type SelfDecision<'a, C> = Box<dyn FnOnce(&mut C) -> anyhow::Result<bool> + 'a>;
/// Builds a command from what earlier steps learned.
type MakeCmd<'a, C> = Box<dyn FnOnce(&C) -> anyhow::Result<Cmd<'a>> + 'a>;
/// After a failed command's on-failure steps: what to tell the user, from what those steps
/// observed (the context) and which of them failed (each as its line and its error).
type Conclusion<'a, C> = Box<dyn FnOnce(&C, &[String]) -> String + 'a>;
/// After steps that each ran whatever became of the one before: whether the plan goes on,
/// from what they observed and which of them failed.
type Outcome<'a, C> = Box<dyn FnOnce(&mut C, &[String]) -> anyhow::Result<()> + 'a>;
/// Judges one object a watch printed: the reason to stop the watched command, if any.
pub(crate) type Judge = Box<dyn FnMut(&serde_json::Value) -> Option<String> + Send>;
/// Builds a watch's judge from what earlier steps learned (the image being rolled out).
type MakeJudge<'a, C> = Box<dyn FnOnce(&C) -> anyhow::Result<Judge> + 'a>;

/// A program watched while a command runs: it prints JSON objects (`kubectl get --watch
/// --output json`), each judged as it comes, and the first the judge finds hopeless stops
/// the command, which then fails with that reason instead of at its own timeout.
pub(crate) struct Watch<'a, C> {
    cmd: Command<'a, C>,
    /// What the judge looks for, as the plan shows it.
    looks_for: String,
    judge: MakeJudge<'a, C>,
}

impl<'a, C> Watch<'a, C> {
    pub(crate) fn new(
        cmd: impl Into<Command<'a, C>>,
        looks_for: impl Into<String>,
        judge: impl FnOnce(&C) -> anyhow::Result<Judge> + 'a,
    ) -> Self {
        Watch {
            cmd: cmd.into(),
            looks_for: looks_for.into(),
            judge: Box::new(judge),
        }
    }
}

enum Step<'a, C> {
    /// An external command, run to completion in the foreground.
    Run {
        cmd: Command<'a, C>,
        next: String,
        /// Steps that run when the command fails (diagnose, roll back), each whatever
        /// became of the one before, before the failure is reported, with the conclusion
        /// drawn from what they observed.
        on_failure: Option<(Plan<'a, C>, Conclusion<'a, C>)>,
        /// What may stop the command early.
        watch: Option<Watch<'a, C>>,
    },
    /// Like `Run`, but its stdout is captured and handed to `on_output`.
    Read {
        cmd: Command<'a, C>,
        next: String,
        on_output: Action<'a, C, String>,
    },
    /// An external program left running in the background, its output going to `log`;
    /// `scoped` names the program when the plan must stop it as it ends.
    Start {
        cmd: Command<'a, C>,
        log: PathBuf,
        scoped: Option<&'static str>,
        on_start: Action<'a, C, u32>,
        /// Work that needs the new process's pid (wait until it answers), shown as its
        /// own `#` line.
        then: Option<(String, Action<'a, C, u32>)>,
    },
    /// A probe command whose outcome decides whether the steps of `then` run (create
    /// the cluster only if `describe` finds none, say).
    When {
        probe: Command<'a, C>,
        condition: String,
        decide: Decision<'a, C>,
        then: Plan<'a, C>,
    },
    /// Like `When`, but the xtask asks itself (an HTTP question, a record): `decide`
    /// says whether the steps of `then` run.
    WhenChecked {
        description: String,
        condition: String,
        decide: SelfDecision<'a, C>,
        then: Plan<'a, C>,
    },
    /// A command whose outcome, success or not, with both outputs, `on_probe` reads.
    Probe {
        cmd: Command<'a, C>,
        on_probe: Action<'a, C, Probe>,
    },
    /// Steps that each run whatever became of the one before (clean up, then say what
    /// is left), then `conclude`, which reads what they observed and which of them failed.
    Each {
        description: String,
        steps: Plan<'a, C>,
        conclude: Outcome<'a, C>,
    },
    /// Work the xtask does itself (an HTTP check, a wait), shown as a `#` line.
    Check {
        description: String,
        action: Action<'a, C, ()>,
    },
}

/// What a probe command reported.
pub(crate) struct Probe {
    pub(crate) success: bool,
    /// The exit status; None when a signal ended the command.
    pub(crate) code: Option<i32>,
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
pub(crate) enum Command<'a, C = ()> {
    Now(Cmd<'a>),
    Later { shown: String, make: MakeCmd<'a, C> },
}

impl<'a, C> From<Cmd<'a>> for Command<'a, C> {
    fn from(cmd: Cmd<'a>) -> Self {
        Command::Now(cmd)
    }
}

impl<'a, C> Command<'a, C> {
    /// A command built from the plan's context when its turn comes; `shown` stands for it
    /// in the plan.
    pub(crate) fn later(
        shown: impl Into<String>,
        make: impl FnOnce(&C) -> anyhow::Result<Cmd<'a>> + 'a,
    ) -> Self {
        Command::Later {
            shown: shown.into(),
            make: Box::new(make),
        }
    }

    fn resolve(self, context: &C) -> anyhow::Result<Cmd<'a>> {
        match self {
            Command::Now(cmd) => Ok(cmd),
            Command::Later { make, .. } => make(context),
        }
    }
}

impl<C> fmt::Display for Command<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Now(cmd) => write!(f, "{cmd}"),
            Command::Later { shown, .. } => f.write_str(shown),
        }
    }
}

impl<'a, C> Plan<'a, C> {
    pub(crate) fn new() -> Self {
        Plan { steps: Vec::new() }
    }

    /// Adds a command; `next` tells the user what to do if it fails.
    pub(crate) fn run(&mut self, cmd: impl Into<Command<'a, C>>, next: impl Into<String>) -> &mut Self {
        self.steps.push(Step::Run {
            cmd: cmd.into(),
            next: next.into(),
            on_failure: None,
            watch: None,
        });
        self
    }

    /// Adds a command, stopped early by `watch` if it finds a reason; if it fails, the
    /// steps `build` adds run (each even if the one before failed: they diagnose and
    /// repair), then `conclude` says what became of it all, from what they observed and
    /// which of them failed; the failure is reported with that conclusion as what to do
    /// next.
    pub(crate) fn run_or_else(
        &mut self,
        cmd: impl Into<Command<'a, C>>,
        watch: Option<Watch<'a, C>>,
        build: impl FnOnce(&mut Plan<'a, C>),
        conclude: impl FnOnce(&C, &[String]) -> String + 'a,
    ) -> &mut Self {
        let mut on_failure = Plan::new();
        build(&mut on_failure);
        self.steps.push(Step::Run {
            cmd: cmd.into(),
            // Replaced by the conclusion, once the on-failure steps have run.
            next: String::new(),
            on_failure: Some((on_failure, Box::new(conclude))),
            watch,
        });
        self
    }

    /// Adds a command whose stdout `on_output` receives.
    pub(crate) fn read(
        &mut self,
        cmd: impl Into<Command<'a, C>>,
        next: impl Into<String>,
        on_output: impl FnOnce(&mut C, String) -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Read {
            cmd: cmd.into(),
            next: next.into(),
            on_output: Box::new(on_output),
        });
        self
    }

    /// Adds a background program, its output going to `log`, then work that needs its
    /// pid (`description` names it in the plan: wait until it answers, say). A program
    /// meant to outlive the plan (the local service, the registry) has `scoped: None`;
    /// one that lives only while the plan runs names its executable in `scoped`, and is
    /// stopped (SIGTERM, then SIGKILL) when the plan ends — whether it succeeds, fails or
    /// is interrupted.
    pub(crate) fn start(
        &mut self,
        cmd: impl Into<Command<'a, C>>,
        log: PathBuf,
        scoped: Option<&'static str>,
        on_start: impl FnOnce(&mut C, u32) -> anyhow::Result<()> + 'a,
        description: impl Into<String>,
        then: impl FnOnce(&mut C, u32) -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Start {
            cmd: cmd.into(),
            log,
            scoped,
            on_start: Box::new(on_start),
            then: Some((description.into(), Box::new(then))),
        });
        self
    }

    /// Adds a command whose exit status, stdout and stderr `on_probe` reads, whatever the
    /// status (a fuzzer reports on stderr and exits non-zero when it finds something).
    pub(crate) fn probe(
        &mut self,
        cmd: impl Into<Command<'a, C>>,
        on_probe: impl FnOnce(&mut C, Probe) -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Probe {
            cmd: cmd.into(),
            on_probe: Box::new(on_probe),
        });
        self
    }

    /// Adds work the xtask does itself.
    pub(crate) fn check(
        &mut self,
        description: impl Into<String>,
        action: impl FnOnce(&mut C) -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        self.steps.push(Step::Check {
            description: description.into(),
            action: Box::new(|context, ()| action(context)),
        });
        self
    }

    /// Adds `probe`, then the steps `build` adds, which run only if `decide` says so
    /// once the probe has run. `condition` names the case in the plan.
    pub(crate) fn when(
        &mut self,
        probe: impl Into<Command<'a, C>>,
        condition: impl Into<String>,
        decide: impl FnOnce(&mut C, &Probe) -> anyhow::Result<bool> + 'a,
        build: impl FnOnce(&mut Plan<'a, C>),
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

    /// Adds the steps `build` adds, each run whatever became of the one before, then
    /// `conclude` (`description` names it in the plan), given which of them failed, each
    /// as its line and its error: what must happen even when a diagnosis fails (remove
    /// a canary) goes here.
    pub(crate) fn each(
        &mut self,
        build: impl FnOnce(&mut Plan<'a, C>),
        description: impl Into<String>,
        conclude: impl FnOnce(&mut C, &[String]) -> anyhow::Result<()> + 'a,
    ) -> &mut Self {
        let mut steps = Plan::new();
        build(&mut steps);
        self.steps.push(Step::Each {
            description: description.into(),
            steps,
            conclude: Box::new(conclude),
        });
        self
    }

    /// Adds a check of its own (`description`), then the steps `build` adds, which run
    /// only if `decide` says so when the plan reaches them.
    pub(crate) fn when_checked(
        &mut self,
        description: impl Into<String>,
        condition: impl Into<String>,
        decide: impl FnOnce(&mut C) -> anyhow::Result<bool> + 'a,
        build: impl FnOnce(&mut Plan<'a, C>),
    ) -> &mut Self {
        let mut then = Plan::new();
        build(&mut then);
        self.steps.push(Step::WhenChecked {
            description: description.into(),
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
            if let Step::Each {
                description, steps, ..
            } = step
            {
                lines.push("# each of these, whatever became of the one before:".to_owned());
                lines.extend(steps.lines().into_iter().map(|line| format!("  {line}")));
                lines.push(format!("# {description}"));
                continue;
            }
            lines.push(step.to_string());
            match step {
                Step::When { condition, then, .. } | Step::WhenChecked { condition, then, .. } => {
                    lines.push(format!("# only if {condition}:"));
                    lines.extend(then.lines().into_iter().map(|line| format!("  {line}")));
                }
                Step::Start {
                    then: Some((description, _)),
                    ..
                } => lines.push(format!("# {description}")),
                Step::Run {
                    on_failure, watch, ..
                } => {
                    if let Some(watch) = watch {
                        lines.push(format!(
                            "# while it runs: $ {} &, stopping it at {}",
                            watch.cmd, watch.looks_for
                        ));
                    }
                    if let Some((on_failure, _)) = on_failure {
                        lines.push("# if it fails:".to_owned());
                        lines.extend(on_failure.lines().into_iter().map(|line| format!("  {line}")));
                    }
                }
                _ => {}
            }
        }
        lines
    }

    /// Prints the plan (`dry_run`) or carries it out from a fresh context, stopping at
    /// the first failure.
    pub(crate) fn execute(self, dry_run: bool) -> anyhow::Result<()>
    where
        C: Default,
    {
        self.execute_with(dry_run, &mut C::default())
    }

    /// Prints the plan, or carries it out with `context`. Scoped programs it started are
    /// stopped before this returns, however it ends.
    pub(crate) fn execute_with(self, dry_run: bool, context: &mut C) -> anyhow::Result<()> {
        if dry_run {
            for line in self.lines() {
                println!("{line}");
            }
            return Ok(());
        }
        let scope = Scope::open();
        let result = self.run_steps(context);
        scope.close();
        result
    }

    /// Runs every step, reporting a failure and going on to the next; returns the steps
    /// that failed, each as its line and its error.
    fn run_each(self, context: &mut C) -> Vec<String> {
        let mut failed = Vec::new();
        for step in self.steps {
            let line = step.to_string();
            let one = Plan { steps: vec![step] };
            if let Err(err) = one.run_steps(context) {
                eprintln!("# that failed too: {err:#}");
                let first = format!("{err}").lines().next().unwrap_or_default().to_owned();
                failed.push(format!("{line} ({first})"));
            }
        }
        failed
    }

    fn run_steps(self, context: &mut C) -> anyhow::Result<()> {
        for step in self.steps {
            match step {
                Step::Run {
                    cmd,
                    next,
                    on_failure,
                    watch,
                } => {
                    let watch = match watch {
                        Some(watch) => Some((watch.cmd.resolve(context)?, (watch.judge)(context)?)),
                        None => None,
                    };
                    let result = run_teeing_stderr(cmd.resolve(context)?, &next, Stdio::inherit(), watch);
                    if let Err(err) = result {
                        let Some((on_failure, conclude)) = on_failure else {
                            return Err(err);
                        };
                        eprintln!("# it failed; finding out why");
                        let failed = on_failure.run_each(context);
                        let conclusion = conclude(context, &failed);
                        let mut err = err;
                        return Err(match err.downcast_mut::<CommandFailed>() {
                            Some(command) => {
                                command.next = conclusion;
                                err
                            }
                            None => err.context(conclusion),
                        });
                    }
                }
                Step::Read { cmd, next, on_output } => {
                    let stdout = run_teeing_stderr(cmd.resolve(context)?, &next, Stdio::piped(), None)?;
                    on_output(context, stdout)?;
                }
                Step::Start {
                    cmd,
                    log,
                    scoped,
                    on_start,
                    then,
                } => {
                    let cmd = cmd.resolve(context)?;
                    eprintln!("$ {cmd} >{} 2>&1 &", log.display());
                    let pid = start_in_background(cmd, &log)?;
                    if let Some(program) = scoped {
                        Scope::register(pid, program);
                    }
                    on_start(context, pid)?;
                    if let Some((description, then)) = then {
                        eprintln!("# {description}");
                        then(context, pid)?;
                    }
                }
                Step::When {
                    probe,
                    condition,
                    decide,
                    then,
                } => {
                    let probe = run_probe(probe.resolve(context)?)?;
                    if decide(context, &probe)? {
                        eprintln!("# {condition}: yes");
                        then.run_steps(context)?;
                    } else {
                        eprintln!("# {condition}: no, so skipping what depends on it");
                    }
                }
                Step::WhenChecked {
                    description,
                    condition,
                    decide,
                    then,
                } => {
                    eprintln!("# {description}");
                    if decide(context)? {
                        eprintln!("# {condition}: yes");
                        then.run_steps(context)?;
                    } else {
                        eprintln!("# {condition}: no, so skipping what depends on it");
                    }
                }
                Step::Probe { cmd, on_probe } => {
                    let probe = run_probe(cmd.resolve(context)?)?;
                    on_probe(context, probe)?;
                }
                Step::Each {
                    description,
                    steps,
                    conclude,
                } => {
                    let failed = steps.run_each(context);
                    eprintln!("# {description}");
                    conclude(context, &failed)?;
                }
                Step::Check { description, action } => {
                    eprintln!("# {description}");
                    action(context, ())?;
                }
            }
        }
        Ok(())
    }
}

/// Scoped programs started and not yet stopped: (pid, program). Global, so
/// the interrupt handler, on its own thread, can stop them too.
static SCOPED: Mutex<Vec<(u32, &'static str)>> = Mutex::new(Vec::new());

/// How long a scoped program gets to exit after SIGTERM before SIGKILL.
const SCOPED_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The scoped programs one execution started: those registered after `first`.
struct Scope {
    first: usize,
}

impl Scope {
    fn open() -> Self {
        Scope {
            first: SCOPED.lock().map_or(0, |scoped| scoped.len()),
        }
    }

    fn register(pid: u32, program: &'static str) {
        if let Ok(mut scoped) = SCOPED.lock() {
            scoped.push((pid, program));
        }
    }

    /// Stops what this execution started that still runs.
    fn close(self) {
        let started = match SCOPED.lock() {
            Ok(mut scoped) => {
                let first = self.first.min(scoped.len());
                scoped.split_off(first)
            }
            Err(_) => return,
        };
        stop_all(started);
    }
}

/// Stops every scoped program still running. The interrupt handler calls it, so Ctrl-C
/// never leaves a benchmark's servers behind.
pub(crate) fn stop_scoped_programs() {
    let all = match SCOPED.lock() {
        Ok(mut scoped) => std::mem::take(&mut *scoped),
        Err(_) => return,
    };
    stop_all(all);
}

fn stop_all(programs: Vec<(u32, &'static str)>) {
    for (pid, program) in programs.into_iter().rev() {
        if !process::is_alive(pid, program) {
            continue;
        }
        let pid_arg = pid.to_string();
        eprintln!("$ kill -TERM {pid}   # stop {program}, which this task started");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid_arg])
            .status();
        if process::wait_for_exit(pid, Some(program), SCOPED_STOP_TIMEOUT).is_err() {
            eprintln!("$ kill -KILL {pid}");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid_arg])
                .status();
        }
    }
}

/// Runs a probe, echoed, capturing both outputs whatever its exit status.
fn run_probe(cmd: Cmd<'_>) -> anyhow::Result<Probe> {
    let shown = cmd.to_string();
    eprintln!("$ {shown}");
    let output = std::process::Command::from(cmd)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| spawn_error(&shown, err))?;
    Ok(Probe {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

impl<C> fmt::Display for Step<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run { cmd, .. } | Step::Read { cmd, .. } => write!(f, "$ {cmd}"),
            Step::Start { cmd, log, .. } => write!(f, "$ {cmd} >{} 2>&1 &", log.display()),
            Step::When { probe, .. } | Step::Probe { cmd: probe, .. } => write!(f, "$ {probe}"),
            Step::WhenChecked { description, .. }
            | Step::Each { description, .. }
            | Step::Check { description, .. } => write!(f, "# {description}"),
        }
    }
}

/// Runs a command that only reads (a git or docker query) and returns its stdout. It is
/// echoed like every command, and runs even for `--dry-run`, so plans can show real values.
pub(crate) fn query(cmd: Cmd<'_>) -> anyhow::Result<String> {
    // Its stderr is shown and, on a failure, quoted: a query's error is often the reason
    // a step gives up (a canary's pod gone), so it must say what the command said.
    let mut stdout = run_teeing_stderr(cmd, "read what it said, above", Stdio::piped(), None)?;
    // As xshell's `read`: without the final line break.
    if stdout.ends_with('\n') {
        stdout.pop();
        if stdout.ends_with('\r') {
            stdout.pop();
        }
    }
    Ok(stdout)
}

/// Runs `cmd` with stderr both shown and remembered, so a failure can quote the lines
/// that explain it, and `watch` beside it, which may stop it. Returns stdout when `stdout`
/// is piped, else an empty string.
fn run_teeing_stderr(
    cmd: Cmd<'_>,
    next: &str,
    stdout: Stdio,
    watch: Option<(Cmd<'_>, Judge)>,
) -> anyhow::Result<String> {
    let shown = cmd.to_string();
    eprintln!("$ {shown}");
    let mut command = std::process::Command::from(cmd);
    command.stdout(stdout).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|err| spawn_error(&shown, err))?;
    // The watch only speeds a failure up: if it cannot start, the command runs alone.
    let watcher = watch.and_then(|(cmd, judge)| {
        Watcher::start(cmd, judge, child.id())
            .inspect_err(|err| eprintln!("# the watch could not start ({err:#}): waiting without it"))
            .ok()
    });
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
    let stopped = watcher.and_then(Watcher::stop);
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
    let status = match (stopped, status.code()) {
        (Some(reason), _) => format!("a stop by its watch: {reason}"),
        (None, Some(code)) => format!("exit status {code}"),
        (None, None) => format!("{status}"),
    };
    let tail = if tail.is_empty() {
        "    (nothing)".to_owned()
    } else {
        tail.iter()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Err(CommandFailed {
        shown,
        status,
        tail,
        next: next.to_owned(),
    }
    .into())
}

/// A watch running beside a command: its program, and what its judge found.
struct Watcher {
    child: std::process::Child,
    /// The judge's reason to stop the command, sent before it signals the command.
    found: std::sync::mpsc::Receiver<String>,
    /// Set before the watched command is reaped: from then on its pid may be reused, and
    /// nothing may signal it.
    reaping: Arc<Mutex<bool>>,
}

impl Watcher {
    fn start(cmd: Cmd<'_>, mut judge: Judge, watched: u32) -> anyhow::Result<Watcher> {
        let shown = cmd.to_string();
        eprintln!("$ {shown} &   # watching while the command above runs");
        let mut child = std::process::Command::from(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| spawn_error(&shown, err))?;
        let out = child.stdout.take().context("the watch's stdout is piped")?;
        let reaping = Arc::new(Mutex::new(false));
        let (found, receiver) = std::sync::mpsc::channel();
        // Detached: it ends when the watch's output does.
        std::thread::spawn({
            let reaping = Arc::clone(&reaping);
            move || {
                let objects = serde_json::Deserializer::from_reader(BufReader::new(out)).into_iter();
                for object in objects.map_while(Result::ok) {
                    let Some(reason) = judge(&object) else {
                        continue;
                    };
                    eprintln!("# stopping it: {reason}");
                    let _ = found.send(reason);
                    if let Ok(reaping) = reaping.lock()
                        && !*reaping
                    {
                        let _ = std::process::Command::new("kill")
                            .args(["-TERM", &watched.to_string()])
                            .status();
                    }
                    return;
                }
            }
        });
        Ok(Watcher {
            child,
            found: receiver,
            reaping,
        })
    }

    /// Ends the watch and says why it stopped the command, if it did; called when the
    /// command has closed its output, before it is reaped.
    fn stop(mut self) -> Option<String> {
        if let Ok(mut reaping) = self.reaping.lock() {
            *reaping = true;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.found.try_recv().ok()
    }
}

/// A command that ran and failed: its line, exit status, the tail of its stderr, and
/// what to do next.
#[derive(Debug)]
struct CommandFailed {
    shown: String,
    status: String,
    tail: String,
    next: String,
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` failed with {}\n  last lines of its stderr:\n{}\n  next: {}",
            self.shown, self.status, self.tail, self.next
        )
    }
}

impl std::error::Error for CommandFailed {}

/// Starts `cmd` detached from our terminal's process group (so Ctrl-C here does not reach
/// it) with its output appended to `log`; returns its pid.
fn start_in_background(cmd: Cmd<'_>, log: &PathBuf) -> anyhow::Result<u32> {
    let shown = cmd.to_string();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let out = File::create(log).with_context(|| format!("create the log file {}", log.display()))?;
    let err = out.try_clone().context("share the log file")?;
    let mut command = std::process::Command::from(cmd);
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
        let mut plan: Plan = Plan::new();
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
        let mut plan: Plan = Plan::new();
        plan.run(cmd!(sh, "no-such-program-here --flag"), "unused");
        let err = format!("{:#}", plan.execute(false).unwrap_err());
        assert!(err.contains("`no-such-program-here` was not found"), "{err}");
    }

    #[test]
    fn a_dry_run_runs_nothing() {
        let sh = Shell::new().unwrap();
        let mut plan: Plan = Plan::new();
        plan.run(cmd!(sh, "false"), "unused")
            .check("would fail", |_| anyhow::bail!("ran"));
        assert_eq!(plan.lines(), ["$ false", "# would fail"]);
        plan.execute(true).unwrap();
    }

    #[test]
    fn a_watch_stops_a_command_at_the_first_object_its_judge_finds_hopeless() {
        let sh = Shell::new().unwrap();
        let watch = |events: &'static str| {
            Watch::new(cmd!(sh, "sh -c {events}"), "a failed phase", |_: &()| {
                Ok(Box::new(|object: &serde_json::Value| {
                    (object["phase"] == "Failed").then(|| format!("it failed: {}", object["why"]))
                }) as Judge)
            })
        };
        let failing =
            r#"echo '{"phase": "Pending"}'; echo '{"phase": "Failed", "why": "no image"}'; exec sleep 60"#;
        let mut plan: Plan = Plan::new();
        plan.run_or_else(
            cmd!(sh, "sleep 60"),
            Some(watch(failing)),
            |_| {},
            |_, _| "look at it".to_owned(),
        );
        let lines = plan.lines();
        assert_eq!(lines[0], "$ sleep 60");
        assert!(
            lines[1].starts_with("# while it runs: $ sh -c ")
                && lines[1].ends_with(" &, stopping it at a failed phase"),
            "{lines:?}"
        );
        assert_eq!(lines[2], "# if it fails:");
        let err = format!("{:#}", plan.execute(false).unwrap_err());
        assert!(
            err.contains("`sleep 60` failed with a stop by its watch: it failed: \"no image\""),
            "{err}"
        );
        assert!(err.contains("next: look at it"), "{err}");
        // A command that ends by itself, with nothing hopeless seen, succeeds.
        let quiet = r#"echo '{"phase": "Pending"}'; exec sleep 60"#;
        let mut plan: Plan = Plan::new();
        plan.run_or_else(
            cmd!(sh, "true"),
            Some(watch(quiet)),
            |_| {},
            |_, _| "unused".to_owned(),
        );
        plan.execute(false).unwrap();
    }

    #[test]
    fn each_step_of_a_cleanup_runs_whatever_became_of_the_one_before() {
        let sh = Shell::new().unwrap();
        let mut plan: Plan<Vec<&str>> = Plan::new();
        plan.each(
            |steps| {
                steps.run(cmd!(sh, "false"), "unused").check("remove it", |ran| {
                    ran.push("removed");
                    Ok(())
                });
            },
            "say what is left",
            |ran, failed| {
                ran.push("concluded");
                anyhow::ensure!(
                    failed.len() == 1 && failed[0].starts_with("$ false ("),
                    "{failed:?}"
                );
                Ok(())
            },
        );
        assert_eq!(
            plan.lines(),
            [
                "# each of these, whatever became of the one before:",
                "  $ false",
                "  # remove it",
                "# say what is left"
            ]
        );
        let mut ran = Vec::new();
        plan.execute_with(false, &mut ran).unwrap();
        assert_eq!(ran, ["removed", "concluded"]);
    }
}
