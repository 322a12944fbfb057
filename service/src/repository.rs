//! The models a server serves: the one `--model` names, or a repository in Triton's
//! layout (`DIR/NAME/VERSION/model.onnx`), every version loaded once and shared by all
//! compute threads.
//!
//! Requests read one immutable [`Catalog`], swapped whole: a load builds its versions
//! beside the catalog being served and then swaps in the next one, so a request finishes
//! on the version it started with, none waits for a load, and a load that fails changes
//! nothing. Changes are serialised by one lock that requests never take.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Scorer, score};
use crate::batching::{BatchPolicy, Batcher};
use crate::compute::ComputePool;
use crate::config::{Limits, ModelControl};
use crate::http::ApiError;
use crate::metrics::ModelFamilies;
use crate::model::{self, Model, ModelLimits, OnnxModel};

/// The file each version directory holds.
const MODEL_FILE: &str = "model.onnx";
/// The optional per-model settings file, beside the version directories.
const SETTINGS_FILE: &str = "settings.json";
/// The version of each model `--model` names.
const SINGLE_VERSION: u64 = 1;

/// Where the models come from.
pub enum Source {
    /// `--model`, once or more: files or `identity`, each served as version 1.
    Files,
    /// `--model-repository`.
    Directory(PathBuf),
}

/// One loaded version of a model.
#[derive(Clone)]
pub struct Version {
    pub scorer: Arc<Scorer>,
    /// The file's stamp when it was loaded: `poll` reloads a changed file.
    stamp: Option<Stamp>,
    /// A hash of the bytes loaded, for a stamp that moved without a write.
    content: u64,
    /// Its batching, as its settings asked when it was loaded.
    batching: Option<BatchPolicy>,
}

/// A model's loaded versions, and why others are not.
#[derive(Clone, Default)]
struct Versions {
    loaded: BTreeMap<u64, Version>,
    /// Versions that failed to load.
    failed: BTreeMap<u64, Failure>,
}

/// Why a version is not loaded, and its file's stamp then: `poll` retries only a file
/// that changed.
#[derive(Clone, PartialEq)]
struct Failure {
    reason: String,
    stamp: Option<Stamp>,
}

/// What tells `poll` that a file changed. Its modification time alone misses a copy that
/// keeps the old one (`cp -p`, `rsync -t`, unpacking a tar) and a rename over it; the
/// inode and the status-change time, which no tool can set, catch those, but also move
/// without a write (`chmod`, `chown`, a hard link): then the bytes decide (`unchanged`).
/// (Triton's poll reads the modification time only.)
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
    status_changed: (i64, i64),
}

impl Stamp {
    /// The stamp of the file at `path` (through symbolic links, as a ConfigMap's are).
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: metadata.modified().ok()?,
            len: metadata.len(),
            inode: metadata.ino(),
            status_changed: (metadata.ctime(), metadata.ctime_nsec()),
        })
    }

    /// Whether the file stamped `self` when it was loaded (its bytes hashed `content`)
    /// still holds them, stamped `now`: the same stamp, or the same modification time and
    /// size with the same bytes (`read` reads them only then).
    fn unchanged(self, now: Stamp, content: u64, read: impl FnOnce() -> Option<Vec<u8>>) -> bool {
        self == now
            || (self.modified == now.modified
                && self.len == now.len
                && read().is_some_and(|bytes| content_hash(&bytes) == content))
    }
}

/// A hash of a model file's bytes, to tell whether they changed (not a defence against
/// anyone: a collision would only keep the version already loaded and vetted).
fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// What is served right now, by model name.
#[derive(Clone, Default)]
pub struct Catalog {
    models: BTreeMap<String, Versions>,
}

impl Catalog {
    /// Every loaded version of every model.
    pub fn scorers(&self) -> impl Iterator<Item = &Arc<Scorer>> {
        self.models
            .values()
            .flat_map(|versions| versions.loaded.values().map(|v| &v.scorer))
    }

