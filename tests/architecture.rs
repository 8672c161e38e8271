//! The module graph of each crate, read from its source: no import cycles, no command
//! that imports another command, and no library module that reaches into the
//! commands. See the graph with
//! `cargo test --release --test architecture -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The graph node of a source file: its top-level module, or `commands::NAME` for
/// the files under `commands/`; `None` for the crate root.
fn node_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.first()?.as_str() {
        "lib" | "main" => None,
        "commands" if parts.len() > 1 => Some(format!("commands::{}", parts[1])),
        first => Some(first.to_string()),
    }
}

/// The code of a file without its unit tests and comment lines (doc links are not
/// imports).
fn code_of(text: &str) -> String {
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The paths named after each `prefix` (`crate::`, `super::`), as segment lists;
/// a group `prefix{a, b::c}` gives one path per item.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    for (i, _) in code.match_indices(prefix) {
        if code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item, mut items) = (0, String::new(), vec![]);
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth == 0 && c != ',' && c != '}' {
                    item.push(c);
                }
            }
            items.push(item);
            for it in items {
                let segs: Vec<String> = it
                    .split("::")
                    .map(|s| ident(s.trim()).to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if !segs.is_empty() {
                    out.push(segs);
                }
            }
        } else {
            let first = ident(rest);
            if first.is_empty() {
                continue;
            }
            let mut segs = vec![first.to_string()];
            if let Some(after) = rest[first.len()..].strip_prefix("::") {
                let second = ident(after);
                if !second.is_empty() {
                    segs.push(second.to_string());
                }
            }
            out.push(segs);
        }
    }
    out
}

/// Edges `(from, to)` between the modules of the crate rooted at `root`.
fn graph(
    root: &Path,
) -> (
    BTreeSet<String>,
    BTreeSet<(String, String)>,
    BTreeSet<String>,
) {
    let mut files = vec![];
    rs_files(root, &mut files);
    let mut nodes = BTreeSet::new();
    let mut commands = BTreeSet::new();
    let mut code = vec![];
    for f in &files {
        let Some(n) = node_of(root, f) else { continue };
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if n.starts_with("commands::") && text.contains("pub fn run(") {
            commands.insert(n.clone());
        }
        nodes.insert(n.clone());
        code.push((n, code_of(&text)));
    }
    let mut edges = BTreeSet::new();
    for (n, c) in &code {
        for p in paths_after(c, "crate::") {
            let to = match (p[0].as_str(), p.get(1)) {
                ("commands", Some(cmd)) => format!("commands::{cmd}"),
                (m, _) => m.to_string(),
            };
            if nodes.contains(&to) && &to != n {
                edges.insert((n.clone(), to));
            }
        }
        if n.starts_with("commands::") {
            for p in paths_after(c, "super::") {
                let to = format!("commands::{}", p[0]);
                if nodes.contains(&to) && &to != n {
                    edges.insert((n.clone(), to));
                }
            }
        }
    }
    (nodes, edges, commands)
}

/// One cycle of the graph, as the path that closes it, if there is any.
fn a_cycle(nodes: &BTreeSet<String>, edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    // 0 unvisited, 1 on the current path, 2 done.
    let mut state: BTreeMap<&str, u8> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        path.push(n);
        for &m in next.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|p| *p == m).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(m.to_string());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, next, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    for n in nodes {
        if state.get(n.as_str()) == Some(&0) {
            if let Some(c) = visit(n, &next, &mut state, &mut vec![]) {
                return Some(c);
            }
        }
    }
    None
}

fn crate_root(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

fn print_graph(name: &str, edges: &BTreeSet<(String, String)>) {
    println!("{name}: {} edges", edges.len());
    for (a, b) in edges {
        println!("  {a} -> {b}");
    }
}

#[test]
fn no_crate_has_an_import_cycle() {
    for dir in ["src", "bench/src", "model/src", "kernels/src"] {
        let (nodes, edges, _) = graph(&crate_root(dir));
        print_graph(dir, &edges);
        assert!(nodes.len() > 5, "{dir}: read {} modules", nodes.len());
        if let Some(c) = a_cycle(&nodes, &edges) {
            panic!("{dir}: import cycle {}", c.join(" -> "));
        }
    }
}

#[test]
fn no_command_imports_another_and_no_library_module_imports_a_command() {
    let (_, edges, commands) = graph(&crate_root("src"));
    assert!(
        commands.contains("commands::estimate") && commands.len() >= 10,
        "{commands:?}"
    );
    for (a, b) in &edges {
        assert!(
            !(commands.contains(a) && commands.contains(b)),
            "command {a} imports command {b}: move what they share below the commands"
        );
        if !a.starts_with("commands::") && a != "cli" {
            assert!(
                !b.starts_with("commands::"),
                "library module {a} imports {b}: the commands call the library, not the reverse"
            );
        }
    }
}

#[test]
fn the_reader_sees_grouped_and_nested_imports() {
    let code = "use crate::{fingerprint, harness::{self, X}, Error};\nlet x = crate::commands::estimate::run();\nuse super::regress::Y;";
    let crate_paths: Vec<String> = paths_after(code, "crate::")
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        crate_paths,
        ["fingerprint", "harness", "Error", "commands::estimate"]
    );
    assert_eq!(paths_after(code, "super::")[0][0], "regress");
    // A cycle a -> b -> a is found; a chain is not.
    let nodes: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let e = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert!(a_cycle(&nodes, &[e("a", "b"), e("b", "c")].into_iter().collect()).is_none());
    let c = a_cycle(&nodes, &[e("a", "b"), e("b", "a")].into_iter().collect());
    assert_eq!(c.unwrap().join(" -> "), "a -> b -> a");
}

#[test]
fn stdout_is_written_only_by_the_render_module() {
    let root = crate_root("src");
    let mut files = vec![];
    for dir in ["src", "bench/src", "model/src"] {
        rs_files(&crate_root(dir), &mut files);
    }
    for f in files {
        if f.starts_with(root.join("render")) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for (i, line) in code_of(&text).lines().enumerate() {
            let l = line.replace("eprint", "");
            assert!(
                !(l.contains("print!(") || l.contains("println!(") || l.contains("io::stdout(")),
                "{}:{}: writes stdout itself; build the text and print it with render::stdout",
                f.display(),
                i + 1
            );
        }
    }
}

#[test]
fn no_public_type_name_means_two_things() {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in ["src", "bench/src", "model/src", "kernels/src"] {
        let mut files = vec![];
        rs_files(&crate_root(dir), &mut files);
        for f in files {
            let text =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for line in code_of(&text).lines() {
                let l = line.trim_start();
                let Some(rest) = ["pub struct ", "pub enum ", "pub trait "]
                    .iter()
                    .find_map(|k| l.strip_prefix(k))
                else {
                    continue;
                };
                let name = ident(rest).to_string();
                if let Some(first) = seen.insert(name.clone(), f.clone()) {
                    panic!(
                        "`{name}` is defined in {} and in {}: give one of them the name of what it is",
                        first.display(),
                        f.display()
                    );
                }
            }
        }
    }
    assert!(seen.len() > 100, "read {} type names", seen.len());
}
