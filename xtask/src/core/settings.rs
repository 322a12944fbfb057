//! Deployment settings: flag > `XTASK_*` environment variable > `deploy.yaml`, with the
//! GKE project falling back to `gcloud config get project`. Every value is parsed into its
//! type and validated before any task touches anything; `cargo xtask config` shows where
//! each came from.
//!
//! Two groups: [`Settings`], what every cluster target deploys (namespace, app, overlay,
//! registry, context, …), and [`Gke`], where Google Cloud keeps it (project, location,
//! cluster, …), resolved only for the `gke` target and `cluster-up`/`cluster-down`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use xshell::{Shell, cmd};

use crate::core::plan::query;

pub(crate) const SETTINGS_FILE: &str = "deploy.yaml";

/// The settings flags, accepted by the tasks that deploy (`cargo xtask ship --target gke
/// --cluster c`); typed, so a bad flag is refused by the parser itself.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Deployment settings (flag > XTASK_<NAME> environment > deploy.yaml)")]
pub(crate) struct SettingsArgs {
    /// Google Cloud project id (gke) [default: gcloud config get project].
    #[arg(long)]
    project: Option<String>,
    /// Zone (us-west1-b) or region (us-west1) of the GKE cluster.
    #[arg(long)]
    location: Option<String>,
    /// GKE cluster name.
    #[arg(long)]
    cluster: Option<String>,
    /// How GKE runs the nodes.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Node machine type (GKE standard mode).
    #[arg(long)]
    machine_type: Option<String>,
    /// Number of nodes (GKE standard mode; per zone for a regional cluster).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    nodes: Option<u32>,
    /// Artifact Registry repository (gke).
    #[arg(long)]
    repository: Option<String>,
    /// Registry to push images to, HOST[:PORT][/PATH] [gke default: REGION-docker.pkg.dev/PROJECT/REPOSITORY; kube: required].
    #[arg(long)]
    registry: Option<String>,
    /// kubeconfig context of the cluster [gke default: gke_PROJECT_LOCATION_CLUSTER, as get-credentials names it; kube: the current context].
    #[arg(long)]
    context: Option<String>,
    /// Image name in the registry.
    #[arg(long)]
    image: Option<String>,
    /// Kubernetes namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// App name: the Deployment, the Service and their `app` label.
    #[arg(long)]
    app: Option<String>,
    /// Replicas, overriding the overlay's count (refused with an overlay that autoscales).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    replicas: Option<u32>,
    /// Port the LoadBalancer Service listens on.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    service_port: Option<u16>,
    /// Overlay of manifests/overlays/ to deploy.
    #[arg(long)]
    overlay: Option<String>,
    /// How requests reach the app and split between a canary and the stable track [default: pods].
    #[arg(long, value_enum)]
    traffic: Option<Traffic>,
    /// GatewayClass of the app's Gateway, with --traffic gateway [default: gke-l7-global-external-managed].
    #[arg(long)]
    gateway_class: Option<String>,
}

impl SettingsArgs {
    /// Every setting's name (as in deploy.yaml and XTASK_<NAME>) with its flag's value as
    /// text: the one list of the settings there is.
    fn by_key(&self) -> [(&'static str, Option<String>); 17] {
        [
            ("project", self.project.clone()),
            ("location", self.location.clone()),
            ("cluster", self.cluster.clone()),
            ("mode", self.mode.map(|m| m.to_string())),
            ("machine_type", self.machine_type.clone()),
            ("nodes", self.nodes.map(|n| n.to_string())),
            ("repository", self.repository.clone()),
            ("registry", self.registry.clone()),
            ("context", self.context.clone()),
            ("image", self.image.clone()),
            ("namespace", self.namespace.clone()),
            ("app", self.app.clone()),
            ("replicas", self.replicas.map(|n| n.to_string())),
            ("service_port", self.service_port.map(|n| n.to_string())),
            ("overlay", self.overlay.clone()),
            ("traffic", self.traffic.map(|t| t.to_string())),
            ("gateway_class", self.gateway_class.clone()),
        ]
    }
}

/// How GKE runs the nodes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nodes of --machine-type, --nodes of them.
    Standard,
    /// Google manages the nodes (needs a region).
    Autopilot,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Standard => "standard",
            Mode::Autopilot => "autopilot",
        })
    }
}

