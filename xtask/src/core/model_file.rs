//! `--model PATH`: an ONNX file to serve, or `--model-repository DIR`: a directory of
//! models in Triton's layout (`DIR/NAME/VERSION/model.onnx`), each checked before
//! anything runs.

use std::path::{Path, PathBuf};

/// The flags that choose what the service serves, shared by `ship`, `deploy` and
/// `render`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ModelArgs {
    /// Serve this ONNX model instead of the identity echo: mounted read-only (local,
    /// docker), or on a cluster, a model image built on the service image and pushed.
    #[arg(long, value_parser = ModelFile::parse, conflicts_with = "model_repository")]
    model: Option<ModelFile>,

    /// Serve every model of this directory (`DIR/NAME/VERSION/model.onnx`, as Triton lays
    /// it out), each at `/score/NAME` and `/v2/models/NAME`: mounted read-only, or on a
    /// cluster, a model image built on the service image and pushed.
    #[arg(long, value_name = "DIR", value_parser = ModelFile::parse_repository)]
    model_repository: Option<ModelFile>,
}

impl ModelArgs {
    pub(crate) fn chosen(self) -> Option<ModelFile> {
        self.model.or(self.model_repository)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ModelFile {
    /// Absolute, so it means the same to the service, Docker and us.
    pub(crate) path: PathBuf,
    /// The file's name without `.onnx`: what the service calls the model; for a
    /// repository, the directory's name.
    pub(crate) name: String,
    /// A repository's models, by name (sorted); empty for one file.
    pub(crate) models: Vec<String>,
}

impl ModelFile {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let path = Path::new(text);
        if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
            return Err(format!("{text} is not an .onnx file"));
        }
        let path = path.canonicalize().map_err(|err| format!("{text}: {err}"))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned();
        Ok(ModelFile {
            path,
            name,
            models: Vec::new(),
        })
    }

    /// A model repository: a directory holding at least one `NAME/VERSION/model.onnx`.
    pub(crate) fn parse_repository(text: &str) -> Result<Self, String> {
        let path = Path::new(text)
            .canonicalize()
            .map_err(|err| format!("{text}: {err}"))?;
        let models = repository_models(&path).map_err(|err| format!("{text}: {err}"))?;
        if models.is_empty() {
            return Err(format!(
                "{text} holds no model: a repository is laid out as {text}/NAME/VERSION/model.onnx (VERSION a number)"
            ));
        }
        let name = path
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("models")
            .to_owned();
        Ok(ModelFile { path, name, models })
    }

    pub(crate) fn is_repository(&self) -> bool {
        !self.models.is_empty()
    }

    /// The names of the models the service serves from it.
    pub(crate) fn names(&self) -> Vec<String> {
        if self.is_repository() {
            self.models.clone()
        } else {
            vec![self.name.clone()]
        }
    }

    /// Where the service finds it in a container.
    pub(crate) fn path_inside(&self) -> String {
        if self.is_repository() {
            format!("/models/{}", self.name)
        } else {
            format!("/models/{}.onnx", self.name)
        }
    }

    /// The service's flag for it, and the environment variable of that flag.
    pub(crate) fn flag(&self) -> (&'static str, &'static str) {
        if self.is_repository() {
            ("--model-repository", "SCORE_MODEL_REPOSITORY")
        } else {
            ("--model", "SCORE_MODEL")
        }
    }

    /// What `status` shows of it: the model's name, or the repository's models.
    pub(crate) fn described(&self) -> String {
        self.names().join(", ")
    }
}

/// The model directories of a repository that hold a version with a model file, as the
/// service finds them.
fn repository_models(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut models = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let has_version = std::fs::read_dir(entry.path())?.filter_map(Result::ok).any(|v| {
            v.file_name()
                .to_str()
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v > 0)
                && v.path().join("model.onnx").is_file()
        });
        if has_version {
            models.push(name);
        }
    }
    models.sort();
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_lists_the_models_the_service_will_find() {
        let dir = std::env::temp_dir().join(format!("xtask-repository-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (model, version) in [("fraud", "1"), ("fraud", "2"), ("churn", "3"), ("notes", "draft")] {
            std::fs::create_dir_all(dir.join(model).join(version)).unwrap();
            std::fs::write(dir.join(model).join(version).join("model.onnx"), b"").unwrap();
        }
        std::fs::create_dir_all(dir.join("empty/1")).unwrap();
        let repository = ModelFile::parse_repository(dir.to_str().unwrap()).unwrap();
        assert_eq!(repository.models, ["churn", "fraud"]);
        assert_eq!(repository.flag().0, "--model-repository");
        assert!(repository.path_inside().starts_with("/models/xtask-repository-"));
        std::fs::remove_dir_all(dir.join("fraud")).unwrap();
        std::fs::remove_dir_all(dir.join("churn")).unwrap();
        let empty = ModelFile::parse_repository(dir.to_str().unwrap()).unwrap_err();
        assert!(empty.contains("holds no model"), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(ModelFile::parse_repository(dir.to_str().unwrap()).is_err());
    }
}
