//! The `gke` target: Google Kubernetes Engine. `ship` builds and pushes the image to
//! Artifact Registry unless it holds this tree's tag already, deploys unless the cluster
//! runs that digest already, then smoke-tests through the load balancer.

use std::time::Duration;

use anyhow::bail;
use xshell::{Shell, cmd};

use crate::core::plan::{Plan, Probe, query};
use crate::core::process::{Poll, WaitError, poll_until};
use crate::core::records;
use crate::core::settings::Settings;
use crate::core::target::TargetKind;
use crate::steps::deploy::{Rollout, add_deploy};
use crate::steps::engine::add_engine_check;
use crate::steps::gcloud::gcloud_error;
use crate::steps::image::Image;
use crate::steps::push::{self, Pushed, Release};
use crate::steps::render::Renderer;
use crate::steps::smoke::smoke_test;
use crate::targets::target::{ShipOptions, Target};

pub(crate) struct Gke<'a> {
    sh: &'a Shell,
    settings: Settings,
    renderer: Renderer<'a>,
}

impl<'a> Gke<'a> {
    pub(crate) fn new(sh: &'a Shell, settings: Settings) -> Self {
        Gke {
            sh,
            renderer: Renderer::new(sh, &settings),
            settings,
        }
    }
}

impl Target for Gke<'_> {
    /// Image → push to Artifact Registry → deploy → smoke, each skipped when already done.
    fn ship_plan(&self, options: &ShipOptions) -> anyhow::Result<Plan<'_, Release>> {
        if options.model.is_some() {
            bail!(
                "--model ships with the local and docker targets; on GKE, use the with-model overlay (--overlay with-model)"
            );
        }
        let (sh, settings) = (self.sh, &self.settings);
        let image = Image::for_worktree(sh, settings.image_repository())?;
        let record = push::record_path(sh, TargetKind::Gke);
        let mut plan = Plan::new();
        add_engine_check(sh, &mut plan);

        // Image and push, unless Artifact Registry already holds this tree's tag; either
        // way the release knows the digest for the deploy below.
        let reference = image.reference();
        let digest_format = "--format=value(image_summary.digest)";
        let found = Pushed {
            tag: image.tag().to_owned(),
            image: reference.clone(),
            pinned: String::new(),
        };
        let (repository, found_record) = (image.repository.clone(), record.clone());
        plan.when(
            cmd!(
                sh,
                "gcloud artifacts docker images describe {reference} {digest_format}"
            ),
            format!("{reference} is not in Artifact Registry yet"),
            move |release: &mut Release, probe: &Probe| {
                if probe.success {
                    let digest = probe.stdout.trim();
                    if !digest.starts_with("sha256:") {
                        bail!("gcloud printed {digest:?}, not a digest");
                    }
                    let pushed = Pushed {
                        pinned: format!("{repository}@{digest}"),
                        ..found
                    };
                    records::write(&found_record, &pushed)?;
                    release.pushed = Some(pushed);
                    return Ok(false);
                }
                if probe.says_not_found() {
                    return Ok(true);
                }
                Err(gcloud_error(probe))
            },
            |then| {
                image.add_build(sh, then, options.from_source);
                push::add_push(sh, then, &image, record.clone());
            },
        );

        // Deploy, unless the Deployment already runs exactly that digest.
        let namespace = settings.namespace.clone();
        let app = settings.app.clone();
        let jsonpath = "--output=jsonpath={.spec.template.spec.containers[0].image}";
        let commit = image.revision.commit.clone();
        plan.when(
            cmd!(
                sh,
                "kubectl get deployment {app} --namespace {namespace} {jsonpath}"
            ),
            "the cluster does not run the recorded digest yet",
            move |release: &mut Release, probe: &Probe| {
                let pinned = &release.pushed()?.pinned;
                if probe.success {
                    return Ok(probe.stdout.trim() != pinned);
                }
                if probe.says_not_found() {
                    return Ok(true);
                }
                bail!("kubectl cannot read the deployment: {}", probe.stderr.trim())
            },
            |then| add_deploy(sh, then, &self.renderer, settings, &commit, Rollout::default()),
        );
        self.add_smoke(&mut plan, Duration::from_secs(600), None)?;
        Ok(plan)
    }

    fn down_plan(&self) -> anyhow::Result<Plan<'_, Release>> {
        bail!(
            "to take the service off GKE, delete its namespace with kubectl, or everything with `cargo xtask cluster-down`"
        )
    }

    /// Adds: wait (bounded) for the Service's external IP, then the smoke test.
    fn add_smoke<'s>(
        &'s self,
        plan: &mut Plan<'s, Release>,
        timeout: Duration,
        model: Option<String>,
    ) -> anyhow::Result<()> {
        let settings = &self.settings;
        let (namespace, app, port) = (
            settings.namespace.clone(),
            settings.app.clone(),
            settings.service_port,
        );
        let sh = self.sh;
        plan.check(
            format!("wait up to {timeout:?} for service {app} in {namespace} to get an external IP, then smoke test http://IP:{port}"),
            move |_| {
                let ip = wait_for_external_ip(sh, &namespace, &app, timeout)?;
                smoke_test(&format!("http://{ip}:{port}"), timeout, model.as_deref())
            },
        );
        Ok(())
    }

    fn image_repository(&self) -> anyhow::Result<String> {
        Ok(self.settings.image_repository())
    }
}

fn wait_for_external_ip(sh: &Shell, namespace: &str, app: &str, timeout: Duration) -> anyhow::Result<String> {
    let jsonpath = "--output=jsonpath={.status.loadBalancer.ingress[0].ip}";
    let waited = poll_until(timeout, Duration::from_secs(5), || {
        match query(cmd!(
            sh,
            "kubectl get service {app} --namespace {namespace} {jsonpath}"
        )) {
            Ok(ip) if !ip.trim().is_empty() => Poll::Ready(ip.trim().to_owned()),
            Ok(_) => Poll::Pending("no external IP yet".into()),
            Err(err) => Poll::Failed(err),
        }
    });
    match waited {
        Ok(ip) => Ok(ip),
        Err(WaitError::Failed(err)) => Err(err),
        Err(WaitError::TimedOut { .. }) => bail!(
            "service {app} got no external IP within {timeout:?}: see `kubectl describe service {app} --namespace {namespace}`"
        ),
    }
}
