//! `--model PATH` (once or more): ONNX files to serve, or `--model-repository DIR`: a
//! directory of models in Triton's layout (`DIR/NAME/VERSION/model.onnx`), each checked
//! before anything runs.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The flags that choose what the service serves, shared by `ship`, `deploy` and
/// `render`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ModelArgs {
    /// Serve this ONNX model instead of the identity echo; repeat it to serve several,
    /// each at `/score/NAME` and `/v2/models/NAME` (NAME: the file's name without
    /// `.onnx`). Mounted read-only (local, docker), or on a cluster, a model image built
    /// on the service image and pushed.
    #[arg(long, value_parser = ModelFile::parse, conflicts_with = "model_repository")]
    model: Vec<ModelFile>,

    /// Serve every model of this directory (`DIR/NAME/VERSION/model.onnx`, as Triton lays
    /// it out), each at `/score/NAME` and `/v2/models/NAME`: mounted read-only, or on a
    /// cluster, a model image built on the service image and pushed.
    #[arg(long, value_name = "DIR", value_parser = ModelSource::parse_repository)]
    model_repository: Option<ModelSource>,

    /// The model `/score` serves when there are several (each is at `/score/NAME` too);
    /// without it, `/score` answers 404 naming them.
    #[arg(long, value_name = "NAME")]
    default_model: Option<String>,
}

impl ModelArgs {
    /// What was chosen, if anything; refuses two files the service would call by one
    /// name, and a default model that is none of them.
    pub(crate) fn chosen(self) -> anyhow::Result<Option<Models>> {
        let source = if self.model.is_empty() {
            self.model_repository
        } else {
            let mut names: Vec<&str> = self.model.iter().map(|m| m.name.as_str()).collect();
            names.sort_unstable();
            if let Some(twice) = names.windows(2).find(|pair| pair[0] == pair[1]) {
                anyhow::bail!(
                    "two --model files are named {:?}: the service calls a model by its file's name, so give each its own (or name it once)",
                    twice[0]
                );
            }
            Some(ModelSource::Files(self.model))
        };
        let Some(source) = source else {
            if let Some(name) = self.default_model {
                anyhow::bail!(
                    "--default-model {name:?} names a model, but no --model or --model-repository gives one"
                );
            }
            return Ok(None);
        };
        let models = Models {
            source,
            default: self.default_model,
        };
        if let Some(name) = &models.default
            && !models.names().contains(name)
        {
            anyhow::bail!(
                "--default-model {name:?} is none of the models shipped ({})",
                models.described()
            );
        }
        Ok(Some(models))
    }
}

/// One ONNX file.
#[derive(Clone, Debug)]
pub(crate) struct ModelFile {
    /// Absolute, so it means the same to the service, Docker and us.
    pub(crate) path: PathBuf,
    /// The file's name without `.onnx`: what the service calls the model.
    pub(crate) name: String,
}

impl ModelFile {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let path = Path::new(text);
        if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
            return Err(format!("{text} is not an .onnx file"));
        }
        let path = path.canonicalize().map_err(|err| format!("{text}: {err}"))?;
        if path.to_string_lossy().contains(',') {
            return Err(format!(
                "{}: the service separates model paths with commas (SCORE_MODEL), so a path must not hold one; rename or move the file",
                path.display()
            ));
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned();
        Ok(ModelFile { path, name })
    }
}

/// Where a container finds the models: mounted, or copied into a model image.
const INSIDE: &str = "/models";

/// What the service is asked to serve instead of the identity echo, and which of them
/// `/score` serves.
#[derive(Clone, Debug)]
pub(crate) struct Models {
    pub(crate) source: ModelSource,
    /// `--default-model`: `/score`'s model, when there are several.
    pub(crate) default: Option<String>,
}

/// Where the models come from.
#[derive(Clone, Debug)]
pub(crate) enum ModelSource {
    /// `--model`, once or more.
    Files(Vec<ModelFile>),
    /// `--model-repository`.
    Repository {
        path: PathBuf,
        /// The directory's name.
        name: String,
        /// Its models, by name (sorted).
        models: Vec<String>,
    },
}

impl ModelSource {
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
        Ok(ModelSource::Repository { path, name, models })
    }
}

impl Models {
    /// The names of the models the service serves from it.
    pub(crate) fn names(&self) -> Vec<String> {
        match &self.source {
            ModelSource::Files(files) => files.iter().map(|f| f.name.clone()).collect(),
            ModelSource::Repository { models, .. } => models.clone(),
        }
    }

