//! One pod on the fake node: scheduling, volumes, image pulls, containers started with
//! `docker run` from the pod spec, restarts with back-off, probes, the pod's status as the
//! kubelet reports it, and graceful termination when the pod is deleted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::docker::{self, CLUSTER_LABEL, PID_LABEL, PID_NAMESPACE_LABEL, POD_LABEL, RunSpec};
use super::probe::{self, Check, Timing};
use crate::Kubelet;
use crate::cluster::{PublishedPort, Shared};
use crate::ports;
use crate::resources::IDS;
use crate::store::{ObjectKey, Part, Writer};
use crate::util::{self, get_path, is_deleting, name_of, namespace_of, parse_quantity, uid_of};

pub(crate) const NODE_NAME: &str = "fake-kube-node";
const KUBELET: &str = "kubelet";

/// How often a pod's containers are looked at.
const TICK: Duration = Duration::from_millis(300);
/// Crash-loop back-off: short, so tests see several restarts in seconds.
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const LONGEST_RESTART_DELAY: Duration = Duration::from_secs(10);
/// Stopping a container waits at most this long, whatever the grace period says.
const LONGEST_STOP: u64 = 2;

#[derive(Debug, Clone, PartialEq)]
struct Terminated {
    container_id: String,
    exit_code: i64,
    reason: String,
    started_at: String,
    finished_at: String,
}

impl Terminated {
    fn to_json(&self) -> Value {
        json!({
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": format!("docker://{}", self.container_id),
        })
    }
}

#[derive(Debug)]
struct ProbeState {
    spec: Value,
    timing: Timing,
    next_at: Instant,
    successes: u32,
    failures: u32,
    passed: bool,
}

impl ProbeState {
    fn new(spec: &Value) -> Self {
        let timing = Timing::of(spec);
        ProbeState {
            spec: spec.clone(),
            timing,
            next_at: Instant::now() + timing.initial_delay,
            successes: 0,
            failures: 0,
            passed: false,
        }
    }
}

struct Container {
    name: String,
    spec: Value,
    image_id: Option<String>,
    image_user: String,
    pulls_failed: u32,
    retry_at: Option<Instant>,
    restart_delay: Duration,
    current: Option<String>,
    started_at: String,
    /// Containers started so far; the restart count is one less.
    runs: u32,
    last_terminated: Option<Terminated>,
    waiting: Option<(String, String)>,
    ports: Vec<PublishedPort>,
    startup: Option<ProbeState>,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
    ready: bool,
}

impl Container {
    fn new(spec: &Value) -> Self {
        Container {
            name: spec
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            spec: spec.clone(),
            image_id: None,
            image_user: String::new(),
            pulls_failed: 0,
            retry_at: None,
            restart_delay: Duration::ZERO,
            current: None,
            started_at: String::new(),
            runs: 0,
            last_terminated: None,
            waiting: Some(("ContainerCreating".into(), String::new())),
            ports: Vec::new(),
            startup: None,
            readiness: None,
            liveness: None,
            ready: false,
        }
    }

    fn image(&self) -> &str {
        self.spec.get("image").and_then(Value::as_str).unwrap_or_default()
    }

    fn started(&self) -> bool {
        self.current.is_some() && self.startup.as_ref().is_none_or(|p| p.passed)
    }

    fn reset_probes(&mut self) {
        self.startup = self.spec.get("startupProbe").map(ProbeState::new);
        self.readiness = self.spec.get("readinessProbe").map(ProbeState::new);
        self.liveness = self.spec.get("livenessProbe").map(ProbeState::new);
        self.ready = false;
    }
}

pub(super) struct PodWorker {
    shared: Arc<Shared>,
    key: ObjectKey,
    uid: String,
    docker: bool,
    containers: Vec<Container>,
    start_time: String,
    volumes_ready: bool,
    pod_ip: String,
    transitions: HashMap<&'static str, (bool, String)>,
}

