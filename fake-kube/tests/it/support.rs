//! What the tests share: a fake cluster with a kubeconfig and a kubectl cache of its own,
//! running the real kubectl against it; the dev overlay rendered by the real kustomize;
//! and, for the Docker tests, a test image pushed to a real registry on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fake_kube::registry::LocalRegistry;
use fake_kube::{ClusterOptions, FakeCluster, Kubelet, RunningCluster};
use serde_json::Value;

pub(crate) const TOKEN: &str = "fake-kube-test-token";
const KUBECTL: &str = "/usr/bin/kubectl";
/// No single kubectl call in these tests should take longer.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(150);

/// A directory under cargo's per-target temporary directory, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The outcome of one command.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs a command with a deadline, feeding it `stdin`.
pub(crate) fn run(command: &mut Command, stdin: Option<&str>, timeout: Duration) -> Run {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break status.code(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Run {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A fake cluster and everything kubectl needs to talk to it.
pub(crate) struct Kube {
    pub(crate) cluster: RunningCluster,
    dir: TempDir,
}

impl Kube {
    pub(crate) fn start(options: ClusterOptions) -> Kube {
        let cluster = FakeCluster::start_blocking(options).expect("start the fake cluster");
        let dir = TempDir::new("kube");
        std::fs::create_dir_all(dir.path().join("cache")).expect("create the kubectl cache directory");
        let kube = Kube { cluster, dir };
        kube.write_kubeconfig(TOKEN);
        kube
    }

    /// A cluster whose containers only appear to run: for tests that need no Docker.
    pub(crate) fn simulated() -> Kube {
        Kube::start(ClusterOptions {
            kubelet: Kubelet::Simulated,
            ..ClusterOptions::new(TOKEN)
        })
    }

    pub(crate) fn write_kubeconfig(&self, token: &str) {
        std::fs::write(
            self.dir.path().join("kubeconfig"),
            self.cluster.kubeconfig("fake", token),
        )
        .expect("write the kubeconfig");
    }

    /// Replaces the kubeconfig outright (for a user other than a static token).
    pub(crate) fn write_kubeconfig_text(&self, text: &str) {
        std::fs::write(self.dir.path().join("kubeconfig"), text).expect("write the kubeconfig");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KUBECTL);
        command
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .env_remove("CLOUDSDK_AUTH_ACCESS_TOKEN");
        command
    }

    pub(crate) fn kubectl_with_input(&self, args: &[&str], stdin: Option<&str>) -> Run {
        run(&mut self.command(args), stdin, KUBECTL_TIMEOUT)
    }

    pub(crate) fn kubectl_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        run(&mut command, None, KUBECTL_TIMEOUT)
    }

    pub(crate) fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_with_input(args, None)
    }

    /// Runs kubectl and expects success; a failure shows kubectl's output and the
    /// server's request log.
    pub(crate) fn kubectl_ok(&self, args: &[&str]) -> String {
        let run = self.kubectl(args);
        assert!(
            run.ok(),
            "kubectl {args:?} failed: {run:#?}\n{}",
            self.request_log()
        );
        run.stdout
    }

    /// `kubectl rollout status` of the test app's Deployment, waiting at most `timeout`.
    pub(crate) fn rollout_status(&self, timeout: &str) -> Run {
        let timeout = format!("--timeout={timeout}");
        self.kubectl(&[
            "rollout",
            "status",
            "deployment/score-app",
            "-n",
            "mlops",
            &timeout,
        ])
    }

    /// Waits for the test app's rollout to finish, and expects it to.
    pub(crate) fn wait_for_rollout(&self, timeout: &str) {
        let run = self.rollout_status(timeout);
        assert!(
            run.ok(),
            "the rollout did not finish: {run:#?}\n{}",
            self.request_log()
        );
    }

    pub(crate) fn apply(&self, manifest: &str) -> Run {
        self.kubectl_with_input(
            &["apply", "--server-side", "--field-manager=cargo-xtask", "-f", "-"],
            Some(manifest),
        )
    }

    pub(crate) fn apply_ok(&self, manifest: &str) -> String {
        let run = self.apply(manifest);
        assert!(run.ok(), "kubectl apply failed: {run:#?}\n{}", self.request_log());
        run.stdout
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut with_output = args.to_vec();
        with_output.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&with_output)).expect("kubectl printed JSON")
    }

    /// Polls a kubectl query until `done` accepts its stdout.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        args: &[&str],
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.kubectl(args);
            if run.ok() && done(&run.stdout) {
                return run.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last: {run:#?}\n{}",
                self.request_log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub(crate) fn request_log(&self) -> String {
        let lines = self.cluster.requests();
        format!(
            "request log ({} requests):\n  {}",
            lines.len(),
            lines.join("\n  ")
        )
    }
}

/// An overlay of the project's manifests as the real `kubectl kustomize` renders it, with
/// the project's image placeholder replaced.
pub(crate) fn overlay(name: &str, image: &str) -> String {
    static RENDERED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut rendered = RENDERED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = match rendered.iter().find(|(n, _)| n == name) {
        Some((_, text)) => text.clone(),
        None => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../manifests/overlays")
                .join(name);
            let run = run(
                Command::new(KUBECTL).arg("kustomize").arg(&dir),
                None,
                Duration::from_secs(60),
            );
            assert!(run.ok(), "kubectl kustomize {} failed: {run:#?}", dir.display());
            assert!(
                run.stdout.contains("image: score-service\n"),
                "the overlay names its image score-service"
            );
            rendered.push((name.to_string(), run.stdout.clone()));
            run.stdout
        }
    };
    text.replace("image: score-service\n", &format!("image: {image}\n"))
}

