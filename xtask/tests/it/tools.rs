//! `tools` and `install-kustomize`: the real gcloud's own answer on authentication, and a
//! real release archive served from loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::support::*;

const VERSION: &str = "5.5.0";

fn xtask_with(env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args).env_remove("XTASK_TARGET");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    eprintln!(
        "xtask {args:?} -> {}\n{}{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

#[test]
#[ignore = "needs gcloud with gke-gcloud-auth-plugin, and kubectl"]
fn tools_asks_gcloud_itself_whether_it_can_authenticate() {
    let scratch = scratch_dir("tools-auth");
    let config = scratch.join("gcloud");
    std::fs::create_dir_all(&config).unwrap();
    let without = xtask_with(&[("CLOUDSDK_CONFIG", &config)], &["tools"]);
    assert!(!without.status.success());
    assert!(
        stdout(&without).contains("NOT AUTHENTICATED: run `gcloud auth login`"),
        "{}",
        stdout(&without)
    );
    for tool in ["gcloud ", "kubectl ", "gke-gcloud-auth-plugin ", "docker "] {
        assert!(
            stdout(&without)
                .lines()
                .any(|l| l.starts_with(tool) && !l.contains("MISSING")),
            "{tool}"
        );
    }

    // CI authenticates without any account: an access-token file is enough for gcloud.
    let token = scratch.join("token");
    std::fs::write(&token, "not-a-real-token").unwrap();
    let with = xtask_with(
        &[
            ("CLOUDSDK_CONFIG", &config),
            ("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", &token),
        ],
        &["tools"],
    );
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(stdout(&with).contains("gcloud authentication    yes (access token file)"));
    assert!(
        !stdout(&with).contains("not-a-real-token") && !stderr(&with).contains("not-a-real-token"),
        "the token never shows"
    );
}

/// Serves the files of `dir` under `/kustomize%2Fv5.5.0/`, as GitHub serves a release.
fn serve_release(dir: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line.split(' ').nth(1).unwrap_or("");
            let file = path
                .strip_prefix(&format!("/kustomize%2Fv{VERSION}/"))
                .map(|name| dir.join(name));
            match file.and_then(|file| std::fs::read(file).ok()) {
                Some(body) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                }
                None => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    port
}

/// A release directory: an archive holding a `kustomize` (a script standing in for the
/// binary, which answers `version` and builds through kubectl), and checksums.txt.
fn release(dir: &Path, corrupt_checksum: bool) {
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let script = staging.join("kustomize");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nif [ \"$1\" = version ]; then echo v{VERSION}; exit 0; fi\nif [ \"$1\" = build ]; then shift; exec kubectl kustomize \"$@\"; fi\nexit 2\n"),
    )
    .unwrap();
    let status = Command::new("chmod").arg("755").arg(&script).status().unwrap();
    assert!(status.success());
    let archive = format!("kustomize_v{VERSION}_linux_amd64.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(dir.join(&archive))
        .arg("-C")
        .arg(&staging)
        .arg("kustomize")
        .status()
        .unwrap();
    assert!(status.success());
    let mut hash: String = Sha256::digest(std::fs::read(dir.join(&archive)).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if corrupt_checksum {
        hash = hash.chars().rev().collect();
    }
    std::fs::write(
        dir.join("checksums.txt"),
        format!(
            "{}  kustomize_v{VERSION}_darwin_amd64.tar.gz\n{hash}  {archive}\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
}

#[test]
#[ignore = "needs kubectl (render runs the installed kustomize beside it)"]
fn install_kustomize_installs_a_verified_release_that_render_then_uses() {
    let scratch = scratch_dir("kustomize-good");
    let (served, tools) = (scratch.join("release"), scratch.join("tools"));
    std::fs::create_dir_all(&served).unwrap();
    release(&served, false);
    let base = format!("http://127.0.0.1:{}", serve_release(served));
    let output = xtask_with(
        &[("XTASK_TOOLS_DIR", &tools)],
        &["install-kustomize", "--version", VERSION, "--base-url", &base],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("v{VERSION}")),
        "the installed binary ran"
    );
    let installed = tools.join("kustomize");
    assert!(installed.is_file());

    // render now builds with it.
    let state = scratch.join("state");
    std::fs::create_dir_all(state.join("gke")).unwrap();
    // A record of this tree's push, as its dry run names it.
    let plan = xtask_with(
        &[("XTASK_STATE_DIR", &state)],
        &["--dry-run", "render", "--project", "my-proj-1"],
    );
    let image = stdout(&plan)
        .lines()
        .find_map(|line| {
            line.split_once("it must record the push of ")
                .map(|(_, image)| image.to_owned())
        })
        .expect("render's plan names the image it pins");
    std::fs::write(
        state.join("gke/pushed.json"),
        serde_json::json!({
            "tag": "t",
            "image": image,
            "pinned": "us-west1-docker.pkg.dev/my-proj-1/ml-images/score-service@sha256:1111111111111111111111111111111111111111111111111111111111111111",
        })
        .to_string(),
    )
    .unwrap();
    let rendered = xtask_with(
        &[("XTASK_TOOLS_DIR", &tools), ("XTASK_STATE_DIR", &state)],
        &["render", "--project", "my-proj-1"],
    );
    assert!(rendered.status.success());
    assert!(
        stderr(&rendered).contains(&format!("$ {} build ", installed.display())),
        "{}",
        stderr(&rendered)
    );
    assert!(
        stdout(&rendered)
            .contains("@sha256:1111111111111111111111111111111111111111111111111111111111111111")
    );
}

#[test]
fn install_kustomize_refuses_an_archive_whose_checksum_does_not_match() {
    let scratch = scratch_dir("kustomize-bad");
    let (served, tools) = (scratch.join("release"), scratch.join("tools"));
    std::fs::create_dir_all(&served).unwrap();
    release(&served, true);
    let base = format!("http://127.0.0.1:{}", serve_release(served));
    let output = xtask_with(
        &[("XTASK_TOOLS_DIR", &tools)],
        &["install-kustomize", "--base-url", &base],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("SHA-256 mismatch") && stderr(&output).contains("nothing was installed")
    );
    assert!(!tools.join("kustomize").exists(), "nothing installed");
    assert!(
        !tools
            .join(format!("downloads/kustomize_v{VERSION}_linux_amd64.tar.gz"))
            .exists(),
        "the bad download is gone"
    );
    assert!(
        !stderr(&output).contains("$ tar"),
        "the archive was never unpacked"
    );
}

#[test]
#[ignore = "needs kubectl"]
fn tools_asks_the_cluster_whether_you_may_do_what_the_plans_do() {
    use fake_kube::{ClusterOptions, FakeCluster, Kubelet};
    let kube = FakeCluster::start_blocking(ClusterOptions {
        kubelet: Kubelet::Simulated,
        // A role with everything but the pod proxy, as a cautious admin might write it.
        denied: vec!["create pods/proxy".to_owned()],
        ..ClusterOptions::new("tools-token")
    })
    .unwrap();
    let scratch = scratch_dir("tools-access");
    let kubeconfig = scratch.join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig("fake", "tools-token")).unwrap();
    let cache = scratch.join("kube-cache");
    let env = [
        ("KUBECONFIG", kubeconfig.as_path()),
        ("KUBECACHEDIR", cache.as_path()),
    ];
    let output = xtask_with(&env, &["tools", "--target", "kube", "--context", "fake"]);
    assert!(!output.status.success());
    let out = stdout(&output);
    let answer = |asked: &str| {
        out.lines()
            .find(|line| line.starts_with(asked))
            .unwrap_or_else(|| panic!("{asked:?} not asked:\n{out}"))
            .to_owned()
    };
    assert!(answer("may create pods/proxy in mlops").contains("NO: needed to send a canary's check rows"));
    assert!(answer("may get pods/proxy in mlops").contains("yes"));
    assert!(answer("may patch deployments in mlops").contains("yes"));
    assert!(
        !out.contains("gcloud"),
        "another cluster needs nothing of Google's:\n{out}"
    );
    assert!(
        stderr(&output).contains("missing: permission to create pods/proxy"),
        "{}",
        stderr(&output)
    );
    // And the fake refuses what it said no to, as RBAC does.
    let refused = Command::new("kubectl")
        .args([
            "create",
            "--raw",
            "/api/v1/namespaces/mlops/pods/any:http/proxy/score",
            "--filename",
            "/dev/null",
            "--context",
            "fake",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("KUBECACHEDIR", &cache)
        .output()
        .unwrap();
    assert!(
        stderr(&refused)
            .contains("cannot create resource \"pods/proxy\" in API group \"\" in the namespace \"mlops\""),
        "{}",
        stderr(&refused)
    );
}
