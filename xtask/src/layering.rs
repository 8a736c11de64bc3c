//! The kernel crate's import graph, file by file (docs/architecture.md, "Kernel"): an edge
//! from a file of `kernel/src` to each file its `crate::`, `super::`, `self::` and child-module
//! paths name, in `use` trees and inline. The framework and the pure crates are other
//! crates, so an upward import there is a compile error; inside the kernel crate only this
//! check holds the line: the one import circle allowed is the `task`/`object` pair.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Files (relative to the crate's `src`, `/`-separated) and the files each one imports.
#[derive(Debug, Default)]
pub struct ImportGraph {
    pub edges: BTreeMap<String, BTreeSet<String>>,
}

/// Top-level modules whose files may import each other in a circle.
const CIRCLE_ALLOWED: [&str; 2] = ["task", "object"];

impl ImportGraph {
    /// Reads every `.rs` file under `src` (a crate root holding `main.rs` or `lib.rs`).
    pub fn of_crate(src: &Path) -> std::io::Result<ImportGraph> {
        let mut files = BTreeMap::new();
        collect(src, src, &mut files)?;
        let mut graph = ImportGraph::default();
        for (file, text) in &files {
            let module = module_of(file);
            let mut targets = BTreeSet::new();
            let children = children_of(&files, &module);
            for path in paths_in(&strip_comments(text), &children) {
                if let Some(target) = resolve(&files, &module, &path) {
                    if &target != file {
                        targets.insert(target);
                    }
                }
            }
            graph.edges.insert(file.clone(), targets);
        }
        Ok(graph)
    }

    /// The strongly connected components of more than one file (the import circles).
    pub fn circles(&self) -> Vec<Vec<String>> {
        let names: Vec<&String> = self.edges.keys().collect();
        let index: BTreeMap<&String, usize> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let succ: Vec<Vec<usize>> = names
            .iter()
            .map(|n| self.edges[*n].iter().filter_map(|t| index.get(t).copied()).collect())
            .collect();
        tarjan(&succ)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut files: Vec<String> = c.into_iter().map(|i| names[i].clone()).collect();
                files.sort();
                files
            })
            .collect()
    }

    /// Files in an import circle outside the allowed `task`/`object` pair.
    pub fn circle_violations(&self) -> Vec<String> {
        self.circles()
            .into_iter()
            .flatten()
            .filter(|f| {
                !CIRCLE_ALLOWED
                    .iter()
                    .any(|m| f.starts_with(&format!("{m}/")) || *f == format!("{m}.rs"))
            })
            .collect()
    }
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel =
                path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            files.insert(rel, std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

/// The names of `module`'s child modules that have a file.
fn children_of(files: &BTreeMap<String, String>, module: &[String]) -> Vec<String> {
    let dir = module.iter().map(|s| format!("{s}/")).collect::<String>();
    let mut names: Vec<String> = files
        .keys()
        .filter_map(|f| f.strip_prefix(&dir))
        .filter_map(|rest| rest.strip_suffix("/mod.rs").or_else(|| rest.strip_suffix(".rs")))
        .filter(|name| !name.contains('/') && !["mod", "main", "lib"].contains(name))
        .map(str::to_owned)
        .collect();
    names.dedup();
    names
}

/// `task/sched.rs` is module `task::sched`; `task/mod.rs` is `task`; `main.rs` the root.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut segments: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "main" | "lib")) {
        segments.pop();
    }
    segments
}

/// The file that holds module `segments`, if the crate has it.
fn file_of(files: &BTreeMap<String, String>, segments: &[String]) -> Option<String> {
    if segments.is_empty() {
        return ["main.rs", "lib.rs"]
            .into_iter()
            .find(|f| files.contains_key(*f))
            .map(str::to_owned);
    }
    let base = segments.join("/");
    [format!("{base}.rs"), format!("{base}/mod.rs")].into_iter().find(|f| files.contains_key(f))
}