fn pull_policy(container: &Value, image: &str) -> String {
    if let Some(policy) = container.get("imagePullPolicy").and_then(Value::as_str) {
        return policy.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

/// Expands `$(VAR)` references as the kubelet does in env values, command and args;
/// `$$` escapes a dollar, unknown references stay as written.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, value)) => out.push_str(value),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

impl PodWorker {
    pub(super) fn new(shared: Arc<Shared>, key: ObjectKey, uid: String) -> Self {
        let docker = shared.options.kubelet == Kubelet::Docker;
        PodWorker {
            shared,
            key,
            uid,
            docker,
            containers: Vec::new(),
            start_time: util::now(),
            volumes_ready: false,
            pod_ip: "127.0.0.1".into(),
            transitions: HashMap::new(),
        }
    }

    /// The pod, if it is still the one this worker runs.
    fn pod(&self) -> Option<Arc<Value>> {
        self.shared
            .store()
            .get(&self.key)
            .filter(|pod| uid_of(pod) == self.uid)
            .cloned()
    }

    fn event(&self, pod: &Value, warning: bool, reason: &str, message: &str) {
        self.shared
            .store()
            .record_event(pod, warning, reason, message, KUBELET);
    }

    fn container_event(&self, pod: &Value, container: &str, warning: bool, reason: &str, message: &str) {
        // Container events name the container in the involved object's fieldPath.
        let mut involved = pod.clone();
        if let Some(metadata) = involved.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert(
                "fieldPath".into(),
                json!(format!("spec.containers{{{container}}}")),
            );
        }
        self.event(&involved, warning, reason, message);
    }

    pub(super) async fn run(mut self) {
        let Some(pod) = self.pod() else { return };
        self.schedule(&pod);
        let mut shutdown = self.shared.shutdown_signal();
        loop {
            let Some(pod) = self.pod() else {
                self.remove_containers().await;
                return;
            };
            if self.shared.is_shutting_down() {
                self.remove_containers().await;
                return;
            }
            if is_deleting(&pod) {
                self.terminate(&pod).await;
                return;
            }
            self.step(&pod).await;
            self.write_status();
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = shutdown.wait() => {}
            }
        }
    }

    fn schedule(&mut self, pod: &Value) {
        self.containers = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(Container::new)
            .collect();
        if pod.pointer("/spec/nodeName").is_none() {
            let mut next = pod.clone();
            next["spec"]["nodeName"] = json!(NODE_NAME);
            let _ = self.shared.store().update(
                IDS.pods,
                &self.key.namespace,
                &self.key.name,
                next,
                Part::Main,
                &Writer::system("kube-scheduler"),
            );
            self.shared.store().record_event(
                pod,
                false,
                "Scheduled",
                &format!(
                    "Successfully assigned {}/{} to {NODE_NAME}",
                    self.key.namespace, self.key.name
                ),
                "default-scheduler",
            );
        }
        self.write_status();
    }

    async fn step(&mut self, pod: &Value) {
        if !self.volumes_ready {
            if let Some(message) = unsupported(pod) {
                // Said once: the pod's spec cannot change, so it never runs here.
                if self.containers.iter().any(|c| c.waiting.is_none()) {
                    for container in &mut self.containers {
                        container.waiting = Some(("CreateContainerConfigError".into(), message.clone()));
                    }
                    self.event(pod, true, "Failed", &format!("Error: {message}"));
                }
                return;
            }
            self.volumes_ready = true;
        }
        for index in 0..self.containers.len() {
            if self.docker {
                self.step_container(pod, index).await;
            } else {
                self.simulate_container(index);
            }
        }
    }

    /// Without Docker: containers run, start and are ready at once.
    fn simulate_container(&mut self, index: usize) {
        let container = &mut self.containers[index];
        if container.current.is_none() {
            container.current = Some(format!("{:016x}", util::random_u64()));
            container.started_at = util::now();
            container.runs += 1;
            container.waiting = None;
            container.ready = true;
            container.image_id = Some(container.image().to_string());
        }
    }

    async fn step_container(&mut self, pod: &Value, index: usize) {
        if let Some(id) = self.containers[index].current.clone() {
            match docker::inspect(&id).await {
                Ok(state) if state.pointer("/State/Running") == Some(&json!(true)) => {
                    self.run_probes(pod, index).await;
                }
                Ok(state) => self.exited(pod, index, &id, &state).await,
                Err(_) => {
                    // Removed behind our back: start again.
                    let container = &mut self.containers[index];
                    container.current = None;
                    container.ready = false;
                }
            }
            return;
        }
        let container = &self.containers[index];
        if container.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if container.image_id.is_none() && !self.pull(pod, index).await {
            return;
        }
        if let Err(message) = self.check_non_root(pod, index) {
            let container = &mut self.containers[index];
            container.waiting = Some(("CreateContainerConfigError".into(), message.clone()));
            container.retry_at = Some(Instant::now() + Duration::from_secs(2));
            let name = container.name.clone();
            self.container_event(pod, &name, true, "Failed", &format!("Error: {message}"));
            return;
        }
        self.start(pod, index).await;
    }

    /// Pulls the container's image as its pull policy says; false while it is not there.
    async fn pull(&mut self, pod: &Value, index: usize) -> bool {
        let image = self.containers[index].image().to_string();
        let name = self.containers[index].name.clone();
        let policy = pull_policy(&self.containers[index].spec, &image);
        if policy != "Always" {
            if let Some((id, user)) = docker::local_image(&image).await {
                self.container_event(
                    pod,
                    &name,
                    false,
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                );
                let container = &mut self.containers[index];
                container.image_id = Some(id);
                container.image_user = user;
                return true;
            }
            if policy == "Never" {
                let message = format!("Container image {image:?} is not present with pull policy of Never");
                self.container_event(pod, &name, true, "ErrImageNeverPull", &message);
                let container = &mut self.containers[index];
                container.waiting = Some(("ErrImageNeverPull".into(), message));
                container.retry_at = Some(Instant::now() + Duration::from_secs(2));
                return false;
            }
        }
        self.container_event(pod, &name, false, "Pulling", &format!("Pulling image {image:?}"));
        let began = Instant::now();
        let pulled = docker::docker(["pull", "--quiet", &image]).await;
        let local = match pulled {
            Ok(_) => docker::local_image(&image).await,
            Err(_) => None,
        };
        match (pulled, local) {
            (Ok(_), Some((id, user))) => {
                self.container_event(
                    pod,
                    &name,
                    false,
                    "Pulled",
                    &format!(
                        "Successfully pulled image {image:?} in {:.3}s",
                        began.elapsed().as_secs_f64()
                    ),
                );
                let container = &mut self.containers[index];
                container.image_id = Some(id);
                container.image_user = user;
                container.pulls_failed = 0;
                true
            }
            (result, _) => {
                let error = result.err().map_or_else(
                    || "the pulled image cannot be inspected".to_owned(),
                    |error| error.message(),
                );
                let container = &mut self.containers[index];
                container.pulls_failed += 1;
                let delay = FIRST_RESTART_DELAY * 2u32.saturating_pow(container.pulls_failed.min(4));
                container.retry_at = Some(Instant::now() + delay.min(LONGEST_RESTART_DELAY));
                let (reason, message) = if container.pulls_failed == 1 {
                    ("ErrImagePull", error.clone())
                } else {
                    (
                        "ImagePullBackOff",
                        format!("Back-off pulling image {image:?}: ErrImagePull: {error}"),
                    )
                };
                container.waiting = Some((reason.into(), message));
                self.container_event(
                    pod,
                    &name,
                    true,
                    "Failed",
                    &format!("Failed to pull image {image:?}: {error}"),
                );
                if reason == "ErrImagePull" {
                    self.container_event(pod, &name, true, "Failed", "Error: ErrImagePull");
                } else {
                    self.container_event(
                        pod,
                        &name,
                        false,
                        "BackOff",
                        &format!("Back-off pulling image {image:?}"),
                    );
                }
                false
            }
        }
    }

    fn security(&self, pod: &Value, index: usize, field: &str) -> Option<Value> {
        let container = &self.containers[index].spec;
        get_path(container, &format!("securityContext.{field}"))
            .or_else(|| get_path(pod, &format!("spec.securityContext.{field}")))
            .cloned()
    }

    /// The kubelet's own check of `runAsNonRoot` against the image's user.
    fn check_non_root(&self, pod: &Value, index: usize) -> Result<(), String> {
        if self.security(pod, index, "runAsNonRoot") != Some(json!(true)) {
            return Ok(());
        }
        let who = format!(
            "(pod: \"{}_{}({})\", container: {})",
            self.key.name, self.key.namespace, self.uid, self.containers[index].name
        );
        match self.security(pod, index, "runAsUser").and_then(|u| u.as_i64()) {
            Some(0) => Err(format!("container's runAsUser breaks non-root policy {who}")),
            Some(_) => Ok(()),
            None => {
                let user = &self.containers[index].image_user;
                let uid = user.split(':').next().unwrap_or_default();
                if uid.is_empty() || uid == "root" || uid == "0" {
                    Err(format!(
                        "container has runAsNonRoot and image will run as root {who}"
                    ))
                } else if uid.parse::<u32>().is_err() {
                    Err(format!(
                        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {who}"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The container's environment: literal values, each expanding `$(VAR)` references
    /// to the ones before it (`unsupported` has refused every other source).
    fn environment(&self, index: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        for variable in self.containers[index]
            .spec
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = variable.get("name").and_then(Value::as_str) else {
                continue;
            };
            let value = variable.get("value").and_then(Value::as_str).unwrap_or_default();
            let value = expand(value, &env);
            env.push((name.to_string(), value));
        }
        env
    }

    async fn start(&mut self, pod: &Value, index: usize) {
        let env = self.environment(index);
        let spec = self.containers[index].spec.clone();
        let name = self.containers[index].name.clone();
        let strings = |field: &str| -> Vec<String> {
            spec.get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(|s| expand(s, &env)))
                .collect()
        };
        let command = strings("command");
        let mut args = strings("args");
        let entrypoint = command.first().cloned();
        if command.len() > 1 {
            let mut full: Vec<String> = command[1..].to_vec();
            full.append(&mut args);
            args = full;
        }
        let user = match (
            self.security(pod, index, "runAsUser").and_then(|v| v.as_i64()),
            self.security(pod, index, "runAsGroup").and_then(|v| v.as_i64()),
        ) {
            (Some(user), Some(group)) => Some(format!("{user}:{group}")),
            (Some(user), None) => Some(user.to_string()),
            _ => None,
        };
        let strings_at = |value: Option<Value>| -> Vec<String> {
            value
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let limit = |what: &str| {
            get_path(&spec, &format!("resources.limits.{what}"))
                .and_then(Value::as_str)
                .and_then(parse_quantity)
        };
        let volumes: Vec<Value> = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // Only emptyDir volumes reach here (`unsupported`), each a tmpfs.
        let tmpfs: Vec<String> = spec
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|mount| {
                let name = mount.get("name").and_then(Value::as_str);
                volumes
                    .iter()
                    .any(|v| v.get("name").and_then(Value::as_str) == name && v.get("emptyDir").is_some())
            })
            .filter_map(|mount| mount.get("mountPath").and_then(Value::as_str).map(str::to_string))
            .collect();
        let ports = ports::of_container(&spec);
        let run_number = self.containers[index].runs;
        let container_name = format!(
            "fk-{}-{}-{}-{}-{run_number}",
            &self.shared.cluster_id[..8.min(self.shared.cluster_id.len())],
            self.key.namespace,
            self.key.name,
            name
        );
        let run = RunSpec {
            name: container_name,
            hostname: self.key.name.chars().take(63).collect(),
            labels: vec![
                (CLUSTER_LABEL.into(), self.shared.cluster_id.clone()),
                (PID_LABEL.into(), std::process::id().to_string()),
                (PID_NAMESPACE_LABEL.into(), docker::pid_namespace()),
                (
                    POD_LABEL.into(),
                    format!("{}/{}", self.key.namespace, self.key.name),
                ),
                ("io.kubernetes.pod.uid".into(), self.uid.clone()),
                ("io.kubernetes.container.name".into(), name.clone()),
            ],
            image: self.containers[index].image().to_string(),
            user,
            read_only: self.security(pod, index, "readOnlyRootFilesystem") == Some(json!(true)),
            cap_drop: strings_at(self.security(pod, index, "capabilities.drop")),
            cap_add: strings_at(self.security(pod, index, "capabilities.add")),
            no_new_privileges: self.security(pod, index, "allowPrivilegeEscalation") == Some(json!(false)),
            privileged: self.security(pod, index, "privileged") == Some(json!(true)),
            seccomp_unconfined: self
                .security(pod, index, "seccompProfile.type")
                .is_some_and(|t| t == "Unconfined"),
            memory_bytes: limit("memory").map(|bytes| bytes as u64),
            cpus: limit("cpu"),
            env,
            entrypoint,
            args,
            working_dir: spec.get("workingDir").and_then(Value::as_str).map(str::to_string),
            ports,
            tmpfs,
        };
        let result = docker::docker(run.args()).await;
        let id = match result {
            Ok(id) => id,
            Err(error) => {
                // The name is reserved even when the start failed.
                let _ = docker::docker(["rm", "-f", &run.name]).await;
                let container = &mut self.containers[index];
                container.waiting = Some(("RunContainerError".into(), error.message()));
                container.retry_at = Some(Instant::now() + Duration::from_secs(2));
                self.container_event(pod, &name, true, "Failed", &format!("Error: {}", error.message()));
                return;
            }
        };
        if self.shared.is_shutting_down() {
            // Shutdown began while docker ran: do not leave this one behind.
            let _ = docker::docker(["rm", "-f", "-v", &id]).await;
            return;
        }
        let inspected = docker::inspect(&id).await.unwrap_or(Value::Null);
        if let Some(ip) = inspected
            .pointer("/NetworkSettings/IPAddress")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
        {
            self.pod_ip = ip.to_string();
        }
        let published = published_ports(&spec, &name, &inspected);
        let container = &mut self.containers[index];
        container.current = Some(id);
        container.runs += 1;
        container.started_at = inspected
            .pointer("/State/StartedAt")
            .and_then(Value::as_str)
            .and_then(util::parse_timestamp)
            .map_or_else(util::now, util::timestamp);
        container.waiting = None;
        container.ports = published;
        container.reset_probes();
        self.publish_ports();
        self.container_event(
            pod,
            &name,
            false,
            "Created",
            &format!("Created container: {name}"),
        );
        self.container_event(pod, &name, false, "Started", &format!("Started container {name}"));
    }

    fn publish_ports(&self) {
        let ports: Vec<PublishedPort> = self
            .containers
            .iter()
            .filter(|c| c.current.is_some())
            .flat_map(|c| c.ports.iter().cloned())
            .collect();
        self.shared.set_ports(&self.uid, ports);
    }

    async fn exited(&mut self, pod: &Value, index: usize, id: &str, state: &Value) {
        let exit_code = state
            .pointer("/State/ExitCode")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        let oom = state.pointer("/State/OOMKilled") == Some(&json!(true));
        let time = |field: &str| {
            state
                .pointer(&format!("/State/{field}"))
                .and_then(Value::as_str)
                .and_then(util::parse_timestamp)
                .map_or_else(util::now, util::timestamp)
        };
        let terminated = Terminated {
            container_id: id.to_string(),
            exit_code,
            reason: if oom {
                "OOMKilled".into()
            } else if exit_code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            started_at: time("StartedAt"),
            finished_at: time("FinishedAt"),
        };
        // Keep the container that just exited (for `logs`, and `logs --previous`); the
        // one before it can go.
        if let Some(previous) = &self.containers[index].last_terminated {
            let _ = docker::docker(["rm", "-f", "-v", &previous.container_id]).await;
        }
        let restart_policy = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always");
        let restarts = match restart_policy {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => true,
        };
        let name = self.containers[index].name.clone();
        let container = &mut self.containers[index];
        container.current = None;
        container.ready = false;
        container.last_terminated = Some(terminated.clone());
        if !restarts {
            container.waiting = None;
            container.retry_at = Some(Instant::now() + Duration::from_secs(365 * 24 * 3600));
            self.publish_ports();
            return;
        }
        // The first restart is immediate; then the delay doubles, as the kubelet's, but
        // from one second and up to ten.
        let delay = container.restart_delay;
        container.restart_delay = if delay.is_zero() {
            FIRST_RESTART_DELAY
        } else {
            (delay * 2).min(LONGEST_RESTART_DELAY)
        };
        container.retry_at = Some(Instant::now() + delay);
        if delay.is_zero() {
            container.waiting = Some(("ContainerCreating".into(), String::new()));
        } else {
            container.waiting = Some((
                "CrashLoopBackOff".into(),
                format!(
                    "back-off {}s restarting failed container={name} pod={}_{}({})",
                    delay.as_secs(),
                    self.key.name,
                    self.key.namespace,
                    self.uid
                ),
            ));
            let message = format!(
                "Back-off restarting failed container {name} in pod {}_{}({})",
                self.key.name, self.key.namespace, self.uid
            );
            self.container_event(pod, &name, true, "BackOff", &message);
        }
        self.publish_ports();
    }

    fn check_for(&self, probe: &Value, index: usize) -> Check {
        let container = &self.containers[index];
        let declared = ports::of_container(&container.spec);
        let resolve_port = |port: Option<&Value>| ports::resolve(&declared, port?);
        let address = |port: u16| -> Option<SocketAddr> {
            container
                .ports
                .iter()
                .find(|p| p.container_port == port)
                .map(|p| p.address)
        };
        if let Some(http) = probe.get("httpGet") {
            if http.get("scheme").and_then(Value::as_str) == Some("HTTPS") {
                return Check::Unsupported("fake-kube does not run HTTPS probes".into());
            }
            let Some(port) = resolve_port(http.get("port")) else {
                return Check::Unsupported(format!(
                    "the probe's port {} is not a container port",
                    http["port"]
                ));
            };
            let path = http
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            return match address(port) {
                Some(address) => Check::Http {
                    shown_as: format!("http://{}:{port}{path}", self.pod_ip),
                    address,
                    path,
                },
                None => Check::Unsupported(format!(
                    "port {port} is not published, so fake-kube cannot probe it"
                )),
            };
        }
        // The project's probes are HTTP; a real kubelet would also run tcpSocket, exec and grpc.
        Check::Unsupported("fake-kube runs httpGet probes only".into())
    }

    /// Runs whichever probes are due: startup first, then readiness and liveness.
    async fn run_probes(&mut self, pod: &Value, index: usize) {
        let name = self.containers[index].name.clone();
        for kind in ["Startup", "Readiness", "Liveness"] {
            let container = &self.containers[index];
            let started = container.startup.as_ref().is_none_or(|p| p.passed);
            let state = match kind {
                "Startup" => container.startup.as_ref(),
                "Readiness" if started => container.readiness.as_ref(),
                "Liveness" if started => container.liveness.as_ref(),
                _ => None,
            };
            let Some(state) = state else { continue };
            if Instant::now() < state.next_at || (kind == "Startup" && state.passed) {
                continue;
            }
            let check = self.check_for(&state.spec, index);
            let timing = state.timing;
            let result = probe::run(&check, timing.timeout).await;
            let container = &mut self.containers[index];
            let state = match kind {
                "Startup" => container.startup.as_mut(),
                "Readiness" => container.readiness.as_mut(),
                _ => container.liveness.as_mut(),
            }
            .expect("the probe was found above");
            state.next_at = Instant::now() + timing.period;
            match result {
                Ok(()) => {
                    state.failures = 0;
                    state.successes += 1;
                    if state.successes >= timing.success_threshold {
                        state.passed = true;
                    }
                }
                Err(message) => {
                    state.successes = 0;
                    state.failures += 1;
                    let failed = state.failures >= timing.failure_threshold;
                    if failed {
                        state.passed = false;
                    }
                    self.container_event(
                        pod,
                        &name,
                        true,
                        "Unhealthy",
                        &format!("{kind} probe failed: {message}"),
                    );
                    if failed && kind != "Readiness" {
                        let what = if kind == "Startup" { "startup" } else { "liveness" };
                        self.container_event(
                            pod,
                            &name,
                            false,
                            "Killing",
                            &format!("Container {name} failed {what} probe, will be restarted"),
                        );
                        if let Some(id) = &self.containers[index].current {
                            let _ = docker::docker(["kill", id]).await;
                        }
                    }
                }
            }
        }
        let container = &mut self.containers[index];
        container.ready = container.started() && container.readiness.as_ref().is_none_or(|p| p.passed);
    }

    /// Stops the containers of a deleted pod within its grace period (capped), then
    /// removes the pod object, which completes the deletion.
    async fn terminate(&mut self, pod: &Value) {
        let grace = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(30)
            .min(LONGEST_STOP);
        for index in 0..self.containers.len() {
            let Some(id) = self.containers[index].current.clone() else {
                continue;
            };
            let name = self.containers[index].name.clone();
            self.container_event(
                pod,
                &name,
                false,
                "Killing",
                &format!("Stopping container {name}"),
            );
            let _ = docker::docker(["stop", "--time", &grace.to_string(), &id]).await;
        }
        self.remove_containers().await;
        let mut store = self.shared.store();
        if store.get(&self.key).is_some_and(|p| uid_of(p) == self.uid) {
            store.remove(&self.key);
        }
    }

    async fn remove_containers(&mut self) {
        let mut ids = Vec::new();
        for container in &mut self.containers {
            ids.extend(container.current.take());
            ids.extend(container.last_terminated.take().map(|t| t.container_id));
        }
        if self.docker && !ids.is_empty() {
            let mut args = vec!["rm".to_string(), "-f".into(), "-v".into()];
            args.extend(ids);
            let _ = docker::docker(args).await;
        }
        self.shared.set_ports(&self.uid, Vec::new());
    }

    fn transition(&mut self, kind: &'static str, value: bool) -> String {
        let entry = self
            .transitions
            .entry(kind)
            .or_insert_with(|| (value, util::now()));
        if entry.0 != value {
            *entry = (value, util::now());
        }
        entry.1.clone()
    }

    fn status(&mut self, pod: &Value) -> Value {
        let all_ready = !self.containers.is_empty() && self.containers.iter().all(|c| c.ready);
        let all_ran = self
            .containers
            .iter()
            .all(|c| c.runs > 0 && (c.current.is_some() || c.last_terminated.is_some()));
        let never_restart = pod.pointer("/spec/restartPolicy").and_then(Value::as_str) == Some("Never");
        let all_done = self
            .containers
            .iter()
            .all(|c| c.current.is_none() && c.last_terminated.is_some());
        let phase = if never_restart && all_done && !self.containers.is_empty() {
            if self
                .containers
                .iter()
                .all(|c| c.last_terminated.as_ref().is_some_and(|t| t.exit_code == 0))
            {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if all_ran {
            "Running"
        } else {
            "Pending"
        };
        let unready: Vec<String> = self
            .containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.clone())
            .collect();
        let volumes_ready = self.volumes_ready;
        let mut conditions = Vec::new();
        let mut condition = |worker: &mut Self,
                             kind: &'static str,
                             ok: bool,
                             reason: Option<&str>,
                             message: Option<String>| {
            let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                "lastProbeTime": null, "lastTransitionTime": worker.transition(kind, ok)});
            if let (false, Some(reason)) = (ok, reason) {
                c["reason"] = json!(reason);
            }
            if let (false, Some(message)) = (ok, message) {
                c["message"] = json!(message);
            }
            conditions.push(c);
        };
        let unready_message = format!("containers with unready status: [{}]", unready.join(" "));
        condition(self, "PodReadyToStartContainers", volumes_ready, None, None);
        condition(self, "Initialized", true, None, None);
        condition(
            self,
            "Ready",
            all_ready,
            Some("ContainersNotReady"),
            Some(unready_message.clone()),
        );
        condition(
            self,
            "ContainersReady",
            all_ready,
            Some("ContainersNotReady"),
            Some(unready_message),
        );
        condition(self, "PodScheduled", true, None, None);
        let statuses: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                let state = match (&c.current, &c.waiting, &c.last_terminated) {
                    (Some(_), _, _) => json!({"running": {"startedAt": c.started_at}}),
                    (None, Some((reason, message)), _) => {
                        let mut waiting = json!({"reason": reason});
                        if !message.is_empty() {
                            waiting["message"] = json!(message);
                        }
                        json!({"waiting": waiting})
                    }
                    (None, None, Some(terminated)) => json!({"terminated": terminated.to_json()}),
                    (None, None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
                };
                let last_state = match (&c.current, &c.waiting, &c.last_terminated) {
                    (None, None, Some(_)) => json!({}),
                    (_, _, Some(terminated)) => json!({"terminated": terminated.to_json()}),
                    _ => json!({}),
                };
                let image_id = c.image_id.as_ref().map_or_else(String::new, |id| {
                    if c.image().contains("@sha256:") {
                        format!("docker-pullable://{}", c.image())
                    } else {
                        format!("docker://{id}")
                    }
                });
                let mut status = json!({
                    "name": c.name,
                    "image": c.image(),
                    "imageID": image_id,
                    "ready": c.ready,
                    "started": c.started(),
                    "restartCount": c.runs.saturating_sub(1),
                    "state": state,
                    "lastState": last_state,
                });
                if let Some(id) = c
                    .current
                    .as_ref()
                    .or(c.last_terminated.as_ref().map(|t| &t.container_id))
                {
                    status["containerID"] = json!(format!("docker://{id}"));
                }
                status
            })
            .collect();
        let qos = {
            let containers = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = |section: &str| {
                containers.iter().any(|c| {
                    get_path(c, &format!("resources.{section}"))
                        .and_then(Value::as_object)
                        .is_some_and(|m| !m.is_empty())
                })
            };
            if !has("requests") && !has("limits") {
                "BestEffort"
            } else {
                "Burstable"
            }
        };
        let mut status = Map::new();
        status.insert("phase".into(), json!(phase));
        status.insert("conditions".into(), Value::Array(conditions));
        status.insert("hostIP".into(), json!("127.0.0.1"));
        status.insert("hostIPs".into(), json!([{"ip": "127.0.0.1"}]));
        if phase != "Pending" || self.containers.iter().any(|c| c.current.is_some()) {
            status.insert("podIP".into(), json!(self.pod_ip));
            status.insert("podIPs".into(), json!([{"ip": self.pod_ip}]));
        }
        status.insert("startTime".into(), json!(self.start_time));
        status.insert("containerStatuses".into(), Value::Array(statuses));
        status.insert("qosClass".into(), json!(qos));
        Value::Object(status)
    }

    fn write_status(&mut self) {
        let Some(pod) = self.pod() else { return };
        let status = self.status(&pod);
        if pod.get("status") == Some(&status) {
            return;
        }
        let mut next = (*pod).clone();
        next["status"] = status;
        let _ = self.shared.store().update(
            IDS.pods,
            namespace_of(&pod),
            name_of(&pod),
            next,
            Part::Status,
            &Writer::system(KUBELET),
        );
    }
}

/// The container's ports as published on loopback, read from `docker inspect`.
fn published_ports(spec: &Value, container: &str, inspected: &Value) -> Vec<PublishedPort> {
    ports::of_container(spec)
        .into_iter()
        .filter_map(|port| {
            let binding = inspected
                .pointer("/NetworkSettings/Ports")?
                .get(port.docker_key())?
                .as_array()?
                .first()?;
            let host_port: u16 = binding.get("HostPort")?.as_str()?.parse().ok()?;
            let address = SocketAddr::from(([127, 0, 0, 1], host_port));
            Some(PublishedPort {
                container: container.to_string(),
                name: port.name,
                container_port: port.number,
                address,
            })
        })
        .collect()
}

/// What in `pod` this kubelet does not run, if anything: it mounts only emptyDir volumes,
/// sets only literal environment values and runs pods on their own network, which is all
/// the project's manifests ask for. A real kubelet would run the rest; this one refuses
/// it by name rather than run the pod differently.
fn unsupported(pod: &Value) -> Option<String> {
    if let Some(volume) = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|volume| volume.get("emptyDir").is_none())
    {
        let name = volume.get("name").and_then(Value::as_str).unwrap_or_default();
        return Some(format!(
            "fake-kube's kubelet mounts only emptyDir volumes, and volume {name:?} is not one"
        ));
    }
    if pod.pointer("/spec/hostNetwork") == Some(&json!(true)) {
        return Some("fake-kube's kubelet does not run pods on the host's network".to_owned());
    }
    for container in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
        if container.get("envFrom").is_some() {
            return Some(format!(
                "fake-kube's kubelet sets only literal environment values, and container {name:?} has envFrom"
            ));
        }
        if let Some(variable) = container
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|variable| variable.get("valueFrom").is_some())
        {
            let variable = variable.get("name").and_then(Value::as_str).unwrap_or_default();
            return Some(format!(
                "fake-kube's kubelet sets only literal environment values, and {variable:?} of container {name:?} takes its value from elsewhere"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_references_expand_as_the_kubelet_does() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        assert_eq!(expand("$(A)-$(B)-$(C)-$$(A)-$", &env), "1-two-$(C)-$(A)-$");
    }

    #[test]
    fn what_this_kubelet_does_not_run_is_named() {
        let pod = |spec: Value| json!({"spec": spec});
        let manifests = pod(json!({"volumes": [{"name": "tmp", "emptyDir": {}}],
            "containers": [{"name": "score", "env": [{"name": "A", "value": "b"}]}]}));
        assert_eq!(unsupported(&manifests), None);
        let refused = [
            pod(json!({"volumes": [{"name": "model", "configMap": {"name": "m"}}]})),
            pod(json!({"hostNetwork": true})),
            pod(json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]})),
            pod(
                json!({"containers": [{"name": "c", "env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}),
            ),
        ];
        let messages: Vec<String> = refused.iter().filter_map(unsupported).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(
            messages[0].contains("volume \"model\" is not one"),
            "{}",
            messages[0]
        );
        assert!(
            messages[3].contains("\"IP\" of container \"c\""),
            "{}",
            messages[3]
        );
    }

    #[test]
    fn pull_policy_defaults_follow_the_tag() {
        assert_eq!(pull_policy(&json!({}), "r/x@sha256:ab"), "IfNotPresent");
        assert_eq!(pull_policy(&json!({}), "localhost:5000/x:1.2"), "IfNotPresent");
        assert_eq!(pull_policy(&json!({}), "localhost:5000/x"), "Always");
        assert_eq!(pull_policy(&json!({}), "x:latest"), "Always");
        assert_eq!(pull_policy(&json!({"imagePullPolicy": "Never"}), "x"), "Never");
    }
}
