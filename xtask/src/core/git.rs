//! The source revision an image is built from, and the tag that names it.
//!
//! It is git's, read from the checkout. A source tree without `.git` (what a Cloud Build
//! trigger uploads) names its commit in `XTASK_COMMIT` instead; a checkout that has
//! `.git` must agree with it, so the variable can never relabel other code.

use std::path::Path;

use anyhow::{Context as _, bail};
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
        let commit = commit(sh)?;
        let epoch = match sh.var("SOURCE_DATE_EPOCH") {
            Ok(epoch) if !epoch.is_empty() => Some(
                epoch
                    .parse()
                    .context("SOURCE_DATE_EPOCH must be seconds since the epoch")?,
            ),
            _ => None,
        };
        if !has_git(sh) {
            // Nothing says when the commit was made or whether the tree matches it: the
            // image is created at SOURCE_DATE_EPOCH, else at the epoch, as ko does.
            eprintln!(
                "# no .git here: the image is tagged by XTASK_COMMIT's {commit}, which git cannot confirm"
            );
            return Ok(Revision {
                tag: commit[..12].to_owned(),
                time: epoch.unwrap_or(0),
                commit,
            });
        }
        let short = query(cmd!(sh, "git rev-parse --short=12 HEAD"))?;
        let time = match epoch {
            Some(epoch) => epoch,
            None => query(cmd!(sh, "git log -1 --format=%ct"))?
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
    let declared = declared_commit(sh)?;
    if !has_git(sh) {
        return declared.context(
            "find the current commit: there is no .git here, and images are tagged by commit; \
             set XTASK_COMMIT to the commit this source is (Cloud Build: $COMMIT_SHA), or upload .git",
        );
    }
    let commit = query(cmd!(sh, "git rev-parse HEAD"))
        .context("find the current commit: images are tagged by commit, so commit at least once")?;
    if let Some(declared) = declared
        && declared != commit
    {
        bail!(
            "XTASK_COMMIT is {declared}, but this checkout is at {commit}: unset it, or check out {declared}"
        );
    }
    Ok(commit)
}

/// `XTASK_COMMIT`, when set and not empty (Cloud Build's `$COMMIT_SHA` is empty in a build
/// not started by a trigger): a full commit id, or a refusal.
fn declared_commit(sh: &Shell) -> anyhow::Result<Option<String>> {
    let Ok(declared) = sh.var("XTASK_COMMIT") else {
        return Ok(None);
    };
    let declared = declared.trim().to_ascii_lowercase();
    if declared.is_empty() {
        return Ok(None);
    }
    if declared.len() != 40 || !declared.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        bail!("XTASK_COMMIT must be a full commit id, 40 hexadecimal digits; it is {declared:?}");
    }
    Ok(Some(declared))
}

/// Whether the source is a git checkout (a `.git` directory, or the file a worktree has).
fn has_git(sh: &Shell) -> bool {
    Path::new(&sh.current_dir()).join(".git").exists()
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

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    /// A shell in a fresh, empty directory of its own.
    fn shell_in(name: &str) -> Shell {
        let dir = std::env::temp_dir().join(format!("xtask-git-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sh = Shell::new().unwrap();
        sh.change_dir(&dir);
        // Empty is unset, to both (xshell cannot hide a variable of the process).
        sh.set_var("XTASK_COMMIT", "");
        sh.set_var("SOURCE_DATE_EPOCH", "");
        sh
    }

    #[test]
    fn a_tree_without_git_is_the_commit_xtask_commit_names() {
        let sh = shell_in("declared");
        let refusal = commit(&sh).unwrap_err();
        assert!(format!("{refusal:#}").contains("set XTASK_COMMIT"), "{refusal:#}");
        sh.set_var("XTASK_COMMIT", "0123456");
        let short = commit(&sh).unwrap_err().to_string();
        assert!(short.contains("40 hexadecimal digits"), "{short}");

        sh.set_var("XTASK_COMMIT", COMMIT.to_uppercase());
        assert_eq!(commit(&sh).unwrap(), COMMIT);
        let revision = Revision::of_worktree(&sh).unwrap();
        assert_eq!(revision.commit, COMMIT);
        assert_eq!(revision.tag, COMMIT[..12]);
        assert_eq!(revision.created(), "1970-01-01T00:00:00Z");
        sh.set_var("SOURCE_DATE_EPOCH", "1700000000");
        assert_eq!(
            Revision::of_worktree(&sh).unwrap().created(),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn a_checkout_must_agree_with_xtask_commit() {
        let sh = shell_in("checkout");
        for args in [
            &["init", "--quiet"][..],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "commit",
                "--quiet",
                "--allow-empty",
                "-m",
                "one",
            ],
        ] {
            assert!(sh.cmd("git").args(args).quiet().run().is_ok(), "git {args:?}");
        }
        let head = commit(&sh).unwrap();
        sh.set_var("XTASK_COMMIT", &head);
        assert_eq!(commit(&sh).unwrap(), head);
        sh.set_var("XTASK_COMMIT", COMMIT);
        let refusal = commit(&sh).unwrap_err().to_string();
        assert!(
            refusal.contains(&format!(
                "XTASK_COMMIT is {COMMIT}, but this checkout is at {head}"
            )),
            "{refusal}"
        );
    }
}
