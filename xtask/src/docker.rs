//! The `docker` target: the image, pushed to the local registry, run from the registry by
//! digest with hardened flags — the same path a cluster takes, on this machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use crate::image::{IMAGE_NAME, Image};
use crate::local::{STOP_TIMEOUT, add_how_to_reach};
use crate::plan::{Command, Plan, query};
use crate::push::{self, Pushed};
use crate::registry::{self, LocalRegistry};
use crate::ship::ModelFile;
use crate::smoke::{self, add_smoke_test};
use crate::target::Target;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Adds a first step that fails in one line when the Docker engine cannot be reached.
pub(crate) fn add_engine_check<'a>(sh: &'a Shell, plan: &mut Plan<'a>) {
    plan.check("check that the Docker engine answers", move || {
        let format = "{{.Server.Version}}";
        match query(cmd!(sh, "docker version --format {format}").ignore_stderr()) {
            Ok(_) => Ok(()),
            Err(err) if crate::tools::which("docker").is_none() => {
                bail!("docker is not installed ({err}): install Docker Engine, https://docs.docker.com/engine/install/")
            }
            Err(_) => bail!(
                "the Docker engine is not reachable: start it (`sudo systemctl start docker`) or point DOCKER_HOST at one"
            ),
        }
    });
}

/// The container `ship` started.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Container {
    name: String,
    port: u16,
    url: String,
    pinned: String,
}

pub(crate) struct Docker {
    record: PathBuf,
    pushed: PathBuf,
    registry: LocalRegistry,
}

impl Docker {
    pub(crate) fn new(sh: &Shell) -> Self {
        Docker {
            record: crate::state_dir(sh).join("docker/container.json"),
            pushed: push::record_path(sh, Target::Docker),
            registry: LocalRegistry::new(sh),
        }
    }

    fn container(&self) -> Option<Container> {
        serde_json::from_str(&std::fs::read_to_string(&self.record).ok()?).ok()
    }

    pub(crate) fn running_url(&self) -> anyhow::Result<String> {
        match self.container() {
            Some(container) => Ok(container.url),
            None => bail!(
                "no container is running: start one with `cargo xtask ship --target docker`, or pass --url"
            ),
        }
    }

