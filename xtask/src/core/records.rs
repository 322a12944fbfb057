//! The JSON records tasks leave under the state directory (what was pushed, what runs),
//! read and written in one place with one policy: a missing record is `None`; a record
//! that does not parse is an error that names the file and says to delete it, never
//! silently taken as missing.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("read {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "{} is not a record this xtask wrote: delete it and run the task again",
            path.display()
        )
    })
}

/// Writes `value` whole: to a temporary file first, then renamed over the record, so a
/// reader never sees half of one.
pub(crate) fn write<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let dir = path.parent().context("a record sits in a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let partial = dir.join(format!(".{}.partial", std::process::id()));
    std::fs::write(&partial, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("write {}", path.display()))
}

/// Removes a record; one that is already gone is fine.
pub(crate) fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_none_and_corrupt_is_an_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("xtask-records-{}", std::process::id()));
        let path = dir.join("record.json");
        assert_eq!(read::<u32>(&path).unwrap(), None);
        write(&path, &7u32).unwrap();
        assert_eq!(read::<u32>(&path).unwrap(), Some(7));
        std::fs::write(&path, "{half").unwrap();
        let err = format!("{:#}", read::<u32>(&path).unwrap_err());
        assert!(
            err.contains(&path.display().to_string()) && err.contains("delete it"),
            "{err}"
        );
        remove(&path).unwrap();
        remove(&path).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
