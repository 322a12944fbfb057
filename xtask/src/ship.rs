//! `cargo xtask ship` and `cargo xtask down`: put the service on a target, take it off.

use anyhow::bail;
use clap::Args;
use xshell::Shell;

use crate::docker::Docker;
use crate::local::Local;
use crate::render::Renderer;
use crate::settings::{Settings, SettingsArgs};
use crate::target::{Target, TargetArg};

#[derive(Args, Debug)]
pub(crate) struct ShipCmd {
    #[command(flatten)]
    target: TargetArg,

    /// Port to serve on, on 127.0.0.1 (local and docker targets).
    #[arg(long, default_value_t = 5000)]
    port: u16,

    /// Build the image inside Docker from source instead of packaging a binary built here.
    #[arg(long)]
    from_source: bool,

    /// Serve this ONNX model instead of the identity echo (local and docker targets; on
    /// GKE use the with-model overlay).
    #[arg(long, value_parser = ModelFile::parse)]
    model: Option<ModelFile>,
}

/// A model file to serve: checked to exist before anything runs.
#[derive(Clone, Debug)]
pub(crate) struct ModelFile {
    /// Absolute, so it means the same to the service, Docker and us.
    pub(crate) path: std::path::PathBuf,
    /// The file's name without `.onnx`: what the service calls the model.
    pub(crate) name: String,
}

impl ModelFile {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let path = std::path::Path::new(text);
        if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
            return Err(format!("{text} is not an .onnx file"));
        }
        let path = path.canonicalize().map_err(|err| format!("{text}: {err}"))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned();
        Ok(ModelFile { path, name })
    }
}

impl ShipCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool, settings: &SettingsArgs) -> anyhow::Result<()> {
        match self.target.target {
            Target::Local => {
                let local = Local::new(sh);
                local
                    .ship_plan(sh, self.port, self.model.as_ref())?
                    .execute(dry_run)
            }
            Target::Docker => {
                let docker = Docker::new(sh);
                docker
                    .ship_plan(sh, self.port, self.from_source, self.model.as_ref())?
                    .execute(dry_run)
            }
            Target::Gke if self.model.is_some() => {
                bail!(
                    "--model ships with the local and docker targets; on GKE, use the with-model overlay (--overlay with-model)"
                )
            }
            Target::Gke => {
                let (settings, _) = Settings::resolve(sh, settings)?;
                let renderer = Renderer::new(sh, &settings);
                crate::gke::ship_plan(sh, &settings, &renderer, self.from_source)?.execute(dry_run)
            }
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct DownCmd {
    #[command(flatten)]
    target: TargetArg,
}

impl DownCmd {
    pub(crate) fn run(self, sh: &Shell, dry_run: bool) -> anyhow::Result<()> {
        match self.target.target {
            Target::Local => {
                let local = Local::new(sh);
                local.down_plan(sh)?.execute(dry_run)
            }
            Target::Docker => {
                let docker = Docker::new(sh);
                docker.down_plan(sh)?.execute(dry_run)
            }
            Target::Gke => bail!(
                "to take the service off GKE, delete its namespace with kubectl, or everything with `cargo xtask cluster-down`"
            ),
        }
    }
}