    /// Image, push (unless this tree's image is already in the registry), replace the
    /// running container with one run from the registry by digest, wait, smoke-test.
    pub(crate) fn ship_plan<'a>(
        &'a self,
        sh: &'a Shell,
        port: u16,
        from_source: bool,
        model: Option<&ModelFile>,
    ) -> anyhow::Result<Plan<'a>> {
        let mut plan = Plan::new();
        add_engine_check(sh, &mut plan);
        let registry = self.registry.add_up(sh, &mut plan, registry::DEFAULT_PORT)?;
        let image = Image::for_worktree(sh, format!("{registry}/{IMAGE_NAME}"))?;
        match self.already_pushed(&registry, &image) {
            Some(pushed) => {
                plan.check(
                    format!(
                        "{} is already in the registry as {}: reuse it",
                        pushed.image, pushed.pinned
                    ),
                    || Ok(()),
                );
            }
            None => {
                image.add_build(sh, &mut plan, from_source);
                push::add_push(sh, &mut plan, &image, self.pushed.clone());
                let reference = image.reference();
                // Drop the local tag, so the container below is pulled from the registry.
                plan.run(
                    cmd!(sh, "docker image rm {reference}"),
                    "remove the tag by hand and run ship again",
                );
            }
        }
        for name in self.containers_to_replace(sh, port)? {
            self.add_stop(sh, &mut plan, name);
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
                let inside = format!("/models/{}.onnx", m.name);
                vec![
                    "--volume".into(),
                    format!("{}:{inside}:ro", m.path.display()),
                    "--env".into(),
                    format!("SCORE_MODEL={inside}"),
                ]
            })
            .unwrap_or_default();
        let shown = format!(
            "docker run --detach --name {name} {} {} {}--publish {publish} {}/{IMAGE_NAME}@<digest recorded by push>",
            flags.join(" "),
            limits.join(" "),
            model_args.iter().map(|a| format!("{a} ")).collect::<String>(),
            registry
        );
        let pushed_path = self.pushed.clone();
        let run = Command::later(shown, {
            let name = name.clone();
            move || {
                let pinned = push::read_record(&pushed_path)
                    .with_context(|| format!("no pushed image recorded in {}", pushed_path.display()))?
                    .pinned;
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
                let (record, pushed_path, name, url) = (
                    self.record.clone(),
                    self.pushed.clone(),
                    name.clone(),
                    url.clone(),
                );
                move |_container_id| {
                    let pinned = push::read_record(&pushed_path)
                        .map(|p| p.pinned)
                        .unwrap_or_default();
                    let container = Container {
                        name,
                        port,
                        url,
                        pinned,
                    };
                    std::fs::create_dir_all(record.parent().expect("the record sits in a directory"))?;
                    std::fs::write(&record, serde_json::to_string_pretty(&container)?).map_err(Into::into)
                }
            },
        );
        plan.check(
            format!("wait up to {READY_TIMEOUT:?} for {url}/readyz to answer 200"),
            {
                let (name, url) = (name.clone(), url.clone());
                move || wait_ready(sh, &name, &url)
            },
        );
        add_smoke_test(
            &mut plan,
            url.clone(),
            Duration::from_secs(10),
            model.map(|m| m.name.clone()),
        );
        add_how_to_reach(
            &mut plan,
            url,
            model.map(|m| m.name.clone()),
            "cargo xtask down --target docker",
        );
        Ok(plan)
    }

    /// The recorded push, if it is of this very tree and the registry still holds it.
    fn already_pushed(&self, registry: &str, image: &Image) -> Option<Pushed> {
        let pushed = push::read_record(&self.pushed)?;
        if pushed.image != image.reference() {
            return None;
        }
        let served = push::registry_digest(registry, IMAGE_NAME, image.tag()).ok()??;
        (served == pushed.digest()).then_some(pushed)
    }

    /// The recorded container and any container already named for `port`, if they exist.
    fn containers_to_replace(&self, sh: &Shell, port: u16) -> anyhow::Result<Vec<String>> {
        let mut names = vec![format!("score-service-{port}")];
        if let Some(container) = self.container()
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
    fn add_stop<'a>(&'a self, sh: &'a Shell, plan: &mut Plan<'a>, name: String) {
        let grace = STOP_TIMEOUT.as_secs().to_string();
        plan.run(
            cmd!(sh, "docker stop --time {grace} {name}"),
            "see `docker ps -a`",
        );
        let format = "{{.State.ExitCode}}";
        plan.read(
            cmd!(sh, "docker container inspect --format {format} {name}"),
            "see `docker ps -a`",
            {
                let name = name.clone();
                move |code| {
                    println!("{name} exited with status {}", code.trim());
                    Ok(())
                }
            },
        );
        plan.run(cmd!(sh, "docker rm {name}"), "see `docker ps -a`");
        let record = self.record.clone();
        plan.check(
            format!("forget {}", record.display()),
            move || match std::fs::remove_file(&record) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
                _ => Ok(()),
            },
        );
    }

    pub(crate) fn down_plan<'a>(&'a self, sh: &'a Shell) -> anyhow::Result<Plan<'a>> {
        let mut plan = Plan::new();
        add_engine_check(sh, &mut plan);
        match self.container() {
            Some(container) => self.add_stop(sh, &mut plan, container.name),
            None => {
                plan.check(
                    "nothing to stop: no container was started by `ship --target docker`",
                    || Ok(()),
                );
            }
        }
        Ok(plan)
    }
}

/// Polls `/readyz`; if the container stops first, fails with its last log lines.
fn wait_ready(sh: &Shell, name: &str, url: &str) -> anyhow::Result<()> {
    let agent = smoke::agent(Duration::from_secs(2));
    let readyz = format!("{url}/readyz");
    let started = Instant::now();
    let mut next_state_check = started + Duration::from_secs(2);
    loop {
        let last = match smoke::get(&agent, &readyz) {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => format!("{status} {body}"),
            Err(err) => err,
        };
        let now = Instant::now();
        if now >= next_state_check || now > started + READY_TIMEOUT {
            let format = "{{.State.Status}}";
            let state = query(cmd!(sh, "docker container inspect --format {format} {name}"))?;
            if state.trim() != "running" || now > started + READY_TIMEOUT {
                let logs = cmd!(sh, "docker logs --tail 20 {name}");
                eprintln!("$ {logs}");
                // The service logs to stderr.
                let logs = logs.quiet().read_stderr().unwrap_or_default();
                bail!(
                    "{name} is {} and {readyz} answered: {last}\n  its last log lines:\n{logs}",
                    state.trim()
                );
            }
            next_state_check = now + Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
