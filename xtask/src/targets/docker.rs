//! The `docker` target: the image, pushed to the local registry, run from the registry by
//! digest with hardened flags — the same path a cluster takes, on this machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use crate::core::model_file::Models;
use crate::core::paths::state_dir;
use crate::core::plan::{Command, Plan, query};
use crate::core::process::{Poll, WaitError, poll_until};
use crate::core::target::TargetKind;
use crate::core::{http, records};
use crate::steps::engine::add_engine_check;
use crate::steps::image::{IMAGE_NAME, Image};
use crate::steps::push::{self, Pushed, Release};
use crate::steps::registry::{self, LocalRegistry};
use crate::steps::smoke::{add_how_to_reach, add_smoke_test, served_at};
use crate::targets::target::{Publish, ShipOptions, Target};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping container may take: the service's drain deadline (20 s) plus margin.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The container `ship` started.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Container {
    name: String,
    port: u16,
    url: String,
    pinned: String,
}

pub(crate) struct Docker<'a> {
    sh: &'a Shell,
    record: PathBuf,
    pushed: PathBuf,
    registry: LocalRegistry,
}

impl<'a> Docker<'a> {
    pub(crate) fn new(sh: &'a Shell) -> Self {
        Docker {
            sh,
            record: state_dir(sh).join("docker/container.json"),
            pushed: push::record_path(sh, TargetKind::Docker),
            registry: LocalRegistry::new(sh),
        }
    }

    fn container(&self) -> anyhow::Result<Option<Container>> {
        records::read(&self.record)
    }

    /// The recorded push, if it is of this very tree and the registry still holds it.
    fn already_pushed(&self, registry: &str, image: &Image) -> anyhow::Result<Option<Pushed>> {
        let Some(pushed) = records::read::<Pushed>(&self.pushed)? else {
            return Ok(None);
        };
        if pushed.image != image.reference() {
            return Ok(None);
        }
        let served = push::registry_digest(registry, IMAGE_NAME, image.tag())?;
        Ok((served.as_deref() == Some(pushed.digest())).then_some(pushed))
    }

    /// The recorded container and any container already named for `port`, if they exist.
    fn containers_to_replace(&self, port: u16) -> anyhow::Result<Vec<String>> {
        let sh = self.sh;
        let mut names = vec![format!("score-service-{port}")];
        if let Some(container) = self.container()?
            && !names.contains(&container.name)
        {
            names.push(container.name);
        }
        let mut existing = Vec::new();
        for name in names {
            let filter = format!("name=^/{name}$");
            let format = "{{.Names}}";
            if !query(cmd!(sh, "docker ps --all --filter {filter} --format {format}"))?
                .trim()
                .is_empty()
            {
                existing.push(name);
            }
        }
        Ok(existing)
    }

    /// Adds: stop (SIGTERM, then the drain), report the exit status, remove.
    fn add_stop(&self, plan: &mut Plan<'a, Release>, name: String) {
        let sh = self.sh;
        let timeout = STOP_TIMEOUT.as_secs().to_string();
        plan.run(
            cmd!(sh, "docker stop --timeout {timeout} {name}"),
            "see `docker ps -a`",
        );
        let format = "{{.State.ExitCode}}";
        plan.read(
            cmd!(sh, "docker container inspect --format {format} {name}"),
            "see `docker ps -a`",
            {
                let name = name.clone();
                move |_, code| {
                    println!("{name} exited with status {}", code.trim());
                    Ok(())
                }
            },
        );
        plan.run(cmd!(sh, "docker rm {name}"), "see `docker ps -a`");
        let record = self.record.clone();
        plan.check(format!("forget {}", record.display()), move |_| {
            records::remove(&record)
        });
    }
}

