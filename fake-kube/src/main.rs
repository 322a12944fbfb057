//! `fake-kube`: starts a fake cluster and prints a kubeconfig for it, for trying things
//! by hand. Stops (removing its containers) on Ctrl-C.
//!
//! ```text
//! fake-kube [--token TOKEN] [--kubeconfig PATH] [--simulated] [--progress-deadline SECONDS] [--lb-hostname]
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use fake_kube::{ClusterOptions, FakeCluster, Kubelet};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut options = ClusterOptions::new("fake-kube-token");
    let mut kubeconfig_path = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--token" => options.token = value("--token")?,
            "--kubeconfig" => kubeconfig_path = Some(value("--kubeconfig")?),
            "--simulated" => options.kubelet = Kubelet::Simulated,
            "--lb-hostname" => options.load_balancer_hostname = true,
            "--progress-deadline" => {
                let seconds: u64 = value("--progress-deadline")?
                    .parse()
                    .context("--progress-deadline takes seconds")?;
                options.progress_deadline = Some(Duration::from_secs(seconds));
            }
            "--help" | "-h" => {
                println!(
                    "fake-kube [--token TOKEN] [--kubeconfig PATH] [--simulated] [--progress-deadline SECONDS] [--lb-hostname]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    let token = options.token.clone();
    let cluster = FakeCluster::start(options)
        .await
        .context("start the fake cluster")?;
    let kubeconfig = cluster.kubeconfig("fake-kube", &token);
    match kubeconfig_path {
        Some(path) => {
            std::fs::write(&path, &kubeconfig).with_context(|| format!("write {path}"))?;
            eprintln!(
                "fake-kube: serving {} (kubeconfig in {path}); Ctrl-C stops",
                cluster.url()
            );
        }
        None => {
            print!("{kubeconfig}");
            eprintln!("fake-kube: serving {}; Ctrl-C stops", cluster.url());
        }
    }
    tokio::signal::ctrl_c().await.context("wait for Ctrl-C")?;
    eprintln!("fake-kube: stopping, removing containers");
    for line in cluster.requests().iter().rev().take(20).rev() {
        eprintln!("  {line}");
    }
    cluster.shutdown().await;
    Ok(())
}