    /// What `status` shows of it: the models' names.
    pub(crate) fn described(&self) -> String {
        self.names().join(", ")
    }

    /// The service's flags for it, run on this machine.
    pub(crate) fn service_args(&self) -> Vec<String> {
        let mut args = match &self.source {
            ModelSource::Files(files) => files
                .iter()
                .flat_map(|f| ["--model".to_owned(), f.path.display().to_string()])
                .collect(),
            ModelSource::Repository { path, .. } => {
                vec!["--model-repository".to_owned(), path.display().to_string()]
            }
        };
        if let Some(name) = &self.default {
            args.extend(["--default-model".to_owned(), name.clone()]);
        }
        args
    }

    /// Each path on this machine, with its place under `/models` in a container.
    fn placed(&self) -> Vec<(PathBuf, String)> {
        match &self.source {
            ModelSource::Files(files) => files
                .iter()
                .map(|f| (f.path.clone(), format!("{}.onnx", f.name)))
                .collect(),
            ModelSource::Repository { path, name, .. } => vec![(path.clone(), name.clone())],
        }
    }

    /// Each path on this machine, with where a container finds it.
    pub(crate) fn mounts(&self) -> Vec<(PathBuf, String)> {
        self.placed()
            .into_iter()
            .map(|(path, under)| (path, format!("{INSIDE}/{under}")))
            .collect()
    }

    /// The environment variables that tell the service in a container what to serve, as
    /// `NAME=VALUE` (several files: their paths joined by commas, as the service reads
    /// `SCORE_MODEL`), and which model `/score` serves.
    pub(crate) fn env(&self) -> Vec<String> {
        let inside: Vec<String> = self.mounts().into_iter().map(|(_, inside)| inside).collect();
        let variable = match &self.source {
            ModelSource::Files(_) => "SCORE_MODEL",
            ModelSource::Repository { .. } => "SCORE_MODEL_REPOSITORY",
        };
        let mut env = vec![format!("{variable}={}", inside.join(","))];
        if let Some(name) = &self.default {
            env.push(format!("SCORE_DEFAULT_MODEL={name}"));
        }
        env
    }

    /// Every file that travels in a model image, with its path under `/models`, in a
    /// fixed order so a hash over them is the same on every machine.
    pub(crate) fn files(&self) -> anyhow::Result<Vec<(String, PathBuf)>> {
        let mut found = Vec::new();
        for (path, under) in self.placed() {
            if !path.is_dir() {
                found.push((under, path));
                continue;
            }
            let mut pending = vec![path.clone()];
            while let Some(dir) = pending.pop() {
                for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
                    let file = entry?.path();
                    if file.is_dir() {
                        pending.push(file);
                    } else {
                        let relative = file.strip_prefix(&path)?.to_string_lossy().into_owned();
                        found.push((format!("{under}/{relative}"), file));
                    }
                }
            }
        }
        found.sort();
        Ok(found)
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

    /// Where each file travels, under `/models`.
    /// The models of the repository `dir`, as `--model-repository DIR` chooses them.
    fn repository_of(dir: &Path) -> Result<Models, String> {
        ModelSource::parse_repository(dir.to_str().unwrap()).map(|source| Models {
            source,
            default: None,
        })
    }

    fn under_models(models: &Models) -> Vec<String> {
        models
            .files()
            .unwrap()
            .into_iter()
            .map(|(under, _)| under)
            .collect()
    }