impl Target for Docker<'_> {
    /// Image, push (unless this tree's image is already in the registry), replace the
    /// running container with one run from the registry by digest, wait, smoke-test.
    fn ship_plan(&self, options: &ShipOptions) -> anyhow::Result<Plan<'_, Release>> {
        let sh = self.sh;
        let (port, model) = (options.port, options.model.as_ref());
        let mut plan = Plan::new();
        add_engine_check(sh, &mut plan);
        let registry = self.registry.add_up(sh, &mut plan, registry::DEFAULT_PORT)?;
        let image = Image::for_worktree(sh, format!("{registry}/{IMAGE_NAME}"))?;
        // Decided once the registry runs, so a stopped registry does not cost a rebuild.
        let reference = image.reference();
        plan.when_checked(
            format!("ask the registry whether it holds {reference} as pushed before"),
            format!("{reference} is not in the registry yet"),
            {
                let (registry, image) = (registry.clone(), image.clone());
                move |release: &mut Release| {
                    let found = self.already_pushed(&registry, &image)?;
                    if let Some(pushed) = &found {
                        eprintln!(
                            "# {} is already in the registry as {}: reuse it",
                            pushed.image, pushed.pinned
                        );
                    }
                    release.pushed = found;
                    Ok(release.pushed.is_none())
                }
            },
            |then| {
                image.add_build(sh, then, options.from_source);
                push::add_push(sh, then, &image.repository, image.tag(), self.pushed.clone());
                // Drop the local tag, so the container below is pulled from the registry.
                then.run(
                    cmd!(sh, "docker image rm {reference}"),
                    "remove the tag by hand and run ship again",
                );
            },
        );
        for name in self.containers_to_replace(port)? {
            self.add_stop(&mut plan, name);
        }

        let name = format!("score-service-{port}");
        let url = format!("http://127.0.0.1:{port}");
        let publish = format!("127.0.0.1:{port}:5000");
        let flags = [
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
        ];
        let limits = ["--user", "65532:65532", "--memory", "256m", "--cpus", "1"];
        // A model is mounted read-only, not baked in: the image stays the one pushed.
        let model_args: Vec<String> = model
            .map(|m| {
                let mut args: Vec<String> = m
                    .mounts()
                    .into_iter()
                    .flat_map(|(path, inside)| ["--volume".into(), format!("{}:{inside}:ro", path.display())])
                    .collect();
                args.extend(m.env().into_iter().flat_map(|env| ["--env".into(), env]));
                args
            })
            .unwrap_or_default();
        let shown = format!(
            "docker run --detach --name {name} {} {} {}--publish {publish} {registry}/{IMAGE_NAME}@<digest recorded by push>",
            flags.join(" "),
            limits.join(" "),
            model_args.iter().map(|a| format!("{a} ")).collect::<String>(),
        );
        let run = Command::later(shown, {
            let name = name.clone();
            move |release: &Release| {
                let pinned = release.pushed()?.pinned.clone();
                Ok(cmd!(
                    sh,
                    "docker run --detach --name {name} {flags...} {limits...} {model_args...} --publish {publish} {pinned}"
                ))
            }
        });
        plan.read(
            run,
            "read the error above; `docker ps -a` shows what is running",
            {
                let (record, name, url) = (self.record.clone(), name.clone(), url.clone());
                move |release, _container_id| {
                    let pinned = release.pushed()?.pinned.clone();
                    records::write(
                        &record,
                        &Container {
                            name,
                            port,
                            url,
                            pinned,
                        },
                    )
                }
            },
        );
        plan.check(
            format!("wait up to {READY_TIMEOUT:?} for {url}/readyz to answer 200"),
            {
                let (name, url) = (name.clone(), url.clone());
                move |_| wait_ready(sh, &name, &url)
            },
        );
        let model_names = model.map(Models::names).unwrap_or_default();
        add_smoke_test(
            &mut plan,
            url.clone(),
            Duration::from_secs(10),
            model_names.clone(),
        );
        add_how_to_reach(&mut plan, url, model_names, "cargo xtask down --target docker");
        Ok(plan)
    }

    fn down_plan(&self) -> anyhow::Result<Plan<'_, Release>> {
        let mut plan = Plan::new();
        add_engine_check(self.sh, &mut plan);
        match self.container()? {
            Some(container) => self.add_stop(&mut plan, container.name),
            None => {
                plan.check(
                    "nothing to stop: no container was started by `ship --target docker`",
                    |_| Ok(()),
                );
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
        match self.container()? {
            Some(container) => add_smoke_test(plan, container.url, timeout, models),
            None => bail!(
                "no container is running: start one with `cargo xtask ship --target docker`, or pass --url"
            ),
        }
        Ok(())
    }

    fn status_plan(&self) -> anyhow::Result<Plan<'_, Release>> {
        let mut plan = Plan::new();
        let Some(container) = self.container()? else {
            plan.check(
                "nothing runs: no container was started by `ship --target docker`",
                |_| Ok(()),
            );
            return Ok(plan);
        };
        add_engine_check(self.sh, &mut plan);
        let (sh, name) = (self.sh, container.name.clone());
        plan.read(
            cmd!(sh, "docker container inspect {name}"),
            "the recorded container is gone: ship again",
            move |_, json| {
                let inspected: serde_json::Value = serde_json::from_str(&json)?;
                let found = &inspected[0];
                let model = found["Config"]["Env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .find_map(|v| {
                        v.strip_prefix("SCORE_MODEL=")
                            .or_else(|| v.strip_prefix("SCORE_MODEL_REPOSITORY="))
                    })
                    .unwrap_or("identity");
                let state = &found["State"];
                println!("{:10}docker (container {})", "target", container.name);
                println!(
                    "{:10}{}",
                    "image",
                    found["Config"]["Image"].as_str().unwrap_or("?")
                );
                println!("{:10}{model}", "model");
                println!("{:10}{}", "serving", served_at(&container.url));
                println!(
                    "{:10}{}{}",
                    "state",
                    state["Status"].as_str().unwrap_or("?"),
                    state["Health"]["Status"]
                        .as_str()
                        .map(|h| format!(", {h}"))
                        .unwrap_or_default()
                );
                println!("{:10}{}", "address", container.url);
                Ok(())
            },
        );
        Ok(plan)
    }

    fn logs_plan(&self, follow: bool, tail: u32) -> anyhow::Result<Plan<'_, Release>> {
        let Some(container) = self.container()? else {
            bail!("no container is running: start one with `cargo xtask ship --target docker`");
        };
        let (sh, name, lines) = (self.sh, container.name, tail.to_string());
        let follow = follow.then_some("--follow");
        let mut plan = Plan::new();
        add_engine_check(sh, &mut plan);
        plan.run(
            cmd!(sh, "docker logs --tail {lines} {follow...} {name}"),
            "see `docker ps -a`",
        );
        Ok(plan)
    }
}

