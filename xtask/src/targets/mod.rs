//! The third layer: the places the service can run, each a [`target::Target`] — `local`
//! (the release binary in the background), `docker` (the image from the local registry,
//! by digest), and the clusters, `gke` and `kube` (see `cluster`). Targets compose `steps`
//! and `core`; the tasks above choose one here, once.

pub(crate) mod cluster;
pub(crate) mod docker;
pub(crate) mod local;
pub(crate) mod target;

use xshell::Shell;

use crate::core::settings::SettingsArgs;
use crate::core::target::{ClusterKind, PublishKind, TargetKind};
use crate::targets::cluster::Cluster;
use crate::targets::target::{Publish, Target};

/// The target `kind` names. Only the cluster targets resolve the deployment settings.
pub(crate) fn choose<'a>(
    kind: TargetKind,
    sh: &'a Shell,
    settings: &SettingsArgs,
) -> anyhow::Result<Box<dyn Target + 'a>> {
    Ok(match kind {
        TargetKind::Local => Box::new(local::Local::new(sh)),
        TargetKind::Docker => Box::new(docker::Docker::new(sh)),
        TargetKind::Gke => Box::new(Cluster::gke(sh, settings)?),
        TargetKind::Kube => Box::new(Cluster::kube(sh, settings)?),
    })
}

/// Where images go for the target `kind` names (only targets that run images have one).
pub(crate) fn choose_publisher<'a>(
    kind: PublishKind,
    sh: &'a Shell,
    settings: &SettingsArgs,
) -> anyhow::Result<Box<dyn Publish + 'a>> {
    Ok(match kind {
        PublishKind::Docker => Box::new(docker::Docker::new(sh)),
        PublishKind::Gke => Box::new(Cluster::gke(sh, settings)?),
        PublishKind::Kube => Box::new(Cluster::kube(sh, settings)?),
    })
}

/// The cluster `kind` names, for the tasks only clusters have (render, deploy).
pub(crate) fn choose_cluster<'a>(
    kind: ClusterKind,
    sh: &'a Shell,
    settings: &SettingsArgs,
) -> anyhow::Result<Cluster<'a>> {
    match kind {
        ClusterKind::Gke => Cluster::gke(sh, settings),
        ClusterKind::Kube => Cluster::kube(sh, settings),
    }
}
