//! `GET …/pods/NAME/log`: `docker logs` of the container the kubelet would choose
//! (the running one, else the last terminated one), stdout and stderr together, as
//! text/plain; streamed with `follow=true`.

use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::Kubelet;
use crate::api::Query;
use crate::cluster::Shared;
use crate::error::ApiError;
use crate::server::Body;
use crate::util::name_of;

/// Which container's logs, by the kubelet's rules (`validateContainerLogStatus`).
fn container_id(pod: &Value, container: &str, previous: bool) -> Result<String, ApiError> {
    let pod_name = name_of(pod);
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let status = statuses
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"
            ))
        })?;
    let id = |state: Option<&Value>| {
        state
            .and_then(|s| s.get("containerID"))
            .and_then(Value::as_str)
            .and_then(|id| id.strip_prefix("docker://"))
            .map(str::to_string)
    };
    let last_terminated = status.pointer("/lastState/terminated");
    if previous {
        return id(last_terminated).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ))
        });
    }
    if status.pointer("/state/running").is_some() {
        return status
            .get("containerID")
            .and_then(Value::as_str)
            .and_then(|id| id.strip_prefix("docker://"))
            .map(str::to_string)
            .ok_or_else(|| ApiError::Internal("a running container without an id".into()));
    }
    if let Some(found) = id(status.pointer("/state/terminated")).or_else(|| id(last_terminated)) {
        return Ok(found);
    }
    let reason = status
        .pointer("/state/waiting/reason")
        .and_then(Value::as_str)
        .unwrap_or("ContainerCreating");
    let why = match reason {
        "ErrImagePull" => "image can't be pulled".to_string(),
        "ImagePullBackOff" => "trying and failing to pull image".to_string(),
        other => other.to_string(),
    };
    Err(ApiError::BadRequest(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
    )))
}

fn default_container(pod: &Value) -> Option<String> {
    if let Some(name) = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .and_then(Value::as_str)
    {
        return Some(name.to_string());
    }
    pod.pointer("/spec/containers/0/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn text_response(receiver: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::Stream(receiver));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

pub(crate) async fn serve(
    shared: &Arc<Shared>,
    pod: &Value,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let container = match query.get("container") {
        Some(name) => name.to_string(),
        None => default_container(pod)
            .ok_or_else(|| ApiError::BadRequest(format!("pod {:?} has no containers", name_of(pod))))?,
    };
    let known = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(container.as_str()))
        });
    if !known {
        return Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {}",
            name_of(pod)
        )));
    }
    let previous = matches!(query.get("previous"), Some("true" | "1"));
    let follow = matches!(query.get("follow"), Some("true" | "1"));
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    if shared.options.kubelet == Kubelet::Simulated {
        // Simulated containers print nothing.
        drop(sender);
        return Ok(text_response(receiver));
    }
    let id = container_id(pod, &container, previous)?;
    let mut args = vec!["logs".to_string()];
    if let Some(lines) = query.get("tailLines") {
        args.extend(["--tail".to_string(), lines.to_string()]);
    }
    if let Some(seconds) = query.get("sinceSeconds") {
        args.extend(["--since".to_string(), format!("{seconds}s")]);
    }
    if matches!(query.get("timestamps"), Some("true" | "1")) {
        args.push("--timestamps".into());
    }
    if follow {
        args.push("--follow".into());
    }
    args.push(id);
    let limit: Option<usize> = query.get("limitBytes").and_then(|l| l.parse().ok());
    let mut child = Command::new("docker")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A client that hangs up on `logs -f` ends the `docker logs -f` too.
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| ApiError::Internal(format!("cannot run docker logs: {error}")))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut shutdown = shared.shutdown_signal();
    tokio::spawn(async move {
        // The container's stdout and stderr arrive on two pipes; interleave them as they
        // come, which is how the kubelet's log file orders them too, near enough.
        let pump = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
                    sender: mpsc::Sender<Bytes>| async move {
            let Some(mut pipe) = pipe else { return };
            let mut buffer = vec![0u8; 8192];
            loop {
                match pipe.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => {
                        if sender
                            .send(Bytes::copy_from_slice(&buffer[..read]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        };
        let (merged_tx, mut merged_rx) = mpsc::channel::<Bytes>(64);
        let out = pump(stdout.map(|p| Box::new(p) as _), merged_tx.clone());
        let err = pump(stderr.map(|p| Box::new(p) as _), merged_tx);
        let forward = async {
            let mut sent = 0usize;
            while let Some(chunk) = merged_rx.recv().await {
                let chunk = match limit {
                    Some(limit) if sent + chunk.len() > limit => chunk.slice(..limit - sent),
                    _ => chunk,
                };
                sent += chunk.len();
                if chunk.is_empty() || sender.send(chunk).await.is_err() {
                    return;
                }
                if limit.is_some_and(|l| sent >= l) {
                    return;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(out, err, forward) } => {}
            () = shutdown.wait() => {}
        }
        let _ = child.kill().await;
    });
    Ok(text_response(receiver))
}
