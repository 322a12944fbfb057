//! The repository's own rules, checked as tests (after rust-analyzer's `xtask/src/tidy.rs`):
//! imports point down the layers of each crate, and no two modules import each other,
//! directly or round a longer loop.
//!
//! A module's imports are the `crate::…` paths it names (in `use` lines or inline) and
//! the child modules its `use` lines name. `super::` is not used outside `use super::*`
//! in test modules, so every dependency is spelled from the crate root and seen here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's source directory and the layer of each top-level module: a module may use
/// modules of its own layer or below, never above.
struct Layers {
    src: &'static str,
    layers: &'static [(&'static str, u8)],
}

const XTASK: Layers = Layers {
    src: "xtask/src",
    layers: &[
        ("core", 0),
        ("steps", 1),
        ("targets", 2),
        ("tasks", 3),
        ("tidy", 4),
        ("", 4),
    ],
};

const SERVICE: Layers = Layers {
    src: "service/src",
    layers: &[
        ("config", 0),
        ("model", 0),
        ("features", 1),
        ("tensors", 1),
        ("compute", 1),
        ("batching", 1),
        ("http", 1),
        ("metrics", 1),
        ("api", 2),
        ("repository", 3),
        ("app", 3),
        ("fuzzing", 3),
        ("server", 4),
        ("main", 5),
        ("", 5),
    ],
};

/// Every module of a crate (as `a/b` paths; the root is "") and what each imports.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = collect_rs(src);
    // The crate root is lib.rs, or main.rs in a crate without a library (beside a
    // library, main.rs is a crate of its own and reaches the library by its name).
    let has_lib = src.join("lib.rs").exists();
    let module_of = |file: &Path| -> String {
        let relative = file.strip_prefix(src).expect("under src").with_extension("");
        let path = relative.to_string_lossy().into_owned();
        match path.as_str() {
            "lib" => String::new(),
            "main" if !has_lib => String::new(),
            _ => path.strip_suffix("/mod").unwrap_or(&path).to_owned(),
        }
    };
    let modules: BTreeSet<String> = files.iter().map(|file| module_of(file)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        let text = std::fs::read_to_string(file).expect("read a source file");
        let mut imports = BTreeSet::new();
        for path in referenced_paths(&text, &module, &modules) {
            let segments: Vec<&str> = path.split("::").collect();
            // The longest prefix that names a module.
            let target = (0..=segments.len())
                .rev()
                .map(|n| segments[..n].join("/"))
                .find(|candidate| modules.contains(candidate))
                .unwrap_or_default();
            if target != module {
                imports.insert(target);
            }
        }
        graph.insert(module, imports);
    }
    graph
}

fn collect_rs(dir: &Path) -> Vec<PathBuf> {
    crate::core::paths::rust_files(dir).expect("read a source directory")
}

/// The module paths a file names, from the crate root (`core::plan::Plan`), skipping
/// comments.
fn referenced_paths(text: &str, module: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    // Inline and `use` paths that start at the crate root.
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_word = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if !preceded_by_word {
            paths.extend(expand(rest, ""));
        }
    }
    // `use child::…` in a module that declares `child`.
    for line in code.lines() {
        let line = line.trim_start();
        let line = line
            .strip_prefix("pub ")
            .or_else(|| line.strip_prefix("pub(crate) "))
            .unwrap_or(line);
        let Some(used) = line.strip_prefix("use ") else {
            continue;
        };
        let first: String = used
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let child = if module.is_empty() {
            first.clone()
        } else {
            format!("{module}/{first}")
        };
        if modules.contains(&child) {
            let prefix = if module.is_empty() {
                String::new()
            } else {
                format!("{}::", module.replace('/', "::"))
            };
            paths.extend(expand(used, &prefix));
        }
    }
    paths
}