/// The file a path used in `module` names: the deepest module along it that has a file.
/// Paths into other crates resolve to nothing.
fn resolve(files: &BTreeMap<String, String>, module: &[String], path: &[String]) -> Option<String> {
    let mut absolute: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => module.to_vec(),
        Some("super") => module.to_vec(),
        Some(first) => {
            let mut child = module.to_vec();
            child.push(first.to_owned());
            file_of(files, &child)?;
            module.to_vec()
        }
        None => return None,
    };
    let mut rest = path;
    if matches!(path[0].as_str(), "crate" | "self") {
        rest = &path[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        absolute.pop()?;
        rest = &rest[1..];
    }
    absolute.extend(rest.iter().filter(|s| *s != "self" && *s != "*").cloned());
    (0..=absolute.len()).rev().find_map(|k| file_of(files, &absolute[..k]))
}

/// Source without comments (doc links are not imports) and without string literals.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if !escaped && c == '"' {
                        break;
                    }
                    escaped = !escaped && c == '\\';
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path the source names that may lead into the crate: each `use` tree expanded, and
/// each inline `crate::`/`super::`/`self::` path.
fn paths_in(text: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for statement in text.split(';') {
        let mut code = statement;
        if let Some(at) = find_word(statement, "use") {
            let tree = without_renames(&statement[at + 3..]);
            if tree.chars().all(|c| is_ident(c) || "{}:,*".contains(c)) {
                expand(&tree, &mut Vec::new(), &mut paths);
                code = &statement[..at];
            }
        }
        inline_paths(code, children, &mut paths);
    }
    paths
}

/// The `crate::`, `super::`, `self::` and child-module (`child::`) paths written in code (not
/// in `use` trees).
fn inline_paths(text: &str, children: &[String], paths: &mut Vec<Vec<String>>) {
    let bytes = text.as_bytes();
    let roots =
        ["crate", "super", "self"].into_iter().map(str::to_owned).chain(children.iter().cloned());
    for root in roots.map(|r| r + "::") {
        let mut from = 0;
        while let Some(found) = text[from..].find(&root) {
            let start = from + found;
            from = start + root.len();
            if start > 0 && is_ident(bytes[start - 1] as char) {
                continue;
            }
            let end = text[start..]
                .char_indices()
                .find(|&(_, c)| !(is_ident(c) || c == ':'))
                .map_or(text.len(), |(i, _)| start + i);
            paths.push(
                text[start..end].split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            );
        }
    }
}

/// A `use` tree without whitespace and without its `as` renames (`a::b as c` is `a::b`).
fn without_renames(tree: &str) -> String {
    let mut out = String::new();
    let mut tokens = tree.split_whitespace();
    while let Some(token) = tokens.next() {
        if token == "as" {
            out.extend(tokens.next().unwrap_or("").chars().skip_while(|&c| is_ident(c)));
        } else {
            out.push_str(token);
        }
    }
    out
}

/// The last `word` in `s` standing as a whole word followed by whitespace.
fn find_word(s: &str, word: &str) -> Option<usize> {
    s.rmatch_indices(word).map(|(i, _)| i).find(|&i| {
        let before = s[..i].chars().next_back();
        let after = s[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && after.is_some_and(char::is_whitespace)
    })
}

/// Expands a `use` tree without whitespace (`a::{b,c::d}`), each leaf's path after `prefix`.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let depth = prefix.len();
    let mut rest = tree;
    loop {
        if let Some(inner) = rest.strip_prefix('{') {
            let inner = inner.strip_suffix('}').unwrap_or(inner);
            for part in split_top(inner) {
                expand(part, prefix, out);
            }
            break;
        }
        match rest.find("::") {
            Some(i) => {
                prefix.push(rest[..i].to_owned());
                rest = &rest[i + 2..];
            }
            None => {
                if !rest.is_empty() {
                    prefix.push(rest.to_owned());
                }
                out.push(prefix.clone());
                break;
            }
        }
    }
    prefix.truncate(depth);
}

