//! The pipeline files under `ci/`, held offline to what can be checked without running
//! them: each Cloud Build step calls only programs its image has (from the table in
//! `pipeline_images.yaml`, with the source of each entry), passes what the xtask needs,
//! and every pipeline does its work through `cargo xtask`. actionlint and zizmor lint the
//! workflow in `cargo xtask ci`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use crate::support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// What the shell runs itself, not a program an image must have.
const SHELL_BUILTINS: [&str; 16] = [
    ".", "source", "export", "cd", "set", "echo", "test", "[", "true", "false", "exit", "if", "then", "fi",
    "else", "do",
];

/// The programs a shell script calls: the first word of each command, past variable
/// assignments, in lines, `&&`/`||`/`;` lists, pipelines and `$(…)`; `cargo xtask NAME`
/// is reported as `xtask NAME` (with its `--target`, if any), since what it runs is in
/// the table.
fn called_programs(script: &str) -> Vec<String> {
    let joined = script
        .replace("\\\n", " ")
        .replace("2>&1", " ")
        .replace(">&2", " ")
        .replace("$(", ";")
        .replace(')', " ");
    let mut called = Vec::new();
    for line in joined
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
    {
        for command in line.split(['|', ';', '&']).map(str::trim) {
            let mut words = command
                .split_whitespace()
                .map(|word| word.trim_matches('"'))
                .filter(|word| !word.is_empty())
                .skip_while(|word| word.contains('='));
            let Some(program) = words.next() else { continue };
            if SHELL_BUILTINS.contains(&program) {
                continue;
            }
            called.push(program.to_owned());
            let rest: Vec<&str> = words.collect();
            if program == "cargo" && rest.first() == Some(&"xtask") {
                let target = rest
                    .iter()
                    .position(|word| *word == "--target")
                    .and_then(|at| rest.get(at + 1))
                    .map(|target| format!(" --target {target}"))
                    .unwrap_or_default();
                called.extend(rest.get(1).map(|task| format!("xtask {task}{target}")));
            }
        }
    }
    called
}

struct Table {
    images: BTreeMap<String, BTreeSet<String>>,
    runners: BTreeMap<String, BTreeSet<String>>,
    /// What an action puts on the PATH: its programs, and its components' by name.
    actions: BTreeMap<String, (BTreeSet<String>, BTreeMap<String, String>)>,
    /// The program an image runs when a step names no entrypoint.
    entrypoints: BTreeMap<String, String>,
    packages: BTreeMap<String, BTreeSet<String>>,
    xtask: BTreeMap<String, BTreeSet<String>>,
}