/// The dev overlay, with `image`.
pub(crate) fn dev_overlay(image: &str) -> String {
    overlay("dev", image)
}

/// A placeholder image for clusters whose containers do not really run.
pub(crate) const SIMULATED_IMAGE: &str =
    "registry.invalid/score-service@sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Runs a program, expecting success.
fn must(program: &str, args: &[&str]) -> String {
    let run = run(Command::new(program).args(args), None, Duration::from_secs(180));
    assert!(run.ok(), "{program} {args:?} failed: {run:#?}");
    run.stdout.trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The test image (`tests/testapp/app.rs`, static, `FROM scratch`, user 65532) pushed to
/// a loopback registry, as `localhost:PORT/fake-kube-testapp@sha256:…`. Built once per
/// test process, in a directory of its own: a runner that gives every test its own
/// process (nextest) builds several at once.
pub(crate) fn test_image() -> &'static str {
    static REGISTRY: Mutex<Option<LocalRegistry>> = Mutex::new(None);
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Earlier processes' directories, once those processes are gone.
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("fake-kube-testapp-"));
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = parent.join(format!("fake-kube-testapp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the image directory");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testapp/app.rs");
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let binary = dir.join("app");
        must(
            "rustc",
            &[
                "--edition=2024",
                "-C",
                "opt-level=1",
                "-C",
                "target-feature=+crt-static",
                "--target",
                &triple,
                &source.to_string_lossy(),
                "-o",
                &binary.to_string_lossy(),
            ],
        );
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM scratch\nCOPY app /app\nUSER 65532:65532\nEXPOSE 5000\nENTRYPOINT [\"/app\"]\n",
        )
        .expect("write the Dockerfile");
        // Images earlier runs pulled (by digest, so untagged, from registries long gone)
        // are of no further use; an image a container still uses is refused, which is
        // fine. Tagged ones are another process's, between its build and its push.
        let stale = run(
            Command::new("docker").args([
                "images",
                "--filter",
                "reference=*/fake-kube-testapp",
                "--format",
                "{{.ID}} {{.Tag}}",
            ]),
            None,
            Duration::from_secs(30),
        );
        let untagged = stale
            .stdout
            .lines()
            .filter_map(|line| line.strip_suffix(" <none>"));
        for id in untagged {
            let _ = run(
                Command::new("docker").args(["rmi", id]),
                None,
                Duration::from_secs(30),
            );
        }
        let registry = LocalRegistry::start(&dir);
        let tag = format!("{}/fake-kube-testapp:test", registry.address);
        must(
            "docker",
            &["build", "--quiet", "--tag", &tag, &dir.to_string_lossy()],
        );
        must("docker", &["push", "--quiet", &tag]);
        let digest = must(
            "docker",
            &["inspect", "--format", "{{index .RepoDigests 0}}", &tag],
        );
        // Untagged, so the kubelet has to pull it by digest, as a cluster would.
        must("docker", &["rmi", &tag]);
        *REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(registry);
        assert!(digest.contains("@sha256:"), "a digest reference: {digest}");
        digest
    })
}

/// The loopback port a LoadBalancer proxy can take, for a test's own Service.
pub(crate) fn unused_port() -> u16 {
    free_port()
}

/// One HTTP GET, for checking what answers behind a load balancer.
pub(crate) fn http_get(host: &str, port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
