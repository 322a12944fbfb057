//! The third layer: the places the service can run, each a [`target::Target`] — `local`
//! (the release binary in the background), `docker` (the image from the local registry,
//! by digest), `gke` (Google Kubernetes Engine). Targets compose `steps` and `core`; the
//! tasks above choose one here, once.

pub(crate) mod docker;
pub(crate) mod gke;
pub(crate) mod local;
pub(crate) mod target;

use xshell::Shell;

use crate::core::settings::{Settings, SettingsArgs};
use crate::core::target::TargetKind;
use crate::targets::target::Target;

/// The target `kind` names. Only the cloud targets resolve the deployment settings.
pub(crate) fn choose<'a>(
    kind: TargetKind,
    sh: &'a Shell,
    settings: &SettingsArgs,
) -> anyhow::Result<Box<dyn Target + 'a>> {
    Ok(match kind {
        TargetKind::Local => Box::new(local::Local::new(sh)),
        TargetKind::Docker => Box::new(docker::Docker::new(sh)),
        TargetKind::Gke => Box::new(gke::Gke::new(sh, Settings::resolve(sh, settings)?.0)),
    })
}
