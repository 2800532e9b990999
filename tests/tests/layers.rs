//! The layers hold: no crate's modules import each other in a circle, and each layer
//! links only the layers below it (README, "Layout"). Both are read from the sources
//! and from `cargo metadata`, so a change that breaks them fails here, not in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
    found
}

/// The identifiers `crate::name` names in `code`, `crate::{a, b::c}` groups included.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            named.extend(group.split(',').map(ident));
        } else {
            named.insert(ident(rest));
        }
    }
    named.retain(|name| !name.is_empty());
    named
}

/// What each top-level module of the crate at `src` imports from the others; test
/// modules and comments are left out.
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in rust_files(src) {
        let relative = path.strip_prefix(src).expect("under src");
        let first = relative
            .components()
            .next()
            .expect("a file")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let module = match first.as_str() {
            "lib" | "main" => continue,
            _ => first,
        };
        let text = std::fs::read_to_string(&path).expect("a source file");
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let imports = crate_paths(&code);
        graph.entry(module.clone()).or_default().extend(imports);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (module, imports) in &mut graph {
        imports.retain(|name| name != module && modules.contains(name));
    }
    graph
}

/// The modules on some import cycle, each with its imports on that cycle.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // A module is on a cycle when it can reach itself.
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = graph[from].iter().map(String::as_str).collect();
        while let Some(module) = todo.pop() {
            if seen.insert(module.to_owned()) {
                todo.extend(graph[module].iter().map(String::as_str));
            }
        }
        seen
    };
    graph
        .keys()
        .filter(|module| reaches(module).contains(*module))
        .map(|module| {
            let on_cycle: Vec<&str> = graph[module]
                .iter()
                .filter(|dep| reaches(dep).contains(module))
                .map(String::as_str)
                .collect();
            format!("{module} -> {}", on_cycle.join(", "))
        })
        .collect()
}

fn crate_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut sources: Vec<PathBuf> = ["shared", "functions"]
        .iter()
        .flat_map(|group| std::fs::read_dir(root.join(group)).expect("a crate group"))
        .map(|entry| entry.expect("a crate").path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    sources.push(root.join("cli/src"));
    sources.sort();
    sources
}

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_circle() {
    let sources = crate_sources();
    assert!(sources.len() >= 8, "found only {sources:?}");
    let mut found = Vec::new();
    for src in sources {
        let graph = module_imports(&src);
        let circles = cycles(&graph);
        if !circles.is_empty() {
            found.push(format!("{}:\n  {}", src.display(), circles.join("\n  ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_check_sees_a_circle_of_three_modules() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(module, deps)| {
        (
            module.to_owned(),
            deps.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(cycles(&graph), vec!["a -> b", "b -> c", "c -> a"]);
    assert_eq!(
        crate_paths("use crate::{a::X, b};\nlet y = crate::c::f();"),
        ["a", "b", "c"].map(str::to_owned).into()
    );
}

/// The platform this machine builds for, so `cargo metadata` resolves (and needs at
/// hand) only its dependencies.
fn host_triple() -> String {
    let output = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc names its host")
        .to_owned()
}

/// Every package each workspace crate links, directly or not, from `cargo metadata`.
fn linked_packages() -> BTreeMap<String, BTreeSet<String>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let name_of: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            (
                package["id"].as_str().expect("an id"),
                package["name"].as_str().expect("a name"),
            )
        })
        .collect();
    // Normal dependencies only: what a crate's tests and build scripts use is not linked.
    let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().expect("a resolve") {
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|dep| {
                dep["dep_kinds"]
                    .as_array()
                    .expect("dep kinds")
                    .iter()
                    .any(|kind| kind["kind"].is_null())
            })
            .map(|dep| name_of[dep["pkg"].as_str().expect("a package id")])
            .collect();
        direct.insert(name_of[node["id"].as_str().expect("an id")], deps);
    }
    let members = metadata["workspace_members"].as_array().expect("members");
    members
        .iter()
        .map(|id| {
            let name = name_of[id.as_str().expect("an id")];
            let mut seen = BTreeSet::new();
            let mut todo = direct[name].clone();
            while let Some(package) = todo.pop() {
                if seen.insert(package.to_owned()) {
                    todo.extend(direct[package].iter().copied());
                }
            }
            (name.to_owned(), seen)
        })
        .collect()
}

#[test]
fn each_layer_links_only_the_layers_below_it() {
    let linked = linked_packages();
    let refuse = |krate: &str, forbidden: &[&str]| -> Vec<String> {
        linked[krate]
            .iter()
            .filter(|package| {
                forbidden
                    .iter()
                    .any(|prefix| package.as_str() == *prefix || package.starts_with(prefix))
            })
            .map(|package| format!("{krate} links {package}"))
            .collect()
    };
    let http = ["axum", "hyper", "tower", "http-body", "lambda_"];
    let aws = ["aws-sdk-", "aws-config", "aws-smithy-", "redb"];
    let edge_and_functions = [
        "sextant-edge",
        "sextant-api",
        "sextant-ingest",
        "sextant-cli",
    ];
    let mut broken = Vec::new();
    broken.extend(refuse(
        "sextant-storage",
        &[&http[..], &aws[..], &["sextant-"]].concat(),
    ));
    broken.extend(refuse(
        "sextant-domain",
        &[
            &http[..],
            &aws[..],
            &edge_and_functions[..],
            &["sextant-storage-"],
        ]
        .concat(),
    ));
    broken.extend(refuse(
        "sextant-edge",
        &[
            &aws[..],
            &["sextant-storage-", "sextant-api", "sextant-ingest"],
        ]
        .concat(),
    ));
    // The metering function is no HTTP service: it links the domain and the AWS
    // adapters, and nothing of the edge. (It is an HTTP client, for the report
    // webhook: reqwest brings tower-http's client layers, never a server.)
    broken.extend(refuse(
        "sextant-metering",
        &["axum", "governor", "sextant-edge", "redb"],
    ));
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(linked["sextant-domain"].contains("sextant-storage"));
    assert!(linked["sextant-api"].contains("sextant-edge"));
}