/// `a::b::{c, d::e}` (as it follows `crate::`) → `a::b::c`, `a::b::d::e`.
fn expand(text: &str, prefix: &str) -> Vec<String> {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let after = &text[head.len()..];
    let head = format!("{prefix}{head}");
    if !after.starts_with('{') {
        return vec![head.trim_end_matches(':').to_owned()];
    }
    // A group: split its items at top-level commas.
    let mut depth = 0;
    let mut items = Vec::new();
    let mut start = 1;
    for (i, c) in after.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(&after[start..i]);
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(&after[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty() && *item != "self")
        .flat_map(|item| expand(item, &head))
        .collect()
}

fn layer(layers: &Layers, module: &str) -> u8 {
    let top = module.split('/').next().unwrap_or("");
    layers
        .layers
        .iter()
        .find(|(name, _)| *name == top)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| {
            panic!(
                "{}: module {module:?} has no layer: add it to tidy.rs",
                layers.src
            )
        })
}

/// Every import from a higher layer, as `module -> import`.
fn upward_imports(layers: &Layers, graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (module, imports) in graph {
        for import in imports {
            if layer(layers, import) > layer(layers, module) {
                found.push(format!("{module} imports {import}, a higher layer"));
            }
        }
    }
    found
}

/// One import cycle, as the modules round it, if there is any.
fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(module) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|m| m == module).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(module.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(module.to_owned(), Mark::Open);
        path.push(module.to_owned());
        for import in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(import, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(module.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut marks, &mut Vec::new()))
}

/// The path prefix the rule is about, spelled so this file does not break it.
const SUPER: &str = concat!("super", "::");

/// `super::` other than `use super::*;` (which test modules use for the code they test).
fn super_paths(src: &Path) -> Vec<String> {
    let files = collect_rs(src);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (number, line) in text.lines().enumerate() {
            let code = line.trim();
            let glob = format!("use {SUPER}*;");
            if code.contains(SUPER) && code != glob && !code.starts_with("//") {
                found.push(format!("{}:{}: {code}", file.display(), number + 1));
            }
        }
    }
    found
}

fn check(layers: &Layers) -> Vec<String> {
    let src = crate::core::paths::project_root().join(layers.src);
    let graph = import_graph(&src);
    assert!(
        graph.len() > 10,
        "{}: found only {} modules",
        layers.src,
        graph.len()
    );
    let mut problems = upward_imports(layers, &graph);
    if let Some(cycle) = a_cycle(&graph) {
        problems.push(format!("an import cycle: {}", cycle.join(" -> ")));
    }
    let spelled = |line| format!("{SUPER} path (spell it from crate::): {line}");
    problems.extend(super_paths(&src).into_iter().map(spelled));
    problems
}

#[test]
fn the_xtask_imports_point_down_and_never_round_a_cycle() {
    let problems = check(&XTASK);
    assert!(problems.is_empty(), "xtask/src:\n  {}", problems.join("\n  "));
}

#[test]
fn the_service_imports_point_down_and_never_round_a_cycle() {
    let problems = check(&SERVICE);
    assert!(problems.is_empty(), "service/src:\n  {}", problems.join("\n  "));
}

