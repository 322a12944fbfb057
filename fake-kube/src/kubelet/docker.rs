//! The container runtime: the `docker` CLI. Every container carries labels naming the
//! cluster and the process that started it, so a cluster can remove all of its own, and
//! a later cluster can remove those a killed process left behind.

use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use crate::ports::DeclaredPort;

/// Labels on every container.
pub(crate) const CLUSTER_LABEL: &str = "fake-kube.cluster";
pub(crate) const PID_LABEL: &str = "fake-kube.pid";
/// The PID namespace the pid of `PID_LABEL` belongs to: another run sharing the Docker
/// engine from another container has pids this process cannot see.
pub(crate) const PID_NAMESPACE_LABEL: &str = "fake-kube.pid-namespace";

/// This process's PID namespace, as the kernel names it (`pid:[4026531836]`): unique
/// among the namespaces of the kernel the Docker engine shares.
pub(crate) fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|link| link.display().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
pub(crate) const POD_LABEL: &str = "fake-kube.pod";

/// Why a `docker` command gave no answer. Its text is what the kubelet reports (a
/// container's waiting message, an event), so a failed command reads as docker's stderr.
#[derive(Debug)]
pub(crate) enum DockerError {
    /// The client could not be started.
    Spawn(std::io::Error),
    /// It ran and failed: its stderr, or its exit status when it printed nothing.
    Failed {
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// `docker inspect` printed what is not its JSON.
    Unreadable(serde_json::Error),
    /// `docker inspect` knows no such container.
    NoContainer(String),
}

impl std::fmt::Display for DockerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerError::Spawn(_) => write!(f, "cannot run docker"),
            DockerError::Failed { status, stderr } if stderr.is_empty() => {
                write!(f, "docker exited with {status}")
            }
            DockerError::Failed { stderr, .. } => f.write_str(stderr),
            DockerError::Unreadable(_) => write!(f, "unreadable docker inspect output"),
            DockerError::NoContainer(id) => write!(f, "docker inspect found no container {id}"),
        }
    }
}

impl DockerError {
    /// The error and its cause on one line, as a pod's status message carries it.
    pub(crate) fn message(&self) -> String {
        match std::error::Error::source(self) {
            Some(cause) => format!("{self}: {cause}"),
            None => self.to_string(),
        }
    }
}

impl std::error::Error for DockerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DockerError::Spawn(error) => Some(error),
            DockerError::Unreadable(error) => Some(error),
            DockerError::Failed { .. } | DockerError::NoContainer(_) => None,
        }
    }
}

/// Runs `docker ARGS`, returning its stdout.
pub(crate) async fn docker<I, S>(args: I) -> Result<String, DockerError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(DockerError::Spawn)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(DockerError::Failed {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Removes containers, blocking: for `Drop`, where nothing can be awaited.
pub(crate) fn remove_blocking(filter_label: &str) {
    let listed = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={filter_label}")])
        .stderr(Stdio::null())
        .output();
    let Ok(listed) = listed else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", "-v"])
        .args(&ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes every container of this cluster.
pub(crate) async fn remove_cluster(cluster_id: &str) {
    let filter = format!("label={CLUSTER_LABEL}={cluster_id}");
    if let Ok(listed) = docker(["ps", "-aq", "--filter", &filter]).await {
        let ids: Vec<&str> = listed.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = docker(args).await;
        }
    }
}

/// Removes containers left by fake-kube processes that no longer run (a test binary
/// killed before its clusters could clean up): only those started from this PID
/// namespace, whose pids this process can look up. Another run sharing the engine from
/// another container (CI jobs side by side) keeps its containers.
pub(crate) async fn remove_orphans() {
    let ours = pid_namespace();
    let format =
        format!("{{{{.ID}}}} {{{{.Label \"{PID_NAMESPACE_LABEL}\"}}}} {{{{.Label \"{PID_LABEL}\"}}}}");
    let Ok(listed) = docker([
        "ps",
        "-a",
        "--filter",
        &format!("label={PID_LABEL}"),
        "--format",
        &format,
    ])
    .await
    else {
        return;
    };
    let orphans: Vec<&str> = listed
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (id, namespace, pid) = (fields.next()?, fields.next()?, fields.next()?);
            if namespace != ours {
                return None;
            }
            let alive = std::path::Path::new(&format!("/proc/{}", pid.trim())).exists();
            (!alive).then_some(id)
        })
        .collect();
    if !orphans.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(orphans);
        let _ = docker(args).await;
    }
}

