//! kustomize: the project-local one `install-kustomize` puts in the tools directory (a
//! pinned release for this OS and architecture, verified against the release's checksums
//! file before anything is installed), which `render` prefers over kubectl's built-in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use xshell::{Shell, cmd};

use crate::core::http;
use crate::core::paths::tools_dir;
use crate::core::plan::Plan;

/// The plan that installs kustomize `version` (like 5.5.0) from `base_url`'s releases.
pub(crate) fn install_plan<'a>(sh: &'a Shell, version: &str, base_url: &str) -> anyhow::Result<Plan<'a>> {
    {
        let given = version;
        let version = version.trim_start_matches('v');
        if version.is_empty() || !version.split('.').all(|part| part.parse::<u32>().is_ok()) {
            bail!("--version {given:?} is not a release number like 5.5.0");
        }
        let os = std::env::consts::OS;
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => bail!("kustomize publishes no release for {other}"),
        };
        let archive_name = format!("kustomize_v{version}_{os}_{arch}.tar.gz");
        // The release tag is `kustomize/vX.Y.Z`, its slash escaped in the URL.
        let release = format!("{}/kustomize%2Fv{version}", base_url.trim_end_matches('/'));
        let tools = tools_dir(sh);
        let downloads = tools.join("downloads");
        let archive = downloads.join(&archive_name);
        let checksums = downloads.join(format!("kustomize_v{version}_checksums.txt"));
        let unpacked = downloads.join(format!("kustomize_v{version}"));
        let installed = tools.join("kustomize");

        let mut plan = Plan::new();
        let (archive_url, checksums_url) = (
            format!("{release}/{archive_name}"),
            format!("{release}/checksums.txt"),
        );
        plan.check(format!("download {archive_url} to {}", archive.display()), {
            let archive = archive.clone();
            move |_| download(&archive_url, &archive)
        });
        plan.check(format!("download {checksums_url} to {}", checksums.display()), {
            let checksums = checksums.clone();
            move |_| download(&checksums_url, &checksums)
        });
        plan.check(
            format!("verify the SHA-256 of {archive_name} against checksums.txt"),
            {
                let (archive, checksums) = (archive.clone(), checksums.clone());
                move |_| verify(&archive, &archive_name, &checksums)
            },
        );
        plan.check(format!("create {}", unpacked.display()), {
            let unpacked = unpacked.clone();
            move |_| std::fs::create_dir_all(&unpacked).map_err(Into::into)
        });
        plan.run(
            cmd!(sh, "tar -xzf {archive} -C {unpacked} kustomize"),
            "the archive is not a kustomize release",
        );
        plan.check(format!("move the binary to {}", installed.display()), {
            let installed = installed.clone();
            move |_| {
                std::fs::rename(unpacked.join("kustomize"), &installed)
                    .with_context(|| format!("install {}", installed.display()))
            }
        });
        plan.run(
            cmd!(sh, "{installed} version"),
            "the installed kustomize does not run on this machine",
        );
        Ok(plan)
    }
}

fn download(url: &str, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().expect("downloads go into a directory"))?;
    let agent = http::agent(Duration::from_secs(120));
    let mut response = agent.get(url).call().with_context(|| format!("download {url}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        bail!("download {url}: the server answered {status}");
    }
    let mut body = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .reader();
    let mut file = std::fs::File::create(to).with_context(|| format!("create {}", to.display()))?;
    std::io::copy(&mut body, &mut file).with_context(|| format!("download {url}"))?;
    Ok(())
}

/// Refuses (and deletes the download) unless the archive's SHA-256 is the one the
/// release's checksums file lists for it.
fn verify(archive: &Path, name: &str, checksums: &Path) -> anyhow::Result<()> {
    let listed = std::fs::read_to_string(checksums)?;
    let expected = listed
        .lines()
        .find_map(|line| {
            let (hash, file) = line.split_once(char::is_whitespace)?;
            (file.trim().trim_start_matches('*') == name).then(|| hash.to_ascii_lowercase())
        })
        .with_context(|| format!("checksums.txt lists no {name}"))?;
    let actual: String = Sha256::digest(std::fs::read(archive)?)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if actual != expected {
        let _ = std::fs::remove_file(archive);
        bail!(
            "SHA-256 mismatch for {name}: checksums.txt says {expected}, the download is {actual}; nothing was installed"
        );
    }
    Ok(())
}

/// The kustomize `render` uses, if `install-kustomize` put one here.
pub(crate) fn installed(sh: &Shell) -> Option<PathBuf> {
    let path = tools_dir(sh).join("kustomize");
    sh.path_exists(&path).then_some(path)
}
