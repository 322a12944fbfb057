//! A real OCI registry (Debian's `docker-registry`) on a loopback port, for tests whose
//! kubelet pulls by digest: fake-kube's own, and the xtask's rehearsal.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A registry that lives as long as this value, or the test process: a shell starts it
/// and kills it when its stdin, held open here, reaches end of file.
pub struct LocalRegistry {
    /// `localhost:PORT`, as image references name it.
    pub address: String,
    _child: Child,
    _lifeline: ChildStdin,
}

impl LocalRegistry {
    /// Starts a registry storing under `dir`, and waits until `GET /v2/` answers 200.
    pub fn start(dir: &Path) -> LocalRegistry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(dir, port)
    }

    /// Starts a registry on `port` storing under `dir`: the one a dropped registry left,
    /// back again with what it stored.
    pub fn start_on(dir: &Path, port: u16) -> LocalRegistry {
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("registry-data").display()
            ),
        )
        .expect("write the registry config");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(
                r#"docker-registry serve "$0" >"$1" 2>&1 & pid=$!; read _; kill $pid; wait $pid 2>/dev/null"#,
            )
            .arg(&config)
            .arg(dir.join("registry.log"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let lifeline = child.stdin.take().expect("stdin is piped");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !answers_v2(port) {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {port}: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        LocalRegistry {
            address: format!("localhost:{port}"),
            _child: child,
            _lifeline: lifeline,
        }
    }
}

fn answers_v2(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = String::new();
    stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && (answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"))
}
