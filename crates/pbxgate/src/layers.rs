//! The layering of `crates/pbxgate/src`, checked on every test run: the
//! listeners (`server` and the routes it mounts) use the features, the
//! features use the support modules, never the other way round, and no cycle
//! joins two top-level modules. A new top-level module must be placed in one
//! of the lists below. See `docs/architecture.md`.

/// Listeners and routing: what turns a connection into calls to features.
/// `server` builds every handle; only it may name the server's state.
const LISTENERS: &[&str] = &["server", "api", "admin", "legacy", "websockify", "health"];

/// Features: each owns a handle built once at start-up.
const FEATURES: &[&str] = &[
    "apiconfig",
    "callcontrol",
    "cdrapi",
    "channels",
    "cluster",
    "directory",
    "ingest",
    "live",
    "outbox",
    "pbxcheck",
    "pms",
    "recordings",
    "sessions",
    "settings_audit",
    "system",
];

/// Support: configuration, errors and small shared pieces, below features.
const SUPPORT: &[&str] = &[
    "acl",
    "clock",
    "config",
    "error",
    "files",
    "host",
    "listing",
    "net",
    "permissions",
    "random",
    "recent",
    "tls",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Support,
    Feature,
    Listener,
}

fn layer(module: &str) -> Option<Layer> {
    if LISTENERS.contains(&module) {
        Some(Layer::Listener)
    } else if FEATURES.contains(&module) {
        Some(Layer::Feature)
    } else if SUPPORT.contains(&module) {
        Some(Layer::Support)
    } else {
        None
    }
}

/// The source without comments (line comments and doc comments), so that a
/// path named in prose does not count as a dependency.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // `//` inside a string literal (a URL) is rare enough in paths;
            // cut only where no quote precedes it on the line.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `text` names through `crate::` (and `super::`
/// when `super` is the crate root), including inside `use crate::{a, b}`.
fn referenced(text: &str, super_is_root: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut prefixes = vec!["crate::"];
    if super_is_root {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            // `foo_crate::` is not `crate::`.
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // One level of braces: the first identifier of each item.
                let mut depth = 0usize;
                let mut item_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            item_start = false;
                            if depth == 0 {
                                out.push(ident_at(&group[j..]).to_owned());
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                out.push(ident_at(rest).to_owned());
            }
        }
    }
    out
}

/// Every top-level module and the top-level modules it uses.
fn graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = std::collections::BTreeMap::new();
    let mut stack = vec![src.clone()];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for path in files {
        let rel = path.strip_prefix(&src).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let top = parts[0].trim_end_matches(".rs").to_owned();
        if top == "lib" || top == "main" || top == "layers" {
            continue;
        }
        // `super` is the crate root in `x.rs` and `x/mod.rs`.
        let super_is_root = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod.rs");
        let text = code(&std::fs::read_to_string(&path).unwrap());
        let uses: &mut std::collections::BTreeSet<String> = modules.entry(top.clone()).or_default();
        for m in referenced(&text, super_is_root) {
            if m != top && m != "self" && m != "Error" && m != "Result" {
                uses.insert(m);
            }
        }
    }
    modules
}

#[test]
fn parser_reads_paths_and_groups() {
    let text =
        "use crate::a::B;\nuse crate::{c, d::{E, F}, g};\nlet x = crate::h::y();\nmy_crate::z;";
    assert_eq!(referenced(text, false), ["a", "c", "d", "g", "h"]);
    assert_eq!(referenced("use super::{x, y};", true), ["x", "y"]);
    assert!(referenced("use super::x;", false).is_empty());
    assert_eq!(
        code("let a = 1; // crate::b\n/// crate::c"),
        "let a = 1; \n"
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let g = graph();
    let unplaced: Vec<&String> = g.keys().filter(|m| layer(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "place these modules in src/layers.rs (LISTENERS, FEATURES or SUPPORT): {unplaced:?}"
    );
    for m in LISTENERS.iter().chain(FEATURES).chain(SUPPORT) {
        assert!(
            g.contains_key(*m),
            "src/layers.rs names {m}, which does not exist"
        );
    }
}

#[test]
fn dependencies_point_down() {
    let g = graph();
    let mut wrong = Vec::new();
    for (from, uses) in &g {
        let Some(lf) = layer(from) else { continue };
        for to in uses {
            let Some(lt) = layer(to) else { continue };
            if to == "server" && from != "server" {
                wrong.push(format!("{from} uses server (the process's state)"));
            } else if lt > lf {
                wrong.push(format!("{from} ({lf:?}) uses {to} ({lt:?})"));
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies that point up: {wrong:#?}");
}

#[test]
fn no_cycle_between_top_level_modules() {
    let g = graph();
    // Depth-first search; a back edge is a cycle.
    fn visit<'a>(
        m: &'a str,
        g: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            cycles.push(format!("{} -> {m}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for next in g.get(m).into_iter().flatten() {
            if g.contains_key(next) {
                visit(next, g, path, done, cycles);
            }
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}