/// How requests reach the app, and so how a canary gets its share of them.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Traffic {
    /// A LoadBalancer Service over every ready pod: a canary's share is its share of
    /// ready pods.
    #[default]
    Pods,
    /// A Gateway API Gateway whose HTTPRoute weights the two tracks' Services: a canary
    /// gets exactly its percentage, per request (the cluster needs a Gateway controller,
    /// as GKE has with --gateway-api=standard, which `cluster-up` turns on).
    Gateway,
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Traffic::Pods => "pods",
            Traffic::Gateway => "gateway",
        })
    }
}

/// GKE's global external Application Load Balancer: needs no proxy-only subnet.
pub(crate) const DEFAULT_GATEWAY_CLASS: &str = "gke-l7-global-external-managed";

/// What every cluster target deploys, resolved and validated.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `HOST[:PORT][/PATH]`, when set.
    pub(crate) registry: Option<String>,
    /// The kubeconfig context, when set.
    pub(crate) context: Option<String>,
    pub(crate) image: String,
    pub(crate) namespace: String,
    pub(crate) app: String,
    pub(crate) replicas: Option<u32>,
    pub(crate) service_port: u16,
    pub(crate) overlay: String,
    pub(crate) traffic: Traffic,
    /// The Gateway's class, with `Traffic::Gateway`.
    pub(crate) gateway_class: String,
}

/// Where GKE and Artifact Registry keep the service, resolved and validated.
#[derive(Clone, Debug)]
pub(crate) struct Gke {
    pub(crate) project: String,
    pub(crate) location: String,
    pub(crate) cluster: String,
    pub(crate) mode: Mode,
    pub(crate) machine_type: String,
    pub(crate) nodes: u32,
    pub(crate) repository: String,
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Env(String),
    File,
    Gcloud,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File => f.write_str(SETTINGS_FILE),
            Source::Gcloud => f.write_str("gcloud config get project"),
        }
    }
}

/// The settings as given, before parsing: each with its text and its source.
pub(crate) struct Given {
    /// Every setting's name, in the order `config` lists them.
    keys: Vec<&'static str>,
    values: BTreeMap<&'static str, (String, Source)>,
    problems: Vec<String>,
}

impl Given {
    /// The setting `key` parsed by `parse`; a missing or invalid one is recorded as a
    /// problem (and gives `None`).
    fn take<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let Some((value, source)) = self.values.get(key) else {
            let gcloud = if key == "project" {
                ", or set gcloud's default (`gcloud config set project ID`)"
            } else {
                ""
            };
            self.problems.push(format!(
                "{key} is not set: pass --{}, set XTASK_{}, or add it to {SETTINGS_FILE}{gcloud}",
                key.replace('_', "-"),
                key.to_ascii_uppercase()
            ));
            return None;
        };
        parse(value)
            .map_err(|why| {
                self.problems
                    .push(format!("{key} = {value:?} (from {source}): {why}"))
            })
            .ok()
    }

    /// Like `take`, for a setting that may be left unset: `Err` when it is set but invalid.
    fn take_optional<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ()> {
        if self.values.contains_key(key) {
            self.take(key, parse).map(Some).ok_or(())
        } else {
            Ok(None)
        }
    }
}

impl Settings {
    /// Whether requests enter through one of GKE's gateway classes (`gke-…`), whose
    /// load balancer needs GKE's own policies beside the Gateway API's objects.
    pub(crate) fn gke_gateway(&self) -> bool {
        self.traffic == Traffic::Gateway && self.gateway_class.starts_with("gke-")
    }