impl Publish for Docker<'_> {
    fn image_repository(&self) -> anyhow::Result<String> {
        Ok(format!("{}/{IMAGE_NAME}", self.registry.address()?))
    }

    fn add_before_push<'s>(&'s self, plan: &mut Plan<'s, Release>) -> anyhow::Result<()> {
        self.registry
            .add_up(self.sh, plan, registry::DEFAULT_PORT)
            .map(drop)
    }
}

/// Polls `/readyz`; if the container stops first, fails with its last log lines.
fn wait_ready(sh: &Shell, name: &str, url: &str) -> anyhow::Result<()> {
    let agent = http::agent(Duration::from_secs(2));
    let readyz = format!("{url}/readyz");
    let format = "{{.State.Status}}";
    let mut polls = 0u32;
    let waited = poll_until(READY_TIMEOUT, Duration::from_millis(50), || {
        let last = match http::get(&agent, &readyz) {
            Ok((200, _)) => return Poll::Ready(()),
            Ok((status, body)) => format!("{status} {body}"),
            Err(err) => err,
        };
        // Every 2 seconds, ask whether the container still runs at all.
        polls += 1;
        if polls.is_multiple_of(40) {
            match query(cmd!(sh, "docker container inspect --format {format} {name}")) {
                Ok(state) if state.trim() == "running" => {}
                Ok(state) => {
                    return Poll::Failed(anyhow::anyhow!(
                        "{name} is {} and {readyz} answered: {last}",
                        state.trim()
                    ));
                }
                Err(err) => return Poll::Failed(err),
            }
        }
        Poll::Pending(last)
    });
    let failure = match waited {
        Ok(()) => return Ok(()),
        Err(WaitError::Failed(err)) => format!("{err:#}"),
        Err(timed_out) => format!("{readyz} was {timed_out}"),
    };
    let logs = cmd!(sh, "docker logs --tail 20 {name}");
    eprintln!("$ {logs}");
    // The service logs to stderr.
    let logs = logs.quiet().read_stderr().unwrap_or_default();
    bail!("{failure}\n  its last log lines:\n{logs}")
}
