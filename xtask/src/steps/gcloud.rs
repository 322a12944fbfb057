//! gcloud: the plans that create and delete the GKE cluster and the Artifact Registry
//! repository — each created only when `describe` finds none, so a second run changes
//! nothing — and what gcloud's failures mean.

use xshell::{Cmd, Shell, cmd};

use crate::core::plan::{Plan, Probe};
use crate::core::settings::{Gke, Mode};

/// What `gcloud` needs to be told where: every command names the project explicitly, so
/// nothing depends on gcloud's own default.
struct Where {
    project: String,
    location: String,
    region: String,
    cluster: String,
    repository: String,
}

impl Where {
    /// Succeeds if the cluster exists; says NOT_FOUND if it does not.
    fn describe_cluster<'a>(&self, sh: &'a Shell) -> Cmd<'a> {
        let Where {
            project,
            location,
            cluster,
            ..
        } = self;
        cmd!(
            sh,
            "gcloud container clusters describe {cluster} --location {location} --project {project} --format=value(status)"
        )
    }

    /// Succeeds if the repository exists; says NOT_FOUND if it does not.
    fn describe_repository<'a>(&self, sh: &'a Shell) -> Cmd<'a> {
        let Where {
            project,
            region,
            repository,
            ..
        } = self;
        cmd!(
            sh,
            "gcloud artifacts repositories describe {repository} --location {region} --project {project} --format=value(name)"
        )
    }

    fn of(settings: &Gke) -> Self {
        Where {
            project: settings.project.clone(),
            location: settings.location.clone(),
            region: settings.region(),
            cluster: settings.cluster.clone(),
            repository: settings.repository.clone(),
        }
    }
}

pub(crate) fn up_plan<'a>(sh: &'a Shell, settings: &Gke) -> Plan<'a> {
    let place = Where::of(settings);
    let Where {
        project,
        location,
        region,
        cluster,
        repository,
    } = &place;
    let mut plan = Plan::new();
    plan.run(
        cmd!(sh, "gcloud services enable container.googleapis.com artifactregistry.googleapis.com --project {project}"),
        format!("check that billing is enabled for {project} and that you may enable services there"),
    );
    let machine_type = settings.machine_type.clone();
    let nodes = settings.nodes.to_string();
    let mode = settings.mode;
    let (p, l, c) = (project.clone(), location.clone(), cluster.clone());
    plan.when(
        place.describe_cluster(sh),
        format!("cluster {cluster} does not exist yet"),
        absent,
        move |then| match mode {
            Mode::Standard => {
                let pool = format!("{p}.svc.id.goog");
                // Dataplane V2 enforces the NetworkPolicy the manifests carry, and the
                // Gateway API serves `traffic: gateway` (Autopilot clusters run both).
                then.run(
                    cmd!(sh, "gcloud container clusters create {c} --location {l} --project {p} --machine-type {machine_type} --num-nodes {nodes} --release-channel regular --workload-pool {pool} --enable-shielded-nodes --enable-dataplane-v2 --gateway-api=standard"),
                    "read gcloud's error above: quota and permission problems are named there",
                );
            }
            Mode::Autopilot => {
                then.run(
                    cmd!(sh, "gcloud container clusters create-auto {c} --location {l} --project {p} --release-channel regular"),
                    "read gcloud's error above: quota and permission problems are named there",
                );
            }
        },
    );
    let (p, r, repo) = (project.clone(), region.clone(), repository.clone());
    plan.when(
        place.describe_repository(sh),
        format!("Artifact Registry repository {repository} does not exist yet"),
        absent,
        move |then| {
            let description = "Images deployed by cargo xtask";
            then.run(
                cmd!(sh, "gcloud artifacts repositories create {repo} --repository-format docker --location {r} --project {p} --description {description}"),
                "read gcloud's error above",
            );
        },
    );
    let host = settings.registry_host();
    plan.run(
        cmd!(sh, "gcloud auth configure-docker {host} --quiet"),
        "docker needs gcloud's credential helper to push; see the error above",
    );
    plan.run(
        cmd!(
            sh,
            "gcloud container clusters get-credentials {cluster} --location {location} --project {project}"
        ),
        "kubectl needs gke-gcloud-auth-plugin: `gcloud components install gke-gcloud-auth-plugin`",
    );
    plan
}

pub(crate) fn down_plan<'a>(sh: &'a Shell, settings: &Gke) -> Plan<'a> {
    let place = Where::of(settings);
    let Where {
        project,
        location,
        region,
        cluster,
        repository,
    } = &place;
    let mut plan = Plan::new();
    let (p, l, c) = (project.clone(), location.clone(), cluster.clone());
    plan.when(
        place.describe_cluster(sh),
        format!("cluster {cluster} exists"),
        present,
        move |then| {
            then.run(
                cmd!(
                    sh,
                    "gcloud container clusters delete {c} --location {l} --project {p} --quiet"
                ),
                "read gcloud's error above",
            );
        },
    );
    let (p, r, repo) = (project.clone(), region.clone(), repository.clone());
    plan.when(
        place.describe_repository(sh),
        format!("Artifact Registry repository {repository} exists"),
        present,
        move |then| {
            then.run(
                cmd!(
                    sh,
                    "gcloud artifacts repositories delete {repo} --location {r} --project {p} --quiet"
                ),
                "read gcloud's error above",
            );
        },
    );
    plan
}

/// True when the probe found nothing; an error when it failed for another reason.
pub(crate) fn absent<C>(_: &mut C, probe: &Probe) -> anyhow::Result<bool> {
    if probe.success {
        return Ok(false);
    }
    if probe.says_not_found() {
        return Ok(true);
    }
    Err(gcloud_error(probe))
}

fn present<C>(context: &mut C, probe: &Probe) -> anyhow::Result<bool> {
    absent(context, probe).map(|absent| !absent)
}

/// gcloud's failure, with what to do about the usual causes.
pub(crate) fn gcloud_error(probe: &Probe) -> anyhow::Error {
    let stderr = probe.stderr.trim();
    let next = if stderr.contains("You do not currently have an active account selected")
        || stderr.contains("Reauthentication")
        || stderr.contains("UNAUTHENTICATED")
    {
        "gcloud is not authenticated: run `gcloud auth login` (on CI, authenticate with Workload Identity Federation or set CLOUDSDK_AUTH_ACCESS_TOKEN_FILE)"
    } else if stderr.contains("PERMISSION_DENIED") || stderr.contains("403") {
        "your account lacks a role on this project (Kubernetes Engine Admin, Artifact Registry Administrator), or the API is disabled"
    } else {
        "read gcloud's message above"
    };
    anyhow::anyhow!("gcloud failed: {stderr}\n  next: {next}")
}