    /// The deployment settings, or every invalid one explained at once. Asks gcloud
    /// nothing: the kube target needs no Google Cloud SDK.
    pub(crate) fn resolve(sh: &Shell, args: &SettingsArgs) -> anyhow::Result<Settings> {
        let mut given = Given::gather(sh, args, false)?;
        let settings = given.deploy();
        given.finish(settings)
    }

    /// The deployment settings and GKE's, for the gke target.
    pub(crate) fn resolve_with_gke(sh: &Shell, args: &SettingsArgs) -> anyhow::Result<(Settings, Gke)> {
        let mut given = Given::gather(sh, args, true)?;
        let (settings, gke) = (given.deploy(), given.gke());
        given.finish(settings.zip(gke))
    }
}

impl Gke {
    /// GKE's settings alone (cluster-up, cluster-down).
    pub(crate) fn resolve(sh: &Shell, args: &SettingsArgs) -> anyhow::Result<Gke> {
        let mut given = Given::gather(sh, args, true)?;
        let gke = given.gke();
        given.finish(gke)
    }

    /// The region: the location itself, or the region its zone is in.
    pub(crate) fn region(&self) -> String {
        region_of(&self.location)
    }

    /// `REGION-docker.pkg.dev`, the Artifact Registry host for this region.
    pub(crate) fn registry_host(&self) -> String {
        format!("{}-docker.pkg.dev", self.region())
    }

    /// `HOST/PROJECT/REPOSITORY`: the repository's address, images go below it.
    pub(crate) fn registry(&self) -> String {
        format!("{}/{}/{}", self.registry_host(), self.project, self.repository)
    }

    /// The kubeconfig context `gcloud container clusters get-credentials` writes.
    pub(crate) fn context(&self) -> String {
        format!("gke_{}_{}_{}", self.project, self.location, self.cluster)
    }
}

impl Given {
    /// Every setting's text and source: flag > `XTASK_*` > deploy.yaml; with
    /// `ask_gcloud`, the project from gcloud's default when nothing else names one.
    pub(crate) fn gather(sh: &Shell, args: &SettingsArgs, ask_gcloud: bool) -> anyhow::Result<Given> {
        let flags = args.by_key();
        let keys: Vec<&'static str> = flags.iter().map(|(key, _)| *key).collect();
        let file = read_file(sh, &keys)?;
        let mut values: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
        for (key, flag) in flags {
            let env = format!("XTASK_{}", key.to_ascii_uppercase());
            let value = if let Some(value) = flag {
                Some((value, Source::Flag))
            } else if let Ok(value) = sh.var(&env) {
                Some((value, Source::Env(env)))
            } else {
                file.get(key).map(|value| (value.clone(), Source::File))
            };
            if let Some(value) = value {
                values.insert(key, value);
            }
        }
        if ask_gcloud && !values.contains_key("project") {
            let project = query(cmd!(sh, "gcloud config get project").ignore_stderr())
                .context("ask gcloud for the default project (is the Google Cloud SDK installed?)")?;
            if !project.trim().is_empty() {
                values.insert("project", (project.trim().to_owned(), Source::Gcloud));
            }
        }
        Ok(Given {
            keys,
            values,
            problems: Vec::new(),
        })
    }

    /// Each setting as given (`None` when nothing sets it), in order.
    pub(crate) fn listed(&self) -> Vec<(&'static str, Option<&(String, Source)>)> {
        self.keys.iter().map(|key| (*key, self.values.get(key))).collect()
    }