/// Splits a brace group's content at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// Tarjan's strongly connected components.
fn tarjan(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        succ: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.succ[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let n = succ.len();
    let mut s = State {
        succ,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_of(files: &[(&str, &str)]) -> ImportGraph {
        let dir = std::env::temp_dir().join(format!(
            "keel-layering-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let graph = ImportGraph::of_crate(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        graph
    }

    #[test]
    fn the_kernel_crates_only_import_circle_is_task_and_object() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src");
        let graph = ImportGraph::of_crate(&src).unwrap();
        assert!(graph.edges.len() > 30, "kernel/src read: {} files", graph.edges.len());
        assert!(graph.edges["init/programs.rs"].contains("task/loader.rs"), "paths resolve");
        let violations = graph.circle_violations();
        assert!(
            violations.is_empty(),
            "files in an import circle beyond task/object: {violations:?}\ncircles: {:?}",
            graph.circles()
        );
    }

    #[test]
    fn no_kernel_module_imports_one_above_it() {
        // docs/architecture.md, "Kernel": object and task (one level), init, scenarios, main.rs.
        let level = |file: &str| match file.split('/').next() {
            Some("object" | "task") => 1,
            Some("init") => 2,
            Some("scenarios") => 3,
            _ => 4,
        };
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src");
        let graph = ImportGraph::of_crate(&src).unwrap();
        let upward: Vec<String> = graph
            .edges
            .iter()
            .flat_map(|(from, to)| to.iter().map(move |to| (from, to)))
            .filter(|(from, to)| level(to) > level(from))
            .map(|(from, to)| format!("{from} -> {to}"))
            .collect();
        assert!(
            upward.is_empty(),
            "imports from a lower kernel module to a higher one: {upward:?}"
        );
    }

    #[test]
    fn no_two_kernel_or_framework_files_share_a_name() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for src in ["framework/src", "kernel/src"] {
            let mut files = BTreeMap::new();
            collect(&root.join(src), &root.join(src), &mut files).unwrap();
            for file in files.keys().filter(|f| !f.ends_with("mod.rs")) {
                let name = file.rsplit('/').next().unwrap().to_owned();
                let here = format!("{src}/{file}");
                if let Some(other) = seen.insert(name, here.clone()) {
                    panic!("{here} and {other} share a name: name files by where they live");
                }
            }
        }
        assert!(seen.len() > 80, "both crates read: {} files", seen.len());
    }

    #[test]
    fn use_trees_super_paths_and_inline_paths_resolve() {
        let graph = graph_of(&[
            ("main.rs", "mod a; mod b;\nfn main() { crate::b::run(); }"),
            ("a/mod.rs", "pub mod x; pub mod y;\nuse x::X;"),
            ("a/x.rs", "use super::{y::{self, Y}, super::b};\n// crate::b::nothing\nconst S: &str = \"crate::b\";"),
            ("a/y.rs", "pub struct Y; fn f() { let _ = fw::crate_thing; }"),
            ("b.rs", "pub fn run() {}"),
        ]);
        let targets = |f: &str| graph.edges[f].iter().cloned().collect::<Vec<_>>();
        assert_eq!(targets("main.rs"), ["b.rs"]);
        assert_eq!(targets("a/mod.rs"), ["a/x.rs"]);
        assert_eq!(targets("a/x.rs"), ["a/y.rs", "b.rs"]);
        assert!(targets("a/y.rs").is_empty());
        assert!(graph.circles().is_empty());
    }

    #[test]
    fn a_circle_beyond_task_and_object_is_reported() {
        let graph = graph_of(&[
            ("main.rs", "mod init; mod object; mod task;"),
            ("task/mod.rs", "use crate::object::Cap;\nfn f() { crate::init::policy(); }"),
            ("object/mod.rs", "use crate::task::{Thread};"),
            ("init/mod.rs", "use crate::task;\npub fn policy() { task::spawn() }"),
        ]);
        assert_eq!(graph.circles(), [["init/mod.rs", "object/mod.rs", "task/mod.rs"]]);
        assert_eq!(graph.circle_violations(), ["init/mod.rs"]);
        let allowed = graph_of(&[
            ("main.rs", "mod object; mod task;"),
            ("task/mod.rs", "use crate::object::Cap;"),
            ("object/mod.rs", "use crate::task::Thread;"),
        ]);
        assert_eq!(allowed.circles().len(), 1);
        assert!(allowed.circle_violations().is_empty());
    }
}