impl Table {
    fn load() -> Self {
        let table = yaml(&root().join("xtask/tests/it/pipeline_images.yaml"));
        let map = |value: &Value, field: Option<&str>| -> BTreeMap<String, BTreeSet<String>> {
            value
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(key, entry)| {
                    let list = field.map_or(entry, |field| &entry[field]);
                    (
                        key.as_str().unwrap().to_owned(),
                        strings(list).into_iter().collect(),
                    )
                })
                .collect()
        };
        let images = map(&table["images"], Some("programs"));
        for (image, entry) in table["images"].as_mapping().unwrap() {
            assert!(
                entry["source"].as_str().is_some_and(|s| !s.is_empty()),
                "{image:?} names no source"
            );
        }
        let entrypoints = table["images"]
            .as_mapping()
            .unwrap()
            .iter()
            .filter_map(|(image, entry)| {
                Some((
                    image.as_str()?.to_owned(),
                    entry["entrypoint"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let actions = table["actions"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(action, entry)| {
                let components = entry["components"]
                    .as_mapping()
                    .map(|components| {
                        components
                            .iter()
                            .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    action.as_str().unwrap().to_owned(),
                    (strings(&entry["programs"]).into_iter().collect(), components),
                )
            })
            .collect();
        Table {
            images,
            runners: map(&table["runners"], Some("programs")),
            actions,
            entrypoints,
            packages: map(&table["packages"], None),
            xtask: map(&table["xtask"], None),
        }
    }

    /// The programs of an image a Dockerfile builds: its base's, plus those of the Debian
    /// packages it installs; and what its own RUN lines call that the base lacks.
    fn built_image(&self, dockerfile: &str) -> Result<BTreeSet<String>, Vec<String>> {
        let text = dockerfile.replace("\\\n", " ");
        let base = text
            .lines()
            .find_map(|line| line.strip_prefix("FROM "))
            .map(|from| from.split_whitespace().next().unwrap().to_owned())
            .unwrap();
        let Some(base_programs) = self.images.get(&base) else {
            return Err(vec![format!("its base {base} is not in the table")]);
        };
        let mut programs = base_programs.clone();
        let mut missing = Vec::new();
        for run in text.lines().filter_map(|line| line.trim().strip_prefix("RUN ")) {
            for program in called_programs(run) {
                if !base_programs.contains(&program) {
                    missing.push(format!("its RUN calls {program}, which {base} lacks"));
                }
            }
            for install in run
                .split("&&")
                .filter_map(|part| part.split_once("apt-get install"))
            {
                for package in install.1.split_whitespace().filter(|word| !word.starts_with('-')) {
                    match self.packages.get(package) {
                        Some(provided) => programs.extend(provided.iter().cloned()),
                        None => missing.push(format!("it installs {package}, which the table does not know")),
                    }
                }
            }
        }
        if missing.is_empty() {
            Ok(programs)
        } else {
            Err(missing)
        }
    }
}

impl Table {
    /// What `cargo xtask TASK [--target T]` runs: the entry for the task with that
    /// target, else the task's.
    fn xtask_runs(&self, call: &str) -> Option<&BTreeSet<String>> {
        self.xtask
            .get(call)
            .or_else(|| self.xtask.get(call.split(" --target").next().unwrap()))
    }

    /// Each program in `calls` that `programs` lacks, as "calls X" (naming the xtask
    /// command a program is needed for), or the xtask command the table does not know.
    fn lacking(&self, calls: Vec<String>, programs: &BTreeSet<String>) -> Vec<String> {
        let mut gaps = Vec::new();
        for call in calls {
            let needed: Vec<String> = match call.strip_prefix("xtask ") {
                Some(task) => match self.xtask_runs(task) {
                    Some(runs) => runs
                        .iter()
                        .map(|program| format!("{program} (for `cargo xtask {task}`)"))
                        .collect(),
                    None => {
                        gaps.push(format!("`cargo xtask {task}` is not in the table"));
                        continue;
                    }
                },
                None => vec![call],
            };
            for need in needed {
                if !programs.contains(need.split(' ').next().unwrap()) {
                    gaps.push(format!("calls {need}"));
                }
            }
        }
        gaps
    }
}

/// What each job of a GitHub workflow runs that its runner and the actions before the step
/// do not provide, as "job ID: …" lines.
fn workflow_gaps(workflow: &str, table: &Table) -> Vec<String> {
    let workflow: Value = serde_yaml::from_str(workflow).unwrap();
    let mut gaps = Vec::new();
    for (id, job) in workflow["jobs"].as_mapping().unwrap() {
        let id = id.as_str().unwrap();
        let runner = job["runs-on"].as_str().unwrap_or_default();
        let Some(mut programs) = table.runners.get(runner).cloned() else {
            gaps.push(format!("job {id}: runner {runner} is not in the table"));
            continue;
        };
        for step in job["steps"].as_sequence().unwrap() {
            if let Some(action) = step["uses"].as_str() {
                let name = action.split('@').next().unwrap();
                if let Some((provided, components)) = table.actions.get(name) {
                    programs.extend(provided.iter().cloned());
                    let asked = step["with"]["install_components"].as_str().unwrap_or_default();
                    for component in asked.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                        match components.get(component) {
                            Some(program) => {
                                programs.insert(program.clone());
                            }
                            None => gaps.push(format!(
                                "job {id}: component {component} of {name} is not in the table"
                            )),
                        }
                    }
                }
            }
            if let Some(run) = step["run"].as_str() {
                let lacking = table.lacking(called_programs(run), &programs);
                gaps.extend(lacking.into_iter().map(|gap| {
                    format!("job {id}: {gap}, which {runner} and the actions before it do not provide")
                }));
            }
        }
    }
    gaps
}

/// What each step of a Cloud Build config calls that its image does not provide, as
/// "step ID: …" lines; images built by an earlier step are read from their Dockerfile.
fn cloud_build_gaps(config: &str, table: &Table) -> Vec<String> {
    let config: Value = serde_yaml::from_str(config).unwrap();
    let substitute = |text: &str| {
        let mut text = text.to_owned();
        if let Some(substitutions) = config["substitutions"].as_mapping() {
            for (key, value) in substitutions {
                let (key, value) = (key.as_str().unwrap(), value.as_str().unwrap());
                text = text
                    .replace(&format!("${{{key}}}"), value)
                    .replace(&format!("${key}"), value);
            }
        }
        text
    };
    let mut built: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut gaps = Vec::new();
    for step in config["steps"].as_sequence().unwrap() {
        let id = step["id"].as_str().unwrap_or("?");
        let image = substitute(step["name"].as_str().unwrap());
        let args: Vec<String> = strings(&step["args"]).iter().map(|arg| substitute(arg)).collect();
        let programs = match built.get(&image).or(table.images.get(&image)) {
            Some(programs) => programs.clone(),
            None => {
                gaps.push(format!(
                    "step {id}: its image {image} is neither in the table nor built by an earlier step"
                ));
                continue;
            }
        };
        let calls = match step["entrypoint"].as_str() {
            Some(shell @ ("bash" | "sh")) => {
                let script = args
                    .iter()
                    .position(|arg| arg.starts_with('-') && arg.contains('c'));
                let mut calls = vec![shell.to_owned()];
                calls.extend(
                    script
                        .and_then(|at| args.get(at + 1))
                        .map(|s| called_programs(s))
                        .unwrap_or_default(),
                );
                calls
            }
            Some(entrypoint) => vec![entrypoint.to_owned()],
            None => match table.entrypoints.get(&image) {
                Some(entrypoint) => vec![entrypoint.clone()],
                None => {
                    gaps.push(format!(
                        "step {id}: names no entrypoint, and the table gives none for {image}"
                    ));
                    continue;
                }
            },
        };
        let lacking = table.lacking(calls, &programs);
        gaps.extend(
            lacking
                .into_iter()
                .map(|gap| format!("step {id}: {gap}, which {image} does not have")),
        );
        // `docker build --tag NAME --file FILE`: later steps may run NAME.
        if args.first().map(String::as_str) == Some("build") {
            let after = |flag: &str| {
                args.iter()
                    .position(|arg| arg == flag)
                    .and_then(|at| args.get(at + 1))
            };
            if let (Some(tag), Some(file)) = (after("--tag"), after("--file")) {
                match table.built_image(&std::fs::read_to_string(root().join(file)).unwrap()) {
                    Ok(programs) => {
                        built.insert(tag.clone(), programs);
                    }
                    Err(missing) => gaps.extend(missing.iter().map(|m| format!("step {id}: {file}: {m}"))),
                }
            }
        }
    }
    gaps
}

#[test]
fn every_program_a_workflow_step_calls_is_on_its_runner_or_put_there_by_an_action() {
    let table = Table::load();
    let workflow = std::fs::read_to_string(root().join("ci/github-actions.yml")).unwrap();
    assert_eq!(workflow_gaps(&workflow, &table), Vec::<String>::new());
    // A job that ships to GKE without setting up gcloud, and one that runs `go` before Go
    // is set up, are caught.
    let planted = r#"
jobs:
  ship:
    runs-on: ubuntu-24.04
    steps:
      - run: cargo xtask cluster-up
  kind:
    runs-on: ubuntu-24.04
    steps:
      - run: nohup "$(go env GOPATH)/bin/cloud-provider-kind" > log 2>&1 &
      - uses: helm/kind-action@ef37e7f390d99f746eb8b610417061a60e82a6cc
      - run: kind get clusters
"#;
    let mut table = table;
    table.runners.get_mut("ubuntu-24.04").unwrap().remove("go");
    assert_eq!(
        workflow_gaps(planted, &table),
        [
            "job ship: calls gcloud (for `cargo xtask cluster-up`), which ubuntu-24.04 and the actions before it do not provide",
            "job kind: calls go, which ubuntu-24.04 and the actions before it do not provide",
        ]
    );
}

#[test]
fn every_program_a_cloud_build_step_calls_is_in_its_image() {
    let table = Table::load();
    let config = std::fs::read_to_string(root().join("ci/cloudbuild.yaml")).unwrap();
    assert_eq!(cloud_build_gaps(&config, &table), Vec::<String>::new());

    // The config as it was: rustup through curl, and cargo, in the Cloud SDK image.
    let bare_sdk = r#"
steps:
  - id: test
    name: gcr.io/google.com/cloudsdktool/google-cloud-cli:stable
    entrypoint: bash
    args:
      - -ceu
      - |
        curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y
        . "$$HOME/.cargo/env"
        cargo xtask ci
"#;
    let gaps = cloud_build_gaps(bare_sdk, &table);
    let image = "gcr.io/google.com/cloudsdktool/google-cloud-cli:stable";
    for program in [
        "curl",
        "cargo",
        "git (for `cargo xtask ci`)",
        "kubectl (for `cargo xtask ci`)",
    ] {
        let gap = format!("step test: calls {program}, which {image} does not have");
        assert!(gaps.contains(&gap), "{gap} not in {gaps:#?}");
    }
    // A step image whose Dockerfile installs what the table cannot vouch for.
    assert_eq!(
        table.built_image("FROM rust:1.95-bookworm\nRUN apt-get install -y nodejs && node x.js\n"),
        Err(vec![
            "its RUN calls node, which rust:1.95-bookworm lacks".to_owned(),
            "it installs nodejs, which the table does not know".to_owned()
        ])
    );
}

/// The `cargo xtask …` lines of a Cloud Build step's script.
fn cloud_build_xtask_lines(step: &Value) -> Vec<String> {
    let script = strings(&step["args"])
        .into_iter()
        .find(|arg| arg.contains("cargo "))
        .unwrap_or_default();
    script
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cargo xtask"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn cloud_build_passes_what_the_xtask_needs() {
    let config = yaml(&root().join("ci/cloudbuild.yaml"));
    let steps = config["steps"].as_sequence().unwrap();
    let mut lines = Vec::new();
    for step in steps {
        let xtask = cloud_build_xtask_lines(step);
        if xtask.is_empty() {
            continue;
        }
        let env = strings(&step["env"]);
        let id = step["id"].as_str().unwrap();
        // A trigger's upload may have no .git: the commit comes from Cloud Build.
        assert!(
            env.contains(&"XTASK_COMMIT=$COMMIT_SHA".to_owned()),
            "step {id}: {env:?}"
        );
        for line in &xtask {
            if ["tools", "cluster-up", "ship"]
                .iter()
                .any(|task| line.starts_with(&format!("cargo xtask {task}")))
            {
                assert!(
                    env.contains(&"XTASK_PROJECT=$PROJECT_ID".to_owned()),
                    "step {id}: {line}: {env:?}"
                );
            }
            // The steps' network stack is not the engine's.
            if line.starts_with("cargo xtask ci") {
                assert!(line.contains("--without-engine-tests"), "step {id}: {line}");
            }
        }
        lines.extend(xtask);
    }
    assert_eq!(
        lines,
        [
            "cargo xtask ci --without-engine-tests",
            "cargo xtask tools --target gke",
            "cargo xtask cluster-up",
            "cargo xtask ship --target gke"
        ]
    );
    // `gcloud builds submit` uploads .git only when a .gcloudignore does not drop it.
    let ignore = std::fs::read_to_string(root().join(".gcloudignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|line| !line.starts_with('#') || line.starts_with("#!"))
        .collect();
    assert!(rules.contains(&"#!include:.gitignore"), "{rules:?}");
    assert!(
        !rules
            .iter()
            .any(|rule| rule.trim_start_matches('/').starts_with(".git")
                && !rule.starts_with(".gitignore")
                && *rule != ".gcloudignore"),
        "{rules:?}"
    );
}

/// The settings `cargo xtask config --target gke` resolves from `env` alone (the machine's
/// own XTASK_* variables removed): each key with where it came from.
fn gke_settings_from(env: &[(&str, &str)]) -> BTreeMap<String, String> {
    let state = scratch_dir(&format!("pipelines-config-{}", env.len()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(["config", "--target", "gke"])
        .env("XTASK_STATE_DIR", &state);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("XTASK_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied()).env("XTASK_STATE_DIR", &state);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(' ')?;
            Some((key.to_owned(), rest.trim().to_owned()))
        })
        .collect()
}

#[test]
fn the_pipelines_name_the_project_the_gke_steps_need() {
    // Both pipelines give the project through XTASK_PROJECT; with it the settings resolve
    // without asking gcloud's configuration (which a CI machine does not have).
    let build = yaml(&root().join("ci/cloudbuild.yaml"));
    let ship = build["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|step| step["id"] == "ship")
        .unwrap();
    assert!(strings(&ship["env"]).contains(&"XTASK_PROJECT=$PROJECT_ID".to_owned()));
    let workflow = yaml(&root().join("ci/github-actions.yml"));
    assert_eq!(
        workflow["jobs"]["ship"]["env"]["XTASK_PROJECT"].as_str(),
        Some("${{ vars.GCP_PROJECT }}")
    );
    let settings = gke_settings_from(&[("XTASK_PROJECT", "my-proj-1")]);
    assert_eq!(
        settings["project"],
        "my-proj-1                 (environment XTASK_PROJECT)"
    );
    assert!(
        settings["image_repository"].starts_with("us-west1-docker.pkg.dev/my-proj-1/"),
        "{settings:?}"
    );
}

#[test]
fn the_pipelines_do_their_work_through_cargo_xtask() {
    let workflow = yaml(&root().join("ci/github-actions.yml"));
    let runs = |job: &str| -> Vec<String> {
        workflow["jobs"][job]["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|step| step["run"].as_str().map(str::to_owned))
            .filter(|run| run.starts_with("cargo "))
            .collect()
    };
    assert_eq!(runs("test"), ["cargo xtask ci"]);
    assert_eq!(
        runs("kind"),
        [
            "cargo xtask ship --target kube --context kind-score --registry kind-registry:5000",
            "cargo xtask status --target kube --context kind-score",
            "cargo xtask logs --target kube --context kind-score"
        ]
    );
    assert_eq!(
        runs("ship"),
        [
            "cargo xtask tools --target gke",
            "cargo xtask cluster-up",
            "cargo xtask ship --target gke"
        ]
    );
    // Every action pinned to a full commit, and checkout keeping no credentials.
    let mut uses = 0;
    for job in workflow["jobs"].as_mapping().unwrap().values() {
        for step in job["steps"].as_sequence().unwrap() {
            let Some(action) = step["uses"].as_str() else {
                continue;
            };
            uses += 1;
            let pin = action.rsplit_once('@').map_or("", |(_, pin)| pin);
            assert!(
                pin.len() == 40 && pin.bytes().all(|b| b.is_ascii_hexdigit()),
                "{action} is not pinned by commit"
            );
            if action.starts_with("actions/checkout@") {
                assert_eq!(
                    step["with"]["persist-credentials"].as_bool(),
                    Some(false),
                    "{action}"
                );
            }
        }
    }
    assert!(uses >= 7, "{uses} actions");
    let ship = &workflow["jobs"]["ship"];
    assert_eq!(
        ship["permissions"]["id-token"].as_str(),
        Some("write"),
        "keyless auth"
    );
    // The deploy identity is bound to this environment's subject, not to every branch.
    assert_eq!(ship["environment"].as_str(), Some("gke"));
    // The auth action's credentials file must not make the tree, and so the tag, dirty.
    let ignored = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(ignored.lines().any(|line| line == "gha-creds-*.json"));
}