    /// The deployment settings, parsed; problems are recorded for `finish`.
    pub(crate) fn deploy(&mut self) -> Option<Settings> {
        let text = |check: fn(&str) -> Result<(), String>| move |v: &str| check(v).map(|()| v.to_owned());
        let registry = self.take_optional("registry", text(valid_registry));
        let context = self.take_optional("context", text(valid_context));
        let image = self.take("image", text(valid_image));
        let namespace = self.take("namespace", text(valid_label));
        let app = self.take("app", text(valid_app));
        let replicas = self.take_optional("replicas", |v| number_in(v, 1, 1000));
        let service_port = self.take("service_port", |v| number_in(v, 1, 65535));
        let overlay = self.take("overlay", text(valid_overlay));
        let traffic = self.take_optional("traffic", |v| {
            Traffic::from_str(v, false).map_err(|_| "must be pods or gateway".into())
        });
        let gateway_class = self.take_optional("gateway_class", text(valid_subdomain));
        Some(Settings {
            registry: registry.ok()?,
            context: context.ok()?,
            image: image?,
            namespace: namespace?,
            app: app?,
            replicas: replicas.ok()?,
            service_port: service_port?,
            overlay: overlay?,
            traffic: traffic.ok()?.unwrap_or_default(),
            gateway_class: gateway_class
                .ok()?
                .unwrap_or_else(|| DEFAULT_GATEWAY_CLASS.to_owned()),
        })
    }

    /// GKE's settings, parsed; problems are recorded for `finish`.
    pub(crate) fn gke(&mut self) -> Option<Gke> {
        let text = |check: fn(&str) -> Result<(), String>| move |v: &str| check(v).map(|()| v.to_owned());
        let project = self.take("project", text(valid_project));
        let location = self.take("location", text(valid_location));
        let cluster = self.take("cluster", text(valid_cluster));
        let mode = self.take("mode", |v| {
            Mode::from_str(v, false).map_err(|_| "must be standard or autopilot".into())
        });
        let machine_type = self.take("machine_type", text(valid_machine_type));
        let nodes = self.take("nodes", |v| number_in(v, 1, 1000));
        let repository = self.take("repository", text(valid_repository));
        if let (Some(Mode::Autopilot), Some(location)) = (mode, &location)
            && is_zone(location)
        {
            self.problems.push(format!(
                "mode = autopilot needs a region, but location = {location:?} is a zone: use {:?}",
                region_of(location)
            ));
        }
        Some(Gke {
            project: project?,
            location: location?,
            cluster: cluster?,
            mode: mode?,
            machine_type: machine_type?,
            nodes: nodes?,
            repository: repository?,
        })
    }

    /// `value`, if every setting parsed; otherwise every problem at once.
    pub(crate) fn finish<T>(self, value: Option<T>) -> anyhow::Result<T> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ => bail!(
                "invalid deployment settings; nothing was changed:\n  {}",
                self.problems.join("\n  ")
            ),
        }
    }
}

/// `deploy.yaml` as key → scalar text; unknown keys are refused (a typo would otherwise
/// be silently ignored).
fn read_file(sh: &Shell, known: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    if !sh.path_exists(SETTINGS_FILE) {
        return Ok(BTreeMap::new());
    }
    let text = sh.read_file(SETTINGS_FILE)?;
    let raw: Option<BTreeMap<String, serde_yaml::Value>> =
        serde_yaml::from_str(&text).with_context(|| format!("{SETTINGS_FILE} is not a YAML mapping"))?;
    let mut values = BTreeMap::new();
    for (key, value) in raw.unwrap_or_default() {
        if !known.contains(&key.as_str()) {
            bail!(
                "{SETTINGS_FILE}: unknown setting {key:?}; known: {}",
                known.join(", ")
            );
        }
        let text = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Null => continue,
            other => bail!("{SETTINGS_FILE}: {key} must be a single value, not {other:?}"),
        };
        values.insert(key, text);
    }
    Ok(values)
}

fn number_in<T: TryFrom<u64>>(text: &str, min: u64, max: u64) -> Result<T, String> {
    let out_of_range = || format!("must be a whole number from {min} to {max}");
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => T::try_from(n).map_err(|_| out_of_range()),
        _ => Err(out_of_range()),
    }
}

