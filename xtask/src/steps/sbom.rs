//! The image's software bill of materials: a CycloneDX 1.5 document of every crate the
//! service binary links, read from `cargo metadata` (so from Cargo.lock), shipped in the
//! image as `/sbom.cdx.json` and kept beside the push record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

use crate::core::paths::{cargo, state_dir};
use crate::core::plan::Plan;
use crate::core::records;

/// The document's name inside the image (`/sbom.cdx.json`) and beside a push record.
pub(crate) const SBOM_NAME: &str = "sbom.cdx.json";

/// Where the SBOM of the image tagged `tag` is kept.
pub(crate) fn sbom_file(sh: &Shell, tag: &str) -> PathBuf {
    state_dir(sh).join("sbom").join(format!("{tag}.cdx.json"))
}

/// Adds: ask cargo for the dependency graph of `package` on `triple`, and write the SBOM
/// to `path` (through a temporary file, so a reader never sees half of it).
pub(crate) fn add_sbom<'a, C>(
    sh: &'a Shell,
    plan: &mut Plan<'a, C>,
    package: &'static str,
    triple: String,
    created: String,
    path: PathBuf,
) {
    let cargo = cargo(sh);
    plan.read(
        cmd!(
            sh,
            "{cargo} metadata --format-version 1 --locked --filter-platform {triple}"
        ),
        "cargo cannot read the workspace's dependencies; see above",
        move |_, metadata| {
            let metadata: Value =
                serde_json::from_str(&metadata).context("cargo metadata printed no JSON")?;
            records::write(&path, &cyclonedx(&metadata, package, &created)?)
        },
    );
}

/// The crates `package` links (normal dependencies, transitively), as CycloneDX.
fn cyclonedx(metadata: &Value, package: &str, created: &str) -> anyhow::Result<Value> {
    let packages: BTreeMap<&str, &Value> = metadata["packages"]
        .as_array()
        .context("no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .context("no resolved graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = packages
        .iter()
        .find(|(_, p)| p["name"] == package)
        .map(|(id, _)| *id)
        .with_context(|| format!("no package {package} in the workspace"))?;
    // Follow normal (not dev, not build) dependencies from the root.
    let mut seen = BTreeSet::new();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let deps: Vec<&str> = nodes
            .get(id)
            .and_then(|node| node["deps"].as_array())
            .into_iter()
            .flatten()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
            })
            .filter_map(|dep| dep["pkg"].as_str())
            .collect();
        stack.extend(deps.iter().copied());
        edges.insert(id, deps);
    }
    let purl = |id: &str| -> String {
        let p = packages[id];
        format!(
            "pkg:cargo/{}@{}",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?")
        )
    };
    let components: Vec<Value> = seen
        .iter()
        .filter(|id| **id != root)
        .map(|id| {
            let p = packages[id];
            let mut component = json!({
                "type": "library",
                "bom-ref": purl(id),
                "name": p["name"],
                "version": p["version"],
                "purl": purl(id),
            });
            if let Some(license) = p["license"].as_str() {
                component["licenses"] = json!([{"expression": license}]);
            }
            component
        })
        .collect();
    let dependencies: Vec<Value> = edges
        .iter()
        .map(|(id, deps)| json!({"ref": purl(id), "dependsOn": deps.iter().map(|d| purl(d)).collect::<Vec<_>>()}))
        .collect();
    // The same lock gives the same serial number, so the document is reproducible.
    let lock: Vec<String> = seen.iter().map(|id| purl(id)).collect();
    let hash = Sha256::digest(lock.join("\n").as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let serial = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    );
    let root_package = packages[root];
    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{"type": "application", "name": "cargo xtask image"}]},
            "component": {
                "type": "application",
                "bom-ref": purl(root),
                "name": root_package["name"],
                "version": root_package["version"],
                "purl": purl(root),
                "licenses": [{"expression": root_package["license"]}],
            },
        },
        "components": components,
        "dependencies": dependencies,
    }))
}
