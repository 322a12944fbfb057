//! Probes: `httpGet` (a plain HTTP/1.1 GET, success on 200–399 as the kubelet counts
//! it), run against the container's published loopback port. The project's probes are
//! all HTTP; other handlers are reported unsupported, not run differently.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What to probe, resolved against the running container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Check {
    Http {
        address: SocketAddr,
        path: String,
        shown_as: String,
    },
    /// A handler this fake does not run (tcpSocket, exec, gRPC, HTTPS, a port that is not
    /// published).
    Unsupported(String),
}

/// The timing fields of a probe, with the kubelet's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timing {
    pub(crate) initial_delay: Duration,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_threshold: u32,
    pub(crate) failure_threshold: u32,
}

/// Probe periods are capped so tests do not wait out a production-sized period; the
/// order of events (and the thresholds) stay as configured.
const LONGEST_PERIOD: Duration = Duration::from_secs(1);

impl Timing {
    pub(crate) fn of(probe: &Value) -> Self {
        let seconds = |field: &str, default: u64| {
            Duration::from_secs(probe.get(field).and_then(Value::as_u64).unwrap_or(default))
        };
        let count = |field: &str, default: u32| {
            probe
                .get(field)
                .and_then(Value::as_u64)
                .map_or(default, |v| v.max(1) as u32)
        };
        Timing {
            initial_delay: seconds("initialDelaySeconds", 0).min(LONGEST_PERIOD),
            period: seconds("periodSeconds", 10).min(LONGEST_PERIOD),
            timeout: seconds("timeoutSeconds", 1),
            success_threshold: count("successThreshold", 1),
            failure_threshold: count("failureThreshold", 3),
        }
    }
}

/// Runs a check once: Ok, or the failure as the kubelet's event would word it.
pub(crate) async fn run(check: &Check, timeout: Duration) -> Result<(), String> {
    match check {
        Check::Http {
            address,
            path,
            shown_as,
        } => match tokio::time::timeout(timeout, http_get(*address, path)).await {
            Ok(Ok(status)) if (200..400).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(format!("HTTP probe failed with statuscode: {status}")),
            Ok(Err(error)) => Err(format!("Get \"{shown_as}\": {error}")),
            Err(_) => Err(format!(
                "Get \"{shown_as}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        },
        Check::Unsupported(what) => Err(what.clone()),
    }
}

async fn http_get(address: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("dial tcp {address}: connect: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let read = stream.read(&mut buffer).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("EOF".into());
        }
        head.extend_from_slice(&buffer[..read]);
        if head.len() > 8192 {
            return Err("malformed HTTP response".into());
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "malformed HTTP status line {:?}",
                line.lines().next().unwrap_or_default()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timing_caps_periods_and_defaults_thresholds() {
        let timing = Timing::of(&json!({"periodSeconds": 5, "failureThreshold": 2}));
        assert_eq!(timing.period, LONGEST_PERIOD);
        assert_eq!(timing.failure_threshold, 2);
        assert_eq!(timing.success_threshold, 1);
    }

    #[tokio::test]
    async fn http_probes_read_the_status_line() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                stream.write_all(response.as_bytes()).await.expect("write");
            }
        });
        let check = Check::Http {
            address,
            path: "/readyz".into(),
            shown_as: "http://x/readyz".into(),
        };
        assert_eq!(run(&check, Duration::from_secs(1)).await, Ok(()));
        assert_eq!(
            run(&check, Duration::from_secs(1)).await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
    }
}
