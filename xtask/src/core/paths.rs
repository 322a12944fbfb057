//! Where things live. Every path is relative to the workspace root, where the process
//! and its one `Shell` move at start.

use std::path::{Path, PathBuf};

use xshell::Shell;

/// The venv that holds every Python tool the tasks use.
pub(crate) const VENV: &str = "target/venv";

/// The workspace root.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

/// Cargo's target directory (`$CARGO_TARGET_DIR`, else `target`).
pub(crate) fn target_dir(sh: &Shell) -> PathBuf {
    sh.var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target"))
}

/// Where tasks record what they started and pushed: `target/xtask/`, or
/// `$XTASK_STATE_DIR` (tests give each case its own).
pub(crate) fn state_dir(sh: &Shell) -> PathBuf {
    sh.var("XTASK_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_dir(sh).join("xtask"))
}

/// Where project-local tools go (`target/tools`, or `$XTASK_TOOLS_DIR`).
pub(crate) fn tools_dir(sh: &Shell) -> PathBuf {
    sh.var("XTASK_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/tools"))
}

/// `cargo`, as the one that runs us (`$CARGO`), so a toolchain chosen by rustup or a
/// wrapper builds everything the task builds.
pub(crate) fn cargo(sh: &Shell) -> String {
    sh.var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The Rust files under `dir`, in sorted order: what tidy reads, and where `ci` finds the
/// tests that say they need the engine.
pub(crate) fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    let mut files = Vec::new();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    Ok(files)
}
