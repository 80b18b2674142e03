//! The workspace keeps its layers: crates depend only downwards (the arrows of the
//! README's architecture section), the node's modules import only the layers below
//! them, and no module imports another that imports it back — except an actor's
//! directory of handles and the messages those handles carry.
//!
//! The checks read the sources, so a new import across a layer fails here with the
//! file and the line that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Each library crate, where it lives, and the doppel crates it may depend on
/// (directly or through the crates it may depend on).
const CRATES: &[(&str, &str, &[&str])] = &[
    ("doppel-schemas", "schemas", &[]),
    ("doppel-twins", "twins", &["doppel-schemas"]),
    ("doppel-cluster", "cluster", &["doppel-twins"]),
    ("doppel-protocols", "protocols", &["doppel-twins"]),
    (
        "doppel-node",
        "runtime/node",
        &["doppel-cluster", "doppel-protocols", "doppel-twins"],
    ),
    ("doppel-client", "runtime/client", &[]),
    (
        "doppel-cli",
        "runtime/cli",
        &["doppel-node", "doppel-client"],
    ),
];

/// Everything `name` may depend on: its arrows and, through them, theirs.
fn allowed(name: &str) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<&str> = vec![name];
    while let Some(c) = todo.pop() {
        let (_, _, arrows) = CRATES
            .iter()
            .find(|(n, _, _)| *n == c)
            .unwrap_or_else(|| panic!("{c} is not in CRATES"));
        for a in *arrows {
            if out.insert(*a) {
                todo.push(a);
            }
        }
    }
    out
}

fn doppel_dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("read Cargo.toml");
    let doc: toml::Table = text.parse().expect("Cargo.toml parses");
    ["dependencies", "build-dependencies"]
        .iter()
        .filter_map(|s| doc.get(*s).and_then(|d| d.as_table()))
        .flat_map(|t| t.keys().cloned())
        .filter(|k| k.starts_with("doppel-"))
        .collect()
}

#[test]
fn crates_depend_only_downwards() {
    let root = workspace();
    let mut wrong = Vec::new();
    for (name, dir, _) in CRATES {
        let ok = allowed(name);
        for dep in doppel_dependencies(&root.join(dir).join("Cargo.toml")) {
            if !ok.contains(dep.as_str()) {
                wrong.push(format!("{name} depends on {dep}, which is not below it"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A crate's modules, one per file: `["http", "twins_api"]` for `http/twins_api.rs`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).expect("under src").with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                out.insert(parts, p);
            }
        }
    }
    out
}

/// A module's code without its tests and comments, with line numbers.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("read source");
    // Unit tests (a `#[cfg(test)] mod …` at the end of the file) may import anything.
    let text = text.split("#[cfg(test)]\nmod ").next().unwrap_or_default();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `crate::a::b…` / `super::…` path in `line`, as segments.
fn paths_in(line: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for kw in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = line[from..].find(kw) {
            let start = from + i;
            from = start + kw.len();
            if start > 0 && line[..start].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let rest = &line[from..];
            let end = rest
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(rest.len());
            let segs: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            out.push((kw.trim_end_matches(':').to_owned(), segs));
        }
    }
    out
}

/// The module each module imports (by `crate::`/`super::` paths, and a parent's
/// `child::` paths), with the line that does it.
fn imports(src: &Path) -> BTreeMap<Vec<String>, Vec<(Vec<String>, usize)>> {
    let mods = modules(src);
    let resolve = |parts: &[String]| -> Option<Vec<String>> {
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].to_vec())
            .find(|p| mods.contains_key(p))
    };
    let mut out = BTreeMap::new();
    for (m, path) in &mods {
        let mut edges = Vec::new();
        for (n, line) in code_lines(path) {
            for (kw, segs) in paths_in(&line) {
                let mut base = if kw == "crate" {
                    Vec::new()
                } else {
                    m[..m.len().saturating_sub(1)].to_vec()
                };
                let mut segs = segs.as_slice();
                while segs.first().is_some_and(|s| s == "super") {
                    base.pop();
                    segs = &segs[1..];
                }
                base.extend(segs.iter().cloned());
                if let Some(t) = resolve(&base) {
                    if &t != m {
                        edges.push((t, n));
                    }
                }
            }
            // A parent using its child module by name (`routing::route_to_leader`).
            let trimmed = line.trim_start();
            if trimmed.starts_with("mod ")
                || trimmed.starts_with("pub mod ")
                || trimmed.starts_with("pub use ")
                || trimmed.starts_with("pub(crate) mod ")
            {
                continue;
            }
            for child in mods
                .keys()
                .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
            {
                let name = format!("{}::", child[m.len()]);
                let used = line.match_indices(&name).any(|(i, _)| {
                    i == 0
                        || !line[..i]
                            .chars()
                            .next_back()
                            .is_some_and(|c| is_ident(c) || c == ':')
                });
                if used {
                    edges.push((child.clone(), n));
                }
            }
        }
        out.insert(m.clone(), edges);
    }
    out
}

/// The strongly connected components of more than one module (import circles).
fn circles(graph: &BTreeMap<Vec<String>, Vec<(Vec<String>, usize)>>) -> Vec<BTreeSet<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<Vec<String>, Vec<(Vec<String>, usize)>>,
        index: BTreeMap<&'a [String], usize>,
        low: BTreeMap<&'a [String], usize>,
        stack: Vec<&'a [String]>,
        next: usize,
        out: Vec<BTreeSet<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a [String]) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            for (w, _) in &self.graph[v] {
                let w = w.as_slice();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = BTreeSet::new();
                while let Some(w) = self.stack.pop() {
                    comp.insert(w.join("::"));
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_slice()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = workspace();
    // The actor directory holds handles (`ActorRef<…Msg>`) and the messages carry
    // directory entries: an actor and its handle, the one circle allowed.
    let allowed: BTreeSet<String> = ["actors::directory", "actors::messages"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut found = Vec::new();
    let dirs = CRATES
        .iter()
        .map(|(_, d, _)| *d)
        .chain(["lincheck", "tests"]);
    for dir in dirs {
        for circle in circles(&imports(&root.join(dir).join("src"))) {
            if circle != allowed {
                found.push(format!("{dir}: {circle:?}"));
            }
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

/// The node's layers, lowest first (see runtime/node/src/lib.rs).
const NODE_LAYERS: &[&[&str]] = &[
    &["config", "tls", "tokens", "actors", "forward"],
    &["node"],
    &["bootstrap", "dispatch"],
    &["coordination"],
    &["http", "edge"],
    &["start"],
];

fn layer_of(top: &str) -> Option<usize> {
    NODE_LAYERS.iter().position(|l| l.contains(&top))
}

#[test]
fn node_modules_import_only_layers_below() {
    let src = workspace().join("runtime/node/src");
    let mut wrong = Vec::new();
    for (m, edges) in imports(&src) {
        let Some(top) = m.first() else { continue };
        let Some(from) = layer_of(top) else {
            wrong.push(format!("module {top} is in no layer of NODE_LAYERS"));
            continue;
        };
        for (t, line) in edges {
            let Some(to_top) = t.first() else { continue };
            if to_top == top {
                continue;
            }
            match layer_of(to_top) {
                Some(to) if to < from || (to == from && from == 0) => {}
                _ => wrong.push(format!(
                    "runtime/node/src/{}.rs:{line}: {} imports {}, which is not below it",
                    m.join("/"),
                    m.join("::"),
                    t.join("::")
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