/// What `docker run` needs for one container.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RunSpec {
    pub(crate) name: String,
    pub(crate) hostname: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) image: String,
    pub(crate) user: Option<String>,
    pub(crate) read_only: bool,
    pub(crate) cap_drop: Vec<String>,
    pub(crate) cap_add: Vec<String>,
    pub(crate) no_new_privileges: bool,
    pub(crate) privileged: bool,
    pub(crate) seccomp_unconfined: bool,
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) cpus: Option<f64>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) entrypoint: Option<String>,
    pub(crate) args: Vec<String>,
    pub(crate) working_dir: Option<String>,
    pub(crate) ports: Vec<DeclaredPort>,
    pub(crate) tmpfs: Vec<String>,
}

impl RunSpec {
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), self.name.clone()];
        args.extend(["--hostname".into(), self.hostname.clone()]);
        for (key, value) in &self.labels {
            args.extend(["--label".into(), format!("{key}={value}")]);
        }
        if let Some(user) = &self.user {
            args.extend(["--user".into(), user.clone()]);
        }
        if self.read_only {
            args.push("--read-only".into());
        }
        for cap in &self.cap_drop {
            args.extend(["--cap-drop".into(), cap.clone()]);
        }
        for cap in &self.cap_add {
            args.extend(["--cap-add".into(), cap.clone()]);
        }
        if self.no_new_privileges {
            args.extend(["--security-opt".into(), "no-new-privileges".into()]);
        }
        if self.seccomp_unconfined {
            args.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
        }
        if self.privileged {
            args.push("--privileged".into());
        }
        if let Some(bytes) = self.memory_bytes {
            args.extend(["--memory".into(), bytes.to_string()]);
        }
        if let Some(cpus) = self.cpus {
            args.extend(["--cpus".into(), format!("{cpus:.3}")]);
        }
        for (key, value) in &self.env {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        if let Some(dir) = &self.working_dir {
            args.extend(["--workdir".into(), dir.clone()]);
        }
        for port in &self.ports {
            args.extend(["--publish".into(), format!("127.0.0.1::{}", port.docker_key())]);
        }
        for path in &self.tmpfs {
            args.extend(["--tmpfs".into(), format!("{path}:rw,mode=1777")]);
        }
        if let Some(entrypoint) = &self.entrypoint {
            args.extend(["--entrypoint".into(), entrypoint.clone()]);
        }
        args.push(self.image.clone());
        args.extend(self.args.iter().cloned());
        args
    }
}

/// `docker inspect` of one container, as JSON.
pub(crate) async fn inspect(id: &str) -> Result<Value, DockerError> {
    let text = docker(["inspect", "--type", "container", id]).await?;
    let parsed: Value = serde_json::from_str(&text).map_err(DockerError::Unreadable)?;
    parsed
        .as_array()
        .and_then(|items| items.first())
        .cloned()
        .ok_or_else(|| DockerError::NoContainer(id.to_owned()))
}

/// An image's id and configured user, if the image is present locally.
pub(crate) async fn local_image(reference: &str) -> Option<(String, String)> {
    let text = docker([
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Config.User}}",
        reference,
    ])
    .await
    .ok()?;
    let (id, user) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    Some((id.to_string(), user.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_arguments_map_the_security_context() {
        let spec = RunSpec {
            name: "fk-p-c".into(),
            hostname: "p".into(),
            labels: vec![(CLUSTER_LABEL.into(), "x".into())],
            image: "localhost:5000/app@sha256:00".into(),
            user: Some("65532:65532".into()),
            read_only: true,
            cap_drop: vec!["ALL".into()],
            no_new_privileges: true,
            memory_bytes: Some(134_217_728),
            env: vec![("A".into(), "b c".into())],
            ports: vec![DeclaredPort {
                name: None,
                number: 5000,
                protocol: "TCP".into(),
            }],
            tmpfs: vec!["/tmp".into()],
            args: vec!["--flag".into()],
            ..RunSpec::default()
        };
        assert_eq!(
            spec.args().join(" "),
            "run -d --name fk-p-c --hostname p --label fake-kube.cluster=x --user 65532:65532 --read-only \
             --cap-drop ALL --security-opt no-new-privileges --memory 134217728 --env A=b c \
             --publish 127.0.0.1::5000/tcp --tmpfs /tmp:rw,mode=1777 localhost:5000/app@sha256:00 --flag"
        );
    }
}
