//! The module map stays a map: no top-level module of `src/` reaches back,
//! through any chain of `crate::` paths, to a module that uses it. A cycle
//! (such as `approve` ↔ `gitops` ↔ `store` was) means two modules can only
//! be understood, tested and replaced together.
//!
//! Plain string matching over the source tree, no parser: every `crate::x`
//! and every `x` in a `crate::{x, y::z}` group is an edge to the top-level
//! module `x`. Line comments are skipped, so a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("the source directory is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Top-level modules (`src/x.rs` with its `src/x/`, or `src/x/mod.rs`) and
/// their files; the crate roots `lib.rs` and `main.rs` are not modules.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.is_dir() {
            rust_files(&path, modules.entry(stem.to_owned()).or_default());
        } else if path.extension().is_some_and(|e| e == "rs") && !matches!(stem, "lib" | "main") {
            modules.entry(stem.to_owned()).or_default().push(path);
        }
    }
    modules
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first path segment of each item of a `{a, b::c, d::{e, f}}` group,
/// `rest` starting just after its opening brace.
fn group_heads(rest: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, c) in rest.char_indices() {
        if at_item_start && depth == 0 && !c.is_whitespace() {
            heads.push(ident(&rest[i..]));
            at_item_start = false;
        }
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            _ => {}
        }
    }
    heads
}

/// The top-level modules `text` names through `crate::`.
fn uses(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            match rest.strip_prefix('{') {
                Some(group) => used.extend(group_heads(group).into_iter().map(str::to_owned)),
                None => {
                    used.insert(ident(rest).to_owned());
                }
            }
        }
    }
    used
}

fn graph(src: &Path) -> Graph {
    let modules = modules(src);
    modules
        .iter()
        .map(|(name, files)| {
            let mut deps = BTreeSet::new();
            for file in files {
                let text = std::fs::read_to_string(file).expect("a readable source file");
                deps.extend(uses(&text));
            }
            deps.retain(|d| d != name && modules.contains_key(d));
            (name.clone(), deps)
        })
        .collect()
}

/// One cycle through the graph, as the path of modules that closes it.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

#[test]
fn crate_paths_are_read_from_plain_uses_groups_and_inline_paths() {
    let text = "use crate::store::{A, B};\n\
                use crate::{domain::{X, Y}, gitops, remediate::llm::{self, Z}};\n\
                // a doc link to crate::server is not a use\n\
                fn f() { crate::audit::verify(&[]); }\n";
    let found: Vec<_> = uses(text).into_iter().collect();
    assert_eq!(
        found,
        ["audit", "domain", "gitops", "remediate", "store"],
        "{found:?}"
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut g = Graph::new();
    g.insert("a".into(), ["b".to_owned()].into());
    g.insert("b".into(), ["c".to_owned()].into());
    g.insert("c".into(), ["a".to_owned()].into());
    g.insert("d".into(), ["a".to_owned()].into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    g.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn no_top_level_module_depends_on_itself_through_others() {
    let graph = graph(&source_root());
    // The walk saw the tree: the modules the map is about are all there.
    for expected in ["app", "approve", "domain", "gitops", "pipeline", "store"] {
        assert!(
            graph.contains_key(expected),
            "{expected} missing: {graph:?}"
        );
    }
    assert!(graph["approve"].contains("store"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        let map: Vec<String> = graph
            .iter()
            .map(|(m, deps)| {
                format!(
                    "  {m} -> {}",
                    deps.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!(
            "import cycle {}: move the shared type down (usually into `domain`)\n{}",
            cycle.join(" -> "),
            map.join("\n")
        );
    }
}

/// `Approved` and `Rejected` are the proof that a human decided: they are
/// built (`::claimed`) only by the approval state machine, after the store
/// claimed the decision, whatever module their type lives in.
#[test]
fn only_the_approval_state_machine_builds_a_decision() {
    let src = source_root();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let builders: Vec<_> = files
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file).expect("a readable source file");
            text.contains("Approved::claimed(") || text.contains("Rejected::claimed(")
        })
        .map(|file| {
            file.strip_prefix(&src)
                .unwrap_or(file)
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(builders, ["approve/mod.rs"], "{builders:?}");
}
