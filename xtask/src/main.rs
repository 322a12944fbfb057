//! `cargo xtask`: build, ship and smoke-test the score service.
//!
//! This file only parses flags and dispatches; each task lives in its own module.

mod bench;
mod ci;
mod cluster;
mod daemon;
mod docker;
mod fixtures;
mod git;
mod gke;
mod image;
mod kustomize;
mod local;
mod plan;
mod push;
mod registry;
mod render;
mod settings;
mod ship;
mod smoke;
mod target;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xshell::Shell;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "Build, ship and smoke-test the score service",
    version
)]
struct Cli {
    /// Print every command the task would run, in order, and run nothing.
    #[arg(long, global = true)]
    dry_run: bool,

    #[command(flatten)]
    settings: settings::SettingsArgs,

    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Build the service and run it on the target, then smoke-test it.
    Ship(ship::ShipCmd),
    /// Send the tutorial's request to a running service and check the answer.
    Smoke(smoke::SmokeCmd),
    /// Stop what `ship` started.
    Down(ship::DownCmd),
    /// Build and tag the container image.
    Image(image::ImageCmd),
    /// Push the image and record the digest the registry stored.
    Push(push::PushCmd),
    /// Run or stop a local OCI registry for the docker target.
    Registry(registry::RegistryCmd),
    /// Print the deployment settings in force and where each came from.
    Config(settings::ConfigCmd),
    /// Create the GKE cluster and Artifact Registry repository (only what is missing).
    ClusterUp(cluster::ClusterUpCmd),
    /// Delete what cluster-up created.
    ClusterDown(cluster::ClusterDownCmd),
    /// Print the final manifests, the image pinned to the pushed digest.
    Render(render::RenderCmd),
    /// Apply the manifests to the cluster and wait for the rollout.
    Deploy(gke::DeployCmd),
    /// Check the tools GKE delivery needs, and gcloud's authentication.
    Tools(tools::ToolsCmd),
    /// Install a pinned, checksum-verified kustomize into target/tools.
    InstallKustomize(kustomize::InstallKustomizeCmd),
    /// Regenerate the test models in models/, or survey which estimators are served.
    Fixtures(fixtures::FixturesCmd),
    /// Run everything CI checks: formatting, lints, tests.
    Ci(ci::CiCmd),
    /// Load-test POST /score against the tutorial's Flask app, in the same run.
    Bench(bench::BenchCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The process moves too, not only the Shell: tasks also touch files from Rust, and
    // every path in them is relative to the root.
    std::env::set_current_dir(project_root())?;
    let sh = Shell::new()?;
    match cli.task {
        Task::Ship(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::Smoke(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::Down(cmd) => cmd.run(&sh, cli.dry_run),
        Task::Image(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::Push(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::Registry(cmd) => cmd.run(&sh, cli.dry_run),
        Task::Config(cmd) => cmd.run(&sh, &cli.settings),
        Task::ClusterUp(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::ClusterDown(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::Render(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::Deploy(cmd) => cmd.run(&sh, cli.dry_run, &cli.settings),
        Task::Tools(cmd) => cmd.run(&sh),
        Task::InstallKustomize(cmd) => cmd.run(&sh, cli.dry_run),
        Task::Fixtures(cmd) => cmd.run(&sh, cli.dry_run),
        Task::Ci(cmd) => cmd.run(&sh, cli.dry_run),
        Task::Bench(cmd) => cmd.run(&sh, cli.dry_run),
    }
}

/// Where tasks record what they started and pushed: `target/xtask/`, or
/// `$XTASK_STATE_DIR` (tests give each case its own).
fn state_dir(sh: &Shell) -> PathBuf {
    sh.var("XTASK_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| local::target_dir(sh).join("xtask"))
}

/// The workspace root: every path the tasks use is relative to it.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}
