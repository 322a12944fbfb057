//! `cargo xtask`: build, ship and smoke-test the score service.
//!
//! This file only parses flags and dispatches. The code below it is in layers whose
//! imports only point down (the tidy test holds them to it): `core` (plans, processes,
//! HTTP, paths and records, git, settings), `steps` (what plans are made of), `targets`
//! (where the service runs), `tasks` (one clap command each).

mod core;
mod steps;
mod targets;
mod tasks;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xshell::Shell;

use crate::core::paths::project_root;
use crate::core::plan::stop_scoped_programs;
use crate::tasks::{
    advisories, bench, canary, ci, cluster, config, deploy, down, fixtures, fuzz, image, kustomize, logs,
    push, registry, render, ship, smoke, status, tools,
};

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "Build, ship and smoke-test the score service",
    version
)]
struct Cli {
    /// Print every command the task would run, in order, and run nothing that changes
    /// anything (commands that only read, like `git status`, run and are echoed).
    #[arg(long, global = true)]
    dry_run: bool,

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
    Down(down::DownCmd),
    /// Say what runs on the target: image, model, replicas ready, address.
    Status(status::StatusCmd),
    /// Show the service's logs on the target (--follow to keep streaming).
    Logs(logs::LogsCmd),
    /// Build and tag the container image.
    Image(image::ImageCmd),
    /// Push the image and record the digest the registry stored.
    Push(push::PushCmd),
    /// Run or stop a local OCI registry for the docker target.
    Registry(registry::RegistryCmd),
    /// Print the deployment settings in force and where each came from.
    Config(config::ConfigCmd),
    /// Create the GKE cluster (Dataplane V2) and Artifact Registry repository (only what is missing).
    ClusterUp(cluster::ClusterUpCmd),
    /// Delete what cluster-up created.
    ClusterDown(cluster::ClusterDownCmd),
    /// Print the final manifests, the image pinned to the digest pushed from this tree.
    Render(render::RenderCmd),
    /// Apply the manifests to the cluster and wait for the rollout.
    Deploy(deploy::DeployCmd),
    /// Promote a canary release: the stable track takes its image, then the canary goes.
    Promote(canary::PromoteCmd),
    /// Abort a canary release: the canary goes, the stable track untouched.
    Abort(canary::AbortCmd),
    /// Check the tools GKE delivery needs, and gcloud's authentication.
    Tools(tools::ToolsCmd),
    /// Install a pinned, checksum-verified kustomize into target/tools.
    InstallKustomize(kustomize::InstallKustomizeCmd),
    /// Regenerate the test models in models/, or survey which are served.
    Fixtures(fixtures::FixturesCmd),
    /// Fuzz the request parsers and model loading (not part of CI).
    Fuzz(fuzz::FuzzCmd),
    /// Run everything CI checks: formatting, lints, advisories, tests.
    Ci(ci::CiCmd),
    /// Check Cargo.lock against RustSec advisories, offline, from a database snapshot.
    Advisories(advisories::AdvisoriesCmd),
    /// Load-test the service against baselines measured in the same run.
    Bench(bench::BenchCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C (or SIGTERM) stops what the running plan started for itself (a benchmark's
    // servers) before exiting; programs meant to outlive the task are left running.
    if let Err(err) = ctrlc::set_handler(|| {
        stop_scoped_programs();
        std::process::exit(130);
    }) {
        eprintln!("warning: cannot handle Ctrl-C ({err}); an interrupted task may leave programs running");
    }
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
    let dry_run = cli.dry_run;
    match cli.task {
        Task::Ship(cmd) => cmd.run(&sh, dry_run),
        Task::Smoke(cmd) => cmd.run(&sh, dry_run),
        Task::Down(cmd) => cmd.run(&sh, dry_run),
        Task::Status(cmd) => cmd.run(&sh, dry_run),
        Task::Logs(cmd) => cmd.run(&sh, dry_run),
        Task::Image(cmd) => cmd.run(&sh, dry_run),
        Task::Push(cmd) => cmd.run(&sh, dry_run),
        Task::Registry(cmd) => cmd.run(&sh, dry_run),
        Task::Config(cmd) => cmd.run(&sh, dry_run),
        Task::ClusterUp(cmd) => cmd.run(&sh, dry_run),
        Task::ClusterDown(cmd) => cmd.run(&sh, dry_run),
        Task::Render(cmd) => cmd.run(&sh, dry_run),
        Task::Deploy(cmd) => cmd.run(&sh, dry_run),
        Task::Promote(cmd) => cmd.run(&sh, dry_run),
        Task::Abort(cmd) => cmd.run(&sh, dry_run),
        Task::Tools(cmd) => cmd.run(&sh, dry_run),
        Task::InstallKustomize(cmd) => cmd.run(&sh, dry_run),
        Task::Fixtures(cmd) => cmd.run(&sh, dry_run),
        Task::Fuzz(cmd) => cmd.run(&sh, dry_run),
        Task::Ci(cmd) => cmd.run(&sh, dry_run),
        Task::Advisories(cmd) => cmd.run(&sh, dry_run),
        Task::Bench(cmd) => cmd.run(&sh, dry_run),
    }
}
