//! The source revision an image is built from, and the tag that names it.

use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

use crate::core::plan::query;

#[derive(Clone)]
pub(crate) struct Revision {
    /// The full commit id.
    pub(crate) commit: String,
    /// The commit time, seconds since the epoch (or `$SOURCE_DATE_EPOCH`).
    pub(crate) time: u64,
    /// The image tag: the short commit, plus a digest of the working tree when it has
    /// uncommitted changes, so two different dirty trees never share a tag.
    pub(crate) tag: String,
}

impl Revision {
    /// Reads the revision of the working tree. These git queries only read, so they run
    /// (echoed) even for `--dry-run`, letting the plan show the real tag.
    pub(crate) fn of_worktree(sh: &Shell) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let commit = commit(sh)?;
        let short = query(cmd!(sh, "git rev-parse --short=12 HEAD"))?;
        let time = match sh.var("SOURCE_DATE_EPOCH") {
            Ok(epoch) => epoch
                .parse()
                .context("SOURCE_DATE_EPOCH must be seconds since the epoch")?,
            Err(_) => query(cmd!(sh, "git log -1 --format=%ct"))?
                .parse()
                .context("read the commit time")?,
        };
        let dirty = !query(cmd!(sh, "git status --porcelain"))?.is_empty();
        let tag = if dirty {
            format!("{short}-dirty-{}", worktree_digest(sh)?)
        } else {
            short
        };
        Ok(Revision { commit, time, tag })
    }

    /// The commit time as RFC 3339, for the image's `created` label.
    pub(crate) fn created(&self) -> String {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.time);
        humantime::format_rfc3339_seconds(time).to_string()
    }
}

/// The full id of the current commit: all that render and deploy need, without reading
/// the whole tree as the image tag does.
pub(crate) fn commit(sh: &Shell) -> anyhow::Result<String> {
    use anyhow::Context as _;
    query(cmd!(sh, "git rev-parse HEAD"))
        .context("find the current commit: images are tagged by commit, so commit at least once")
}

/// A digest of every file git would see (tracked or untracked, not ignored): paths and
/// contents, so any change to the tree changes it.
fn worktree_digest(sh: &Shell) -> anyhow::Result<String> {
    let files = query(cmd!(sh, "git ls-files -z --cached --others --exclude-standard"))?;
    let mut paths: Vec<&str> = files.split('\0').filter(|path| !path.is_empty()).collect();
    paths.sort_unstable();
    paths.dedup();
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        match std::fs::read(sh.current_dir().join(path)) {
            Ok(content) => {
                hasher.update((content.len() as u64).to_le_bytes());
                hasher.update(&content);
            }
            // A tracked file deleted from the working tree.
            Err(_) => hasher.update(b"deleted"),
        }
    }
    let digest = hasher.finalize();
    Ok(digest.iter().take(5).map(|byte| format!("{byte:02x}")).collect())
}