fn is_lower_alnum_dash(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An RFC 1123 label: what Kubernetes requires of namespace and object names.
fn valid_label(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && is_lower_alnum_dash(text)
        && !text.starts_with('-')
        && !text.ends_with('-');
    ok.then_some(()).ok_or_else(|| {
        "must be an RFC 1123 label: 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
            .into()
    })
}

/// An RFC 1123 subdomain: what Kubernetes requires of most object names (a GatewayClass's).
fn valid_subdomain(text: &str) -> Result<(), String> {
    let ok = text.len() <= 253 && text.split('.').all(|label| valid_label(label).is_ok());
    ok.then_some(()).ok_or_else(|| {
        "must be an RFC 1123 subdomain: dot-separated labels of lower-case letters, digits or '-'".into()
    })
}

/// The canary Deployment's name: the app's, and this (the app's name is checked so it fits).
pub(crate) const CANARY_SUFFIX: &str = "-canary";
/// The stable track's Service, with `traffic: gateway`: the app's name and this.
pub(crate) const STABLE_SUFFIX: &str = "-stable";

/// The app names the Service, whose name must be an RFC 1035 label (starting with a
/// letter), and the canary's Deployment `APP-canary`, which must fit 63 characters.
fn valid_app(text: &str) -> Result<(), String> {
    let longest = 63 - CANARY_SUFFIX.len();
    let ok = text.len() <= longest
        && valid_label(text).is_ok()
        && text.starts_with(|c: char| c.is_ascii_lowercase());
    ok.then_some(()).ok_or_else(|| {
        format!(
            "names the Service, so must be an RFC 1035 label of at most {longest} characters (its canary adds {:?}): lower-case letters, digits or '-', starting with a letter and ending with a letter or digit",
            CANARY_SUFFIX
        )
    })
}

fn valid_cluster(text: &str) -> Result<(), String> {
    let ok =
        text.len() <= 40 && valid_label(text).is_ok() && text.starts_with(|c: char| c.is_ascii_lowercase());
    ok.then_some(()).ok_or_else(|| {
        "GKE cluster names are 1-40 lower-case letters, digits or '-', starting with a letter".into()
    })
}

fn valid_repository(text: &str) -> Result<(), String> {
    let ok = valid_label(text).is_ok() && text.starts_with(|c: char| c.is_ascii_lowercase());
    ok.then_some(()).ok_or_else(|| {
        "Artifact Registry repository names are lower-case letters, digits or '-', starting with a letter"
            .into()
    })
}

fn valid_project(text: &str) -> Result<(), String> {
    let ok = (6..=30).contains(&text.len())
        && is_lower_alnum_dash(text)
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && !text.ends_with('-');
    ok.then_some(()).ok_or_else(|| {
        "project ids are 6-30 lower-case letters, digits or '-', starting with a letter".into()
    })
}

fn valid_image(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && text.starts_with(|c: char| c.is_ascii_alphanumeric());
    ok.then_some(())
        .ok_or_else(|| "image names are lower-case letters, digits, '.', '_' or '-'".into())
}

/// `HOST[:PORT][/PATH…]`, as `docker push` accepts it, without a scheme or a tag.
fn valid_registry(text: &str) -> Result<(), String> {
    let (host, path) = text.split_once('/').unwrap_or((text, ""));
    let (name, port) = host.split_once(':').unwrap_or((host, ""));
    let host_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b))
        && (port.is_empty() && !host.ends_with(':') || port.parse::<u16>().is_ok_and(|p| p > 0));
    let path_ok = path.is_empty()
        || path.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    (host_ok && path_ok).then_some(()).ok_or_else(|| {
        "must be HOST[:PORT][/PATH] in lower case, like localhost:5001 or us-west1-docker.pkg.dev/my-project/ml-images".into()
    })
}

/// A kubeconfig context name: anything printable, as kubeconfigs allow (EKS names
/// contexts by ARN).
fn valid_context(text: &str) -> Result<(), String> {
    let ok = !text.is_empty() && !text.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then_some(())
        .ok_or_else(|| "must be a kubeconfig context name, without spaces".into())
}