    #[test]
    fn a_repository_lists_the_models_the_service_will_find() {
        let dir = std::env::temp_dir().join(format!("xtask-repository-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (model, version) in [("fraud", "1"), ("fraud", "2"), ("churn", "3"), ("notes", "draft")] {
            std::fs::create_dir_all(dir.join(model).join(version)).unwrap();
            std::fs::write(dir.join(model).join(version).join("model.onnx"), b"").unwrap();
        }
        std::fs::create_dir_all(dir.join("empty/1")).unwrap();
        let repository = repository_of(&dir).unwrap();
        assert_eq!(repository.names(), ["churn", "fraud"]);
        assert_eq!(repository.service_args()[0], "--model-repository");
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            repository.env(),
            [format!("SCORE_MODEL_REPOSITORY=/models/{name}")]
        );
        let files = under_models(&repository);
        assert_eq!(
            files,
            [
                "churn/3/model.onnx",
                "fraud/1/model.onnx",
                "fraud/2/model.onnx",
                "notes/draft/model.onnx"
            ]
            .map(|file| format!("{name}/{file}"))
        );
        std::fs::remove_dir_all(dir.join("fraud")).unwrap();
        std::fs::remove_dir_all(dir.join("churn")).unwrap();
        // A repository named as the folder it is copied into keeps its own name there.
        let named_models = dir.join("models");
        std::fs::create_dir_all(named_models.join("fraud/1")).unwrap();
        std::fs::write(named_models.join("fraud/1/model.onnx"), b"").unwrap();
        let nested = repository_of(&named_models).unwrap();
        let files = under_models(&nested);
        assert_eq!(files, ["models/fraud/1/model.onnx"]);
        std::fs::remove_dir_all(&named_models).unwrap();
        let empty = repository_of(&dir).unwrap_err();
        assert!(empty.contains("holds no model"), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(repository_of(&dir).is_err());
    }

    #[test]
    fn several_files_are_served_each_by_its_name_and_two_of_one_name_are_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-model-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for file in ["a/churn.onnx", "a/fraud.onnx", "b/fraud.onnx"] {
            std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
            std::fs::write(dir.join(file), b"").unwrap();
        }
        std::fs::write(dir.join("a/models_v2.onnx"), b"").unwrap();
        let prefixed = ModelArgs {
            model: vec![ModelFile::parse(dir.join("a/models_v2.onnx").to_str().unwrap()).unwrap()],
            model_repository: None,
            default_model: None,
        };
        let files = prefixed.chosen().unwrap().unwrap().files().unwrap();
        assert_eq!(files[0].0, "models_v2.onnx");
        std::fs::create_dir_all(dir.join("a,b")).unwrap();
        std::fs::write(dir.join("a,b/churn.onnx"), b"").unwrap();
        let comma = ModelFile::parse(dir.join("a,b/churn.onnx").to_str().unwrap()).unwrap_err();
        assert!(comma.contains("separates model paths with commas"), "{comma}");
        let args_with_default = |files: &[&str], default: Option<&str>| ModelArgs {
            model: files
                .iter()
                .map(|f| ModelFile::parse(dir.join(f).to_str().unwrap()).unwrap())
                .collect(),
            model_repository: None,
            default_model: default.map(str::to_owned),
        };
        let args = |files: &[&str]| args_with_default(files, None);
        let served = args(&["a/churn.onnx", "a/fraud.onnx"]).chosen().unwrap().unwrap();
        assert_eq!(served.names(), ["churn", "fraud"]);
        assert_eq!(
            served.env(),
            ["SCORE_MODEL=/models/churn.onnx,/models/fraud.onnx"]
        );
        let flags = served.service_args();
        assert_eq!(flags.iter().filter(|f| *f == "--model").count(), 2, "{flags:?}");
        assert!(!flags.contains(&"--default-model".to_owned()), "{flags:?}");

        // /score's model, named among them; a name that is none of them is refused.
        let with_default = args_with_default(&["a/churn.onnx", "a/fraud.onnx"], Some("fraud"))
            .chosen()
            .unwrap()
            .unwrap();
        assert_eq!(
            with_default.env(),
            [
                "SCORE_MODEL=/models/churn.onnx,/models/fraud.onnx",
                "SCORE_DEFAULT_MODEL=fraud"
            ]
        );
        assert!(
            with_default
                .service_args()
                .ends_with(&["--default-model".to_owned(), "fraud".to_owned()])
        );
        let unknown = args_with_default(&["a/churn.onnx"], Some("fraud"))
            .chosen()
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("--default-model \"fraud\" is none of the models shipped (churn)"),
            "{unknown}"
        );
        let alone = args_with_default(&[], Some("fraud"))
            .chosen()
            .unwrap_err()
            .to_string();
        assert!(alone.contains("no --model or --model-repository"), "{alone}");
        assert_eq!(under_models(&served), ["churn.onnx", "fraud.onnx"]);
        let twice = args(&["a/fraud.onnx", "b/fraud.onnx"])
            .chosen()
            .unwrap_err()
            .to_string();
        assert!(twice.contains("two --model files are named \"fraud\""), "{twice}");
        assert!(args(&[]).chosen().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
