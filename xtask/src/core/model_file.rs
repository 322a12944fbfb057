//! `--model PATH`: an ONNX file to serve, checked to exist before anything runs.

use std::path::{Path, PathBuf};

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
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned();
        Ok(ModelFile { path, name })
    }
}