fn valid_machine_type(text: &str) -> Result<(), String> {
    let ok = text.contains('-') && is_lower_alnum_dash(text) && !text.starts_with('-');
    ok.then_some(())
        .ok_or_else(|| "machine types look like e2-standard-2".into())
}

fn valid_overlay(text: &str) -> Result<(), String> {
    let dir = Path::new("manifests/overlays").join(text);
    let ok = valid_label(text).is_ok() && dir.join("kustomization.yaml").is_file();
    ok.then_some(())
        .ok_or_else(|| format!("no overlay {} (with a kustomization.yaml)", dir.display()))
}

/// `us-west1` (region) or `us-west1-b` (zone): letters, '-', letters and digits, and for
/// a zone one more '-' and a letter.
fn valid_location(text: &str) -> Result<(), String> {
    (is_region(text) || is_zone(text))
        .then_some(())
        .ok_or_else(|| "is neither a zone (like us-west1-b) nor a region (like us-west1)".into())
}

fn is_region(text: &str) -> bool {
    let Some((area, place)) = text.split_once('-') else {
        return false;
    };
    let letters = place.trim_end_matches(|c: char| c.is_ascii_digit());
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && !letters.is_empty()
        && letters.len() < place.len()
        && letters.bytes().all(|b| b.is_ascii_lowercase())
}

fn is_zone(text: &str) -> bool {
    text.rsplit_once('-').is_some_and(|(region, zone)| {
        is_region(region) && zone.len() == 1 && zone.bytes().all(|b| b.is_ascii_lowercase())
    })
}

fn region_of(location: &str) -> String {
    if is_zone(location) {
        location
            .rsplit_once('-')
            .map_or(location, |(region, _)| region)
            .to_owned()
    } else {
        location.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert!(is_zone("us-west1-b") && !is_region("us-west1-b"));
        assert!(is_region("us-west1") && !is_zone("us-west1"));
        assert!(is_region("northamerica-northeast1") && is_zone("europe-west4-a"));
        // The tutorial's typo.
        assert!(valid_location("us-west1b").is_err());
        assert!(valid_location("us-west-b").is_err() && valid_location("US-west1").is_err());
        assert_eq!(region_of("us-west1-b"), "us-west1");
        assert_eq!(region_of("us-west1"), "us-west1");
    }

    #[test]
    fn names() {
        assert!(valid_label("score-app").is_ok() && valid_label("mlops").is_ok());
        for bad in ["", "Score", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(valid_label(bad).is_err(), "{bad:?}");
        }
        assert!(valid_app("score-app").is_ok() && valid_app(&"a".repeat(56)).is_ok());
        for bad in ["1score", "Score_App", "score-", &"a".repeat(57)] {
            assert!(valid_app(bad).is_err(), "{bad:?}");
        }
        assert!(valid_cluster("k8s-ml-cluster").is_ok());
        assert!(valid_cluster("8ks").is_err() && valid_cluster(&"a".repeat(41)).is_err());
        assert!(valid_project("my-project-123").is_ok());
        assert!(valid_project("short").is_err() && valid_project("My-Project").is_err());
        assert!(valid_machine_type("e2-standard-2").is_ok() && valid_machine_type("big").is_err());
        for good in [
            "localhost:5001",
            "localhost:5001/team",
            "us-west1-docker.pkg.dev/my-proj/ml-images",
            "ghcr.io/org",
        ] {
            assert!(valid_registry(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "http://localhost:5001",
            "localhost:",
            "localhost:0",
            "Host/x",
            "h//x",
            "h/x/",
            "h/x:tag",
        ] {
            assert!(valid_registry(bad).is_err(), "{bad:?}");
        }
        assert!(valid_context("arn:aws:eks:us-west-2:1:cluster/ml").is_ok() && valid_context("a b").is_err());
    }
}