#[test]
fn the_checks_see_a_planted_cycle_and_an_upward_import() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("core/plan", vec!["core/process"]),
        ("core/process", vec!["steps/smoke"]),
        ("steps/smoke", vec!["core/plan"]),
    ]
    .into_iter()
    .map(|(module, imports)| {
        (
            module.to_owned(),
            imports.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(
        upward_imports(&XTASK, &graph),
        ["core/process imports steps/smoke, a higher layer"]
    );
    let cycle = a_cycle(&graph).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
}

#[test]
fn use_groups_expand_to_each_path() {
    assert_eq!(
        expand("core::{git, plan::{Plan, query}, self};", ""),
        ["core::git", "core::plan::Plan", "core::plan::query"]
    );
    let modules: BTreeSet<String> = ["", "a", "a/b"].into_iter().map(str::to_owned).collect();
    assert_eq!(
        referenced_paths(
            "// crate::x is a comment\npub use b::Thing;\nlet x = crate::a::f();",
            "a",
            &modules
        ),
        ["a::f", "a::b::Thing"]
    );
}

/// The programs a test may start only when marked `#[ignore = "needs …"]`: they are
/// missing on a laptop, and `cargo xtask ci` runs ignored tests.
const TOOLS: [&str; 5] = [
    "kubectl",
    "gcloud",
    "docker",
    "gke-gcloud-auth-plugin",
    "docker-registry",
];

/// Every function of `text` (a test crate's files, joined): its name, attributes and body.
fn functions(text: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("fn ") {
        let before = &rest[..at];
        let preceded_by_word = before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = &rest[at + 3..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        rest = after;
        if preceded_by_word || name.is_empty() {
            continue;
        }
        // The attributes: the lines just above the function's own line.
        let above = &before[..before.rfind('\n').unwrap_or(0)];
        let attributes: Vec<&str> = above
            .lines()
            .rev()
            .take_while(|line| {
                let line = line.trim();
                line.starts_with("#[") || line.starts_with("///")
            })
            .collect();
        let Some(open) = after.find('{') else { continue };
        let mut depth = 0usize;
        let mut end = open;
        for (offset, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push((name, attributes.join("\n"), after[open..=end].to_owned()));
    }
    found
}

/// The tests of a test crate (its files joined in `text`) that start one of the tools —
/// directly (`Command::new("kubectl")`), through a constant naming one, or through a helper
/// of the crate that does — without being marked ignored with what they need.
fn unmarked_tool_tests(text: &str) -> Vec<String> {
    let functions = functions(text);
    // Constants that name a tool (`const KUBECTL: &str = "kubectl";`) start it too.
    let constants: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().strip_prefix("const ")?.split_once(':')?;
            let value = value
                .split_once('=')?
                .1
                .trim()
                .trim_end_matches(';')
                .trim_matches('"');
            TOOLS.contains(&value).then(|| name.trim().to_owned())
        })
        .collect();
    let starts_a_tool = |body: &str| {
        TOOLS.iter().any(|tool| {
            body.contains(&format!("Command::new(\"{tool}\")"))
                || body.contains(&format!("\"{tool}\".into()"))
                || body.contains(&format!("command(\"{tool}\""))
        }) || constants
            .iter()
            .any(|name| body.contains(&format!("Command::new({name})")))
    };
    // Helpers that start a tool, and the helpers that call them, to a fixed point.
    let mut helpers: BTreeSet<String> = functions
        .iter()
        .filter(|(_, attributes, body)| !attributes.contains("test") && starts_a_tool(body))
        .map(|(name, _, _)| name.clone())
        .collect();
    loop {
        let before = helpers.len();
        for (name, attributes, body) in &functions {
            if !attributes.contains("test") && helpers.iter().any(|helper| calls(body, helper)) {
                helpers.insert(name.clone());
            }
        }
        if helpers.len() == before {
            break;
        }
    }
    functions
        .iter()
        .filter(|(_, attributes, _)| attributes.contains("#[test]") || attributes.contains("::test"))
        .filter(|(_, attributes, _)| !attributes.contains("#[ignore = \"needs "))
        .filter(|(_, _, body)| starts_a_tool(body) || helpers.iter().any(|helper| calls(body, helper)))
        .map(|(name, _, _)| name.clone())
        .collect()
}

/// Whether `body` calls the function `name` (as `name(` or `.name(`).
fn calls(body: &str, name: &str) -> bool {
    let call = format!("{name}(");
    body.match_indices(&call).any(|(at, _)| {
        !body[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn test_crate_text(dir: &str) -> String {
    let files = collect_rs(&crate::core::paths::project_root().join(dir));
    files
        .iter()
        .map(|file| std::fs::read_to_string(file).expect("read a test file"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn tests_that_start_kubectl_gcloud_or_docker_say_so() {
    for dir in ["xtask/tests/it", "fake-kube/tests/it", "service/tests/it"] {
        let unmarked = unmarked_tool_tests(&test_crate_text(dir));
        assert!(
            unmarked.is_empty(),
            "{dir}: these tests start kubectl, gcloud or docker without #[ignore = \"needs …\"] (a laptop without them fails them):\n  {}",
            unmarked.join("\n  ")
        );
    }
}

#[test]
fn the_tool_rule_sees_a_test_that_starts_one_through_a_helper() {
    let planted = r#"
fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl").args(args).output().unwrap()
}

fn apply(manifest: &str) {
    kubectl(&["apply", "-f", manifest]);
}

#[test]
fn unmarked() {
    apply("x.yaml");
}

#[test]
#[ignore = "needs kubectl"]
fn marked() {
    apply("x.yaml");
}

#[test]
fn unrelated() {
    assert_eq!(1 + 1, 2);
}
"#;
    assert_eq!(unmarked_tool_tests(planted), ["unmarked"]);
}