    /// The models, named as errors name them.
    pub fn names(&self) -> String {
        let names: Vec<String> = self.models.keys().map(|name| format!("{name:?}")).collect();
        if names.is_empty() {
            "no model".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// Which versions of a model are served (`settings.json`'s `version_policy`, as Triton
/// names them): the newest N (`{"latest": N}`, 1 by default), `"all"`, or
/// `{"specific": [1, 3]}`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "lowercase")]
enum VersionPolicy {
    Latest(usize),
    All,
    Specific(Vec<u64>),
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    version_policy: Option<VersionPolicy>,
    /// Adaptive batching, as MLServer names it: most rows in one batch…
    max_batch_size: Option<usize>,
    /// …and most seconds a request waits for others to join its batch.
    max_batch_time: Option<f64>,
}

impl Settings {
    /// The batching the settings ask for: both values, or neither.
    fn batching(&self) -> Result<Option<BatchPolicy>, String> {
        match (self.max_batch_size, self.max_batch_time) {
            (None, None) => Ok(None),
            (Some(size), Some(time)) if size >= 1 && time > 0.0 && time <= 1.0 => Ok(Some(BatchPolicy {
                max_batch_size: size,
                max_batch_time: std::time::Duration::from_secs_f64(time),
            })),
            (Some(_), Some(_)) => Err(
                "max_batch_size must be at least 1, and max_batch_time (seconds) above 0 and at most 1"
                    .to_owned(),
            ),
            _ => Err("adaptive batching needs both max_batch_size and max_batch_time".to_owned()),
        }
    }
}

impl VersionPolicy {
    /// The versions chosen among those on disk (sorted ascending).
    fn choose(&self, on_disk: &[u64]) -> Vec<u64> {
        match self {
            VersionPolicy::Latest(n) => on_disk[on_disk.len().saturating_sub(*n)..].to_vec(),
            VersionPolicy::All => on_disk.to_vec(),
            VersionPolicy::Specific(wanted) => {
                on_disk.iter().copied().filter(|v| wanted.contains(v)).collect()
            }
        }
    }
}

/// The served models, and how to change them.
pub struct Repository {
    catalog: ArcSwap<Catalog>,
    source: Source,
    default: Option<String>,
    control: ModelControl,
    loader: Loader,
    changing: tokio::sync::Mutex<()>,
}

/// What every loaded version is made with: the load limits, and the pool, request limits
/// and metric families it is served with.
pub struct Loader {
    pub model_limits: ModelLimits,
    pub limits: Limits,
    pub pool: ComputePool,
    pub metrics: ModelFamilies,
    /// The binary that loads each file in a process of its own before this one does
    /// (`--vet-model`): where panics abort, as in the release binary, a file tract panics
    /// on would otherwise end the server and every model it serves.
    pub vet_with: Option<PathBuf>,
}

impl Loader {
    /// Loads one version's file, vetted first where `vet_with` says; a panic in tract
    /// while analysing it is a refusal of this model, not of the server. The file is read
    /// once: the bytes vetted are the bytes loaded, even while the file is being replaced.
    /// Returns the model and a hash of its bytes.
    fn load_file(&self, path: &Path, name: &str) -> Result<(Box<dyn Model>, u64), LoadFailure> {
        let limits = &self.model_limits;
        let refused = |err: model::LoadError| LoadFailure::Refused(format!("{:#}", anyhow::Error::new(err)));
        let bytes = OnnxModel::read(path, limits).map_err(refused)?;
        if let Some(binary) = &self.vet_with {
            vet(binary, path, &bytes, limits)?;
        }
        let loaded = std::panic::catch_unwind(|| OnnxModel::load_named(path, name, &bytes, limits));
        match loaded {
            Ok(Ok(model)) => Ok((Box::new(model), content_hash(&bytes))),
            Ok(Err(err)) => Err(refused(err)),
            Err(panic) => Err(LoadFailure::Refused(
                model::tract_failed(path, panic.as_ref()).to_string(),
            )),
        }
    }

    fn scorer(&self, model: Box<dyn Model>, version: u64, batching: Option<BatchPolicy>) -> Arc<Scorer> {
        let score = score::Contract::of(model.as_ref());
        let metrics = self.metrics.for_version(model.name(), &version.to_string());
        let model: Arc<dyn Model> = Arc::from(model);
        let batcher =
            batching.map(|policy| Batcher::start(model.clone(), self.pool.clone(), metrics.clone(), policy));
        Arc::new(Scorer {
            model,
            score,
            pool: self.pool.clone(),
            limits: self.limits,
            metrics,
            batcher,
        })
    }
}

/// A model found on disk: its name, directory, and versions (ascending).
struct OnDisk {
    name: String,
    dir: PathBuf,
    versions: Vec<u64>,
}

impl Repository {
    /// The models `--model` names, each as version 1, under its own name; `/score`
    /// serves `default`, or the only one. Refuses two models of one name, and a `default`
    /// that names none of them.
    pub fn files(
        models: Vec<Box<dyn Model>>,
        default: Option<String>,
        loader: Loader,
    ) -> anyhow::Result<Repository> {
        let mut catalog = Catalog::default();
        for model in models {
            let name = model.name().to_owned();
            if catalog.models.contains_key(&name) {
                anyhow::bail!(
                    "two --model files are named {name:?}: a model is called by its file's name (without .onnx), so rename one"
                );
            }
            let version = Version {
                scorer: loader.scorer(model, SINGLE_VERSION, None),
                stamp: None,
                content: 0,
                batching: None,
            };
            let versions = Versions {
                loaded: BTreeMap::from([(SINGLE_VERSION, version)]),
                failed: BTreeMap::new(),
            };
            catalog.models.insert(name, versions);
        }
        if let Some(name) = &default
            && !catalog.models.contains_key(name)
        {
            anyhow::bail!(
                "--default-model {name:?} is none of the --model files ({})",
                catalog.names()
            );
        }
        Ok(Repository {
            catalog: ArcSwap::from_pointee(catalog),
            source: Source::Files,
            default,
            control: ModelControl::None,
            loader,
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// Every model in `dir`, each version its policy chooses; a model that fails to load
    /// is recorded with its reason and does not stop the others. Fails only when the
    /// directory cannot be read, or `default` names a model it does not hold.
    pub fn open(
        dir: &Path,
        default: Option<String>,
        control: ModelControl,
        loader: Loader,
    ) -> anyhow::Result<Repository> {
        use anyhow::Context as _;
        let found = scan(dir).with_context(|| format!("read the model repository {}", dir.display()))?;
        if let Some(name) = &default
            && !found.iter().any(|model| &model.name == name)
        {
            anyhow::bail!(
                "--default-model {name:?} is not in the repository {} (it holds {})",
                dir.display(),
                found
                    .iter()
                    .map(|m| format!("{:?}", m.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // A repository of one model keeps it as `/score`'s model when others are added
        // later, so `/score`'s clients do not start getting 404s.
        let default = default.or_else(|| match found.as_slice() {
            [only] => Some(only.name.clone()),
            _ => None,
        });
        let repository = Repository {
            catalog: ArcSwap::from_pointee(Catalog::default()),
            source: Source::Directory(dir.to_owned()),
            default,
            control,
            loader,
            changing: tokio::sync::Mutex::new(()),
        };
        let mut catalog = Catalog::default();
        for model in &found {
            let versions = repository.load_model(model, None, &Versions::default());
            for (version, failure) in &versions.failed {
                tracing::warn!(
                    model = model.name,
                    version,
                    reason = failure.reason,
                    "model not loaded"
                );
            }
            catalog.models.insert(model.name.clone(), versions);
        }
        repository.catalog.store(Arc::new(catalog));
        Ok(repository)
    }

    /// What requests see now.
    pub fn catalog(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.catalog.load()
    }

    pub fn control(&self) -> ModelControl {
        self.control
    }

    /// The version of `name` a request asked for (`version`), else the newest loaded.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<Scorer>, ApiError> {
        get_in(&self.catalog(), name, version)
    }

    /// The model `/score` serves without a name: the default, or the only one.
    pub fn get_default(&self) -> Result<Arc<Scorer>, ApiError> {
        let catalog = self.catalog();
        if let Some(name) = &self.default {
            return get_in(&catalog, name, None);
        }
        let mut names = catalog.models.keys();
        match (names.next(), names.next()) {
            (Some(only), None) => get_in(&catalog, only, None),
            _ => Err(ApiError::NoDefaultModel {
                served: catalog.names(),
            }),
        }
    }

    /// `get`, with every loaded version of `name` as the protocol writes them, both read
    /// from one catalog so a swap between the two reads cannot make them disagree.
    pub fn get_with_versions(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(Arc<Scorer>, Vec<String>), ApiError> {
        let catalog = self.catalog();
        let scorer = get_in(&catalog, name, version)?;
        let versions = catalog
            .models
            .get(name)
            .map(|v| v.loaded.keys().map(u64::to_string).collect())
            .unwrap_or_default();
        Ok((scorer, versions))
    }

    /// Whether every model the repository holds has a version loaded.
    pub fn all_loaded(&self) -> bool {
        self.catalog().models.values().all(|v| !v.loaded.is_empty())
    }

    /// The models the repository holds with no version loaded.
    pub fn not_loaded(&self) -> Vec<String> {
        self.catalog()
            .models
            .iter()
            .filter(|(_, versions)| versions.loaded.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// `POST /v2/repository/index`: every model and version, on disk or loaded, with its
    /// state and, when not ready, why.
    /// With `only_ready`, the ready versions alone (the protocol's `{"ready": true}`).
    pub async fn index(&self, only_ready: bool) -> Value {
        let on_disk = match &self.source {
            Source::Directory(dir) => scan_aside(dir).await.unwrap_or_default(),
            Source::Files => Vec::new(),
        };
        let catalog = self.catalog();
        let mut rows: BTreeMap<(String, u64), (&str, String)> = BTreeMap::new();
        for model in on_disk {
            for version in model.versions {
                rows.insert(
                    (model.name.clone(), version),
                    ("UNAVAILABLE", "not loaded".to_owned()),
                );
            }
        }
        for (name, versions) in &catalog.models {
            for (version, failure) in &versions.failed {
                rows.insert((name.clone(), *version), ("UNAVAILABLE", failure.reason.clone()));
            }
            for version in versions.loaded.keys() {
                rows.insert((name.clone(), *version), ("READY", String::new()));
            }
        }
        Value::Array(
            rows.into_iter()
                .filter(|(_, (state, _))| !only_ready || *state == "READY")
                .map(|((name, version), (state, reason))| {
                    json!({"name": name, "version": version.to_string(), "state": state, "reason": reason})
                })
                .collect(),
        )
    }

    /// `POST /v2/repository/models/{name}/load`: (re)loads the versions the model's policy
    /// chooses, or the one `version` asked for, from disk, and swaps them in. If any
    /// fails, nothing changes.
    pub async fn load(self: &Arc<Self>, name: &str, version: Option<u64>) -> Result<Vec<u64>, ApiError> {
        let _changing = self.changing.lock().await;
        let Source::Directory(dir) = &self.source else {
            return Err(ApiError::ModelControl(
                "this server serves the files --model names: it has no repository to load from".to_owned(),
            ));
        };
        let model = scan_aside(dir)
            .await
            .ok()
            .and_then(|found| found.into_iter().find(|m| m.name == name))
            .ok_or_else(|| ApiError::LoadFailed {
                model: name.to_owned(),
                reason: format!(
                    "the repository {} has no model directory {name:?} with a version in it",
                    dir.display()
                ),
            })?;
        if let Some(asked) = version
            && !model.versions.contains(&asked)
        {
            return Err(ApiError::LoadFailed {
                model: name.to_owned(),
                reason: format!("it has no version {asked} on disk (it has {:?})", model.versions),
            });
        }
        let this = self.clone();
        let versions =
            tokio::task::spawn_blocking(move || this.load_model(&model, version, &Versions::default()))
                .await
                .map_err(|err| ApiError::LoadFailed {
                    model: name.to_owned(),
                    reason: format!("the load ended without an answer: {err}"),
                })?;
        if let Some((version, failure)) = versions.failed.iter().next() {
            // What did load is dropped: its series go too, unless a version of the same
            // number is served (and shares them).
            self.drop_series_not_in(&self.catalog(), name, versions.loaded.keys());
            return Err(ApiError::LoadFailed {
                model: name.to_owned(),
                reason: format!("version {version}: {}", failure.reason),
            });
        }
        let loaded: Vec<u64> = versions.loaded.keys().copied().collect();
        self.swap(|catalog| {
            catalog.models.insert(name.to_owned(), versions);
        });
        tracing::info!(model = name, versions = ?loaded, "model loaded");
        Ok(loaded)
    }

    /// `POST /v2/repository/models/{name}/unload`: stops serving every version of `name`.
    /// Requests already running on it finish.
    pub async fn unload(&self, name: &str) -> Result<(), ApiError> {
        let _changing = self.changing.lock().await;
        let catalog = self.catalog();
        if !catalog.models.contains_key(name) {
            return Err(ApiError::UnknownModel {
                asked: name.to_owned(),
                served: catalog.names(),
            });
        }
        drop(catalog);
        self.swap(|catalog| {
            catalog.models.remove(name);
        });
        tracing::info!(model = name, "model unloaded");
        Ok(())
    }

    /// `--model-control poll`: loads what appeared or changed on disk, unloads what
    /// disappeared. A model whose new files fail to load keeps serving what it served.
    pub async fn poll(self: &Arc<Self>) {
        let _changing = self.changing.lock().await;
        let Source::Directory(dir) = &self.source else {
            return;
        };
        let Ok(found) = scan_aside(dir).await else {
            tracing::warn!(repository = %dir.display(), "the model repository cannot be read; serving what was loaded");
            return;
        };
        let current = self.catalog.load_full();
        let gone: Vec<String> = current
            .models
            .keys()
            .filter(|name| !found.iter().any(|m| &&m.name == name))
            .cloned()
            .collect();
        let mut changed: Vec<(String, Versions)> = Vec::new();
        for model in found {
            let previous = current.models.get(&model.name).cloned().unwrap_or_default();
            let this = self.clone();
            let (name, versions) = match tokio::task::spawn_blocking(move || {
                let mut versions = this.load_model(&model, None, &previous);
                // New files that do not load (a broken upload, one still being copied, a
                // settings typo) do not take a model that answers out of service.
                if versions.loaded.is_empty() && !previous.loaded.is_empty() {
                    tracing::warn!(
                        model = model.name,
                        failed = ?versions.failed.keys().collect::<Vec<_>>(),
                        "the repository's new files for this model do not load; serving what was loaded"
                    );
                    versions.loaded = previous.loaded;
                }
                (model.name, versions)
            })
            .await
            {
                Ok(loaded) => loaded,
                Err(_) => continue,
            };
            let before = current.models.get(&name);
            let same = before.is_some_and(|b| {
                b.failed == versions.failed
                    && b.loaded.len() == versions.loaded.len()
                    && b.loaded
                        .iter()
                        .zip(&versions.loaded)
                        .all(|((va, a), (vb, b))| va == vb && Arc::ptr_eq(&a.scorer, &b.scorer))
            });
            if !same {
                changed.push((name, versions));
            }
        }
        if gone.is_empty() && changed.is_empty() {
            return;
        }
        for name in &gone {
            tracing::info!(model = name, "model unloaded: gone from the repository");
        }
        for (name, versions) in &changed {
            tracing::info!(model = name, versions = ?versions.loaded.keys().collect::<Vec<_>>(), failed = ?versions.failed.keys().collect::<Vec<_>>(), "model reloaded from the repository");
        }
        self.swap(|catalog| {
            for name in &gone {
                catalog.models.remove(name);
            }
            for (name, versions) in changed {
                catalog.models.insert(name, versions);
            }
        });
    }

    /// `poll` every `every`, for ever.
    pub async fn poll_every(self: Arc<Self>, every: std::time::Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.poll().await;
        }
    }

    /// Removes the metric series of `name`'s `versions` that `served` does not serve.
    fn drop_series_not_in<'v>(
        &self,
        served: &Catalog,
        name: &str,
        versions: impl IntoIterator<Item = &'v u64>,
    ) {
        let loaded = served.models.get(name).map(|now| &now.loaded);
        for version in versions {
            if !loaded.is_some_and(|loaded| loaded.contains_key(version)) {
                self.loader.metrics.remove_version(name, &version.to_string());
            }
        }
    }

    /// Builds the next catalog from the current one and serves it.
    fn swap(&self, change: impl FnOnce(&mut Catalog)) {
        let before = self.catalog.load_full();
        let mut next = Catalog::clone(&before);
        change(&mut next);
        // A version no longer served loses its series: /metrics shows what is served,
        // and a repository whose versions come and go keeps a bounded set of labels.
        for (name, versions) in &before.models {
            self.drop_series_not_in(&next, name, versions.loaded.keys());
        }
        self.catalog.store(Arc::new(next));
    }

    /// Loads the versions of `model` its policy chooses (or `only`), reusing from
    /// `previous` each version whose file has not changed. A version that fails is kept
    /// from `previous` if it was loaded there, and recorded as failed otherwise.
    fn load_model(&self, model: &OnDisk, only: Option<u64>, previous: &Versions) -> Versions {
        let mut versions = Versions::default();
        let settings = read_settings(&model.dir).and_then(|settings| {
            let batching = settings.batching()?;
            Ok((
                settings.version_policy.unwrap_or(VersionPolicy::Latest(1)),
                batching,
            ))
        });
        let (policy, batching) = match settings {
            Ok(settings) => settings,
            Err(reason) => {
                for version in &model.versions {
                    let failure = Failure {
                        reason: reason.clone(),
                        stamp: None,
                    };
                    versions.failed.insert(*version, failure);
                }
                return versions;
            }
        };
        let chosen = match only {
            Some(version) => vec![version],
            None => policy.choose(&model.versions),
        };
        for version in chosen {
            let path = model.dir.join(version.to_string()).join(MODEL_FILE);
            let stamp = Stamp::of(&path);
            if let Some(kept) = previous.loaded.get(&version)
                && let (Some(then), Some(now)) = (kept.stamp, stamp)
                && then.unchanged(now, kept.content, || std::fs::read(&path).ok())
                && kept.batching == batching
            {
                let stamp = Some(now);
                versions.loaded.insert(
                    version,
                    Version {
                        stamp,
                        ..kept.clone()
                    },
                );
                continue;
            }
            if let Some(failed) = previous.failed.get(&version)
                && failed.stamp.is_some()
                && failed.stamp == stamp
            {
                versions.failed.insert(version, failed.clone());
                continue;
            }
            let loaded =
                self.loader
                    .load_file(&path, &model.name)
                    .and_then(|(loaded, content)| match batching {
                        Some(_) => batchable(loaded.as_ref())
                            .map(|()| (loaded, content))
                            .map_err(LoadFailure::Refused),
                        None => Ok((loaded, content)),
                    });
            match loaded {
                Ok((loaded, content)) => {
                    let scorer = self.loader.scorer(loaded, version, batching);
                    versions.loaded.insert(
                        version,
                        Version {
                            scorer,
                            stamp,
                            content,
                            batching,
                        },
                    );
                }
                Err(failure) => match previous.loaded.get(&version) {
                    Some(kept) => {
                        tracing::warn!(
                            model = model.name,
                            version,
                            reason = failure.reason(),
                            "the changed model does not load; serving the one loaded before"
                        );
                        versions.loaded.insert(version, kept.clone());
                    }
                    None => {
                        // A failure for now is not remembered against the file's stamp:
                        // the next load or poll tries it again.
                        let stamp = match failure {
                            LoadFailure::Refused(_) => stamp,
                            LoadFailure::Transient(_) => None,
                        };
                        let reason = failure.reason().to_owned();
                        versions.failed.insert(version, Failure { reason, stamp });
                    }
                },
            }
        }
        versions
    }
}

fn get_in(catalog: &Catalog, name: &str, version: Option<&str>) -> Result<Arc<Scorer>, ApiError> {
    let versions = catalog
        .models
        .get(name)
        .filter(|versions| !versions.loaded.is_empty())
        .ok_or_else(|| ApiError::UnknownModel {
            asked: name.to_owned(),
            served: catalog.names(),
        })?;
    let found = match version {
        None => versions.loaded.values().next_back(),
        Some(asked) => asked.parse::<u64>().ok().and_then(|v| versions.loaded.get(&v)),
    };
    found
        .map(|v| v.scorer.clone())
        .ok_or_else(|| ApiError::UnknownVersion {
            model: name.to_owned(),
            asked: version.unwrap_or_default().to_owned(),
            served: versions
                .loaded
                .keys()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Batching joins requests along the first axis and cuts the answers back the same way:
/// every input and output must have the batch as its first axis.
fn batchable(model: &dyn Model) -> Result<(), String> {
    // An input's first axis must be open: a fixed one (`[1, 4]`) takes no merged batch.
    let unbatched = model
        .inputs()
        .iter()
        .find(|tensor| tensor.shape.first() != Some(&crate::model::Dim::Dynamic))
        .or_else(|| model.outputs().iter().find(|tensor| !tensor.batched));
    match unbatched {
        Some(tensor) => Err(format!(
            "max_batch_size needs every input and output to have the batch as its first axis, and {:?} does not",
            tensor.name
        )),
        None => Ok(()),
    }
}

/// Why a version did not load: for good, until its file changes, or for now (the
/// vetting process could not start), to be tried again at the next load or poll.
enum LoadFailure {
    Refused(String),
    Transient(String),
}

impl LoadFailure {
    fn reason(&self) -> &str {
        match self {
            LoadFailure::Refused(reason) | LoadFailure::Transient(reason) => reason,
        }
    }
}

/// How `--vet-model` says tract panicked on the file (its message on stderr, one line).
pub const VET_PANICKED: u8 = 3;

/// The stack a model is loaded on, here and in the vetting process alike, so that a graph
/// that passes there cannot overflow here: tokio's threads are given it too.
pub const LOAD_STACK_SIZE: usize = 8 << 20;

/// The longest a vetting process may take: a file that keeps tract busy longer (or never
/// ends, as a FIFO named model.onnx) is refused, rather than holding the repository's
/// changes for ever. Loading the largest model the default limits allow takes far less.
const VET_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// Loads `bytes`, read from `path`, in a process of `binary` (`--vet-model -`, the bytes
/// on its stdin) and refuses them if that process panicked, was killed (a stack overflow,
/// the kernel's OOM killer) or ran past `VET_DEADLINE`. Bytes it loads, or refuses
/// cleanly, pass: the load in this process then says what it says.
fn vet(binary: &Path, path: &Path, bytes: &[u8], limits: &ModelLimits) -> Result<(), LoadFailure> {
    use std::io::{Read as _, Write as _};
    use std::process::{Command, Stdio};
    let mut command = Command::new(binary);
    command
        .arg("--vet-model")
        .arg("-")
        .args(crate::config::Config::model_limit_flags(limits))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // The server's own settings are not the vetting process's business; the rest of the
    // environment (PATH, TMPDIR, allocator settings) is.
    for (variable, _) in std::env::vars_os() {
        if variable.to_string_lossy().starts_with("SCORE_") {
            command.env_remove(variable);
        }
    }
    let mut child = command.spawn().map_err(|err| {
        LoadFailure::Transient(format!(
            "could not start {} to vet {}: {err}",
            binary.display(),
            path.display()
        ))
    })?;
    let (stdin, stderr) = (child.stdin.take(), child.stderr.take());
    let (ended, said) = std::thread::scope(|scope| {
        // A process that stops reading (it ended) breaks the pipe: the write just fails.
        scope.spawn(move || stdin.map(|mut stdin| stdin.write_all(bytes)));
        // Its stderr ends when it does: that is the wait, with a deadline, and no polling.
        let (said_tx, said_rx) = std::sync::mpsc::channel();
        scope.spawn(move || {
            let mut said = Vec::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_end(&mut said);
            }
            let _ = said_tx.send(said);
        });
        match said_rx.recv_timeout(VET_DEADLINE) {
            Ok(said) => (
                child
                    .wait()
                    .map_err(|err| format!("waiting for the process vetting it failed: {err}")),
                said,
            ),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                (
                    Err(format!("loading it took longer than {VET_DEADLINE:?}")),
                    Vec::new(),
                )
            }
        }
    });
    let said = String::from_utf8_lossy(&said);
    let said = said.trim();
    let status = match ended {
        Ok(status) => status,
        Err(why) => return Err(LoadFailure::Refused(format!("{}: {why}", path.display()))),
    };
    match status.code() {
        Some(0 | 1) => Ok(()),
        Some(code) if code == i32::from(VET_PANICKED) => Err(LoadFailure::Refused(
            model::tract_failed(path, &said.to_owned()).to_string(),
        )),
        _ => Err(LoadFailure::Refused(format!(
            "{}: loading it ended the process vetting it ({status}){}",
            path.display(),
            match said.lines().rev().find(|line| !line.trim().is_empty()) {
                Some(line) => format!(": {line}"),
                None => String::new(),
            }
        ))),
    }
}

fn read_settings(dir: &Path) -> Result<Settings, String> {
    let path = dir.join(SETTINGS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| format!("{}: {err}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(err) => Err(format!("{}: {err}", path.display())),
    }
}

/// `scan`, on a thread where waiting on the disk stalls no request.
async fn scan_aside(dir: &Path) -> std::io::Result<Vec<OnDisk>> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || scan(&dir))
        .await
        .map_err(std::io::Error::other)?
}

/// The models in `dir`: each directory whose name is a model name and that holds at
/// least one version directory (a number) with the model file in it.
fn scan(dir: &Path) -> std::io::Result<Vec<OnDisk>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let inside = match std::fs::read_dir(entry.path()) {
            Ok(inside) => inside,
            // One folder this process may not read (`lost+found` on a mounted volume) is
            // not a model, and does not hide the others.
            Err(err) => {
                tracing::warn!(folder = %entry.path().display(), error = %err, "not a model: the folder cannot be read");
                continue;
            }
        };
        let mut versions: Vec<u64> = inside
            .filter_map(Result::ok)
            .filter(|v| v.path().join(MODEL_FILE).is_file())
            .filter_map(|v| v.file_name().to_str()?.parse::<u64>().ok())
            .filter(|v| *v > 0)
            .collect();
        versions.sort_unstable();
        if !versions.is_empty() {
            found.push(OnDisk {
                name,
                dir: entry.path(),
                versions,
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_that_moved_without_a_write_keeps_the_version_when_the_bytes_are_the_same() {
        let then = Stamp {
            modified: SystemTime::UNIX_EPOCH,
            len: 5,
            inode: 7,
            status_changed: (1, 0),
        };
        let content = content_hash(b"model");
        let unread = || -> Option<Vec<u8>> { panic!("the same stamp needs no read") };
        assert!(then.unchanged(then, content, unread));
        // chmod, chown or a hard link: the status-change time moved, the bytes did not.
        let touched = Stamp {
            status_changed: (2, 0),
            ..then
        };
        assert!(then.unchanged(touched, content, || Some(b"model".to_vec())));
        // Renamed over, or written with its modification time set back: other bytes.
        let replaced = Stamp { inode: 8, ..touched };
        assert!(!then.unchanged(replaced, content, || Some(b"other".to_vec())));
        assert!(!then.unchanged(replaced, content, || None), "unreadable now");
        // A write that moves the modification time or size is a change, unread.
        let written = Stamp { len: 6, ..then };
        assert!(!then.unchanged(written, content, unread));
    }

    #[test]
    fn version_policies_choose_as_tritons_do() {
        let on_disk = [1, 2, 5];
        assert_eq!(VersionPolicy::Latest(1).choose(&on_disk), [5]);
        assert_eq!(VersionPolicy::Latest(2).choose(&on_disk), [2, 5]);
        assert_eq!(VersionPolicy::Latest(9).choose(&on_disk), [1, 2, 5]);
        assert_eq!(VersionPolicy::All.choose(&on_disk), [1, 2, 5]);
        assert_eq!(VersionPolicy::Specific(vec![1, 3]).choose(&on_disk), [1]);
        let read = |text: &str| serde_json::from_str::<Settings>(text).map(|s| s.version_policy);
        assert_eq!(
            read(r#"{"version_policy": {"latest": 2}}"#).unwrap(),
            Some(VersionPolicy::Latest(2))
        );
        assert_eq!(
            read(r#"{"version_policy": "all"}"#).unwrap(),
            Some(VersionPolicy::All)
        );
        assert_eq!(
            read(r#"{"version_policy": {"specific": [1, 3]}}"#).unwrap(),
            Some(VersionPolicy::Specific(vec![1, 3]))
        );
        assert!(read(r#"{"version_policy": "newest"}"#).is_err());
        assert!(
            read(r#"{"max_batch": 3}"#).is_err(),
            "an unknown setting is refused, not ignored"
        );
    }
}
