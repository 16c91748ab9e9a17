//! The files of `src/proxy/` import each other without a cycle: each file
//! can be read after the files it uses, and a background task or a leaf
//! (status, metrics, routing) never reaches back into the handlers' hub.
//!
//! The check reads the source as text: every `super::x` and
//! `crate::proxy::x` path outside comments and `#[cfg(test)]` blocks is an
//! edge to the sibling file `x.rs` (through `mod.rs`'s re-exports when `x`
//! is one of them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The text of `source` without comments and `#[cfg(test)]` items.
fn code_only(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            skip_item(&mut lines);
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Skips the item after an attribute: up to its `;` or its closing brace.
fn skip_item<'a>(lines: &mut impl Iterator<Item = &'a str>) {
    let mut depth = 0i64;
    for line in lines {
        depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
        let t = line.trim_end();
        if depth <= 0 && (t.ends_with('}') || t.ends_with(';')) {
            return;
        }
    }
}

/// The names a path prefix (`super::`, `crate::proxy::`) reaches in `code`:
/// `prefix x::...`, `prefix x` and every top-level name of `prefix {a, b::c}`.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(std::mem::take(&mut item));
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            names.push(item);
        } else {
            names.push(rest.to_string());
        }
    }
    names
        .iter()
        .map(|n| {
            n.trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .filter(|n: &String| !n.is_empty())
        .collect()
}

/// File stem -> the sibling files it uses.
fn import_graph(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            sources.insert(stem, code_only(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    let root = sources.remove("mod").unwrap_or_default();
    // `pub use file::Name` in mod.rs: `super::Name` is an edge to `file`.
    let mut reexports = BTreeMap::new();
    for line in root.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub use ") {
            let (file, items) = rest.split_once("::").unwrap_or((rest, ""));
            for name in names_after(&format!("x::{items}"), "x::") {
                reexports.insert(name, file.to_string());
            }
        }
    }
    let mut graph = BTreeMap::new();
    for (stem, code) in &sources {
        let mut uses = BTreeSet::new();
        for prefix in ["super::", "crate::proxy::"] {
            for name in names_after(code, prefix) {
                let file = reexports.get(&name).unwrap_or(&name);
                if file != stem && sources.contains_key(file) {
                    uses.insert(file.clone());
                }
            }
        }
        graph.insert(stem.clone(), uses);
    }
    graph
}

/// A cycle of the graph as a path `a -> b -> a`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_files_of_the_proxy_import_each_other_without_a_cycle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy");
    let graph = import_graph(&dir);
    assert!(graph.len() > 10, "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}\n{graph:#?}", cycle.join(" -> "));
    }
    // The leaves stay leaves.
    for leaf in ["status", "metrics", "routing", "breaker"] {
        let uses = &graph[leaf];
        assert!(uses.iter().all(|u| u == "status"), "{leaf} uses {uses:?}");
    }
}

#[test]
fn the_check_sees_grouped_nested_and_reexported_paths() {
    let code = code_only(
        "use super::{a, b::{C, D}};\n// use super::commented;\nfn f() { super::e::g(); crate::proxy::h::I; }\n#[cfg(test)]\nmod tests {\n    use super::tested;\n}\n",
    );
    let mut names = names_after(&code, "super::");
    names.extend(names_after(&code, "crate::proxy::"));
    names.sort();
    assert_eq!(names, ["a", "b", "e", "h"]);
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}
