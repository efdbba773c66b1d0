//! The codebase's shape, checked like behaviour: no cycle between the library's modules (at
//! the top level, and among the sibling modules of each parent), and no function longer than
//! the house limit except the declarative tables named here. Reads `pipeline/src` as text:
//! `crate::a::b` and `super::x` paths outside `#[cfg(test)]` code are the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Non-blank, non-comment lines a function may have.
const MAX_FUNCTION_LINES: usize = 120;

/// Functions allowed past the limit, and why.
const LONG_BY_DESIGN: &[(&str, &str)] = &[(
    "catalog/mod.rs::build",
    "the entity catalogue: one declarative table of entities and columns",
)];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline/src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    out.sort();
    out
}

/// The file's code before its test module, with comments, strings and char literals
/// blanked (so braces and `crate::` inside them do not count).
fn code_of(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut prev_cfg_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if prev_cfg_test && trimmed.starts_with("mod ") {
            lines.pop();
            break;
        }
        prev_cfg_test = trimmed.starts_with("#[cfg(test)]");
        lines.push(blank_literals(line));
    }
    lines
}

fn blank_literals(line: &str) -> String {
    let b: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '/' if b.get(i + 1) == Some(&'/') => break,
            '"' => {
                out.push('"');
                i += 1;
                while i < b.len() && b[i] != '"' {
                    i += if b[i] == '\\' { 2 } else { 1 };
                }
                out.push('"');
                i += 1;
            }
            // A char literal ('{', '\n'), not a lifetime ('a).
            '\'' if b.get(i + 2) == Some(&'\'') || (b.get(i + 1) == Some(&'\\')) => {
                let close = (i + 2..b.len()).find(|&j| b[j] == '\'' && b[j - 1] != '\\');
                out.push_str("' '");
                i = close.map_or(b.len(), |j| j + 1);
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `a/b.rs` → ["a", "b"], `a/mod.rs` → ["a"], `lib.rs` → []; the binary's files (main.rs,
/// bin/) are not library modules.
fn module_path(root: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(root).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.first().map(String::as_str) {
        Some("lib") => Some(vec![]),
        Some("main" | "bin") => None,
        _ => Some(parts),
    }
}

fn edges(root: &Path) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let files: BTreeMap<Vec<String>, String> = rust_files(root)
        .into_iter()
        .filter_map(|f| {
            let m = module_path(root, &f)?;
            Some((m, code_of(&std::fs::read_to_string(&f).unwrap()).join("\n")))
        })
        .collect();
    let known: BTreeSet<&Vec<String>> = files.keys().collect();
    let path_re = regex::Regex::new(r"\b(crate|super(?:::super)*)::(\{[^;]*\}|[\w:]+)").unwrap();
    let chain_re = regex::Regex::new(r"\w+(?:::\w+)*").unwrap();
    let mut out = BTreeSet::new();
    for (module, code) in &files {
        for m in path_re.captures_iter(code) {
            let base: Vec<String> = if &m[1] == "crate" {
                vec![]
            } else {
                let up = m[1].matches("super").count();
                module[..module.len().saturating_sub(up)].to_vec()
            };
            let rest = &m[2];
            let chains: Vec<&str> = if rest.starts_with('{') {
                chain_re.find_iter(rest).map(|c| c.as_str()).collect()
            } else {
                vec![rest]
            };
            for chain in chains {
                let mut path = base.clone();
                path.extend(
                    chain
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                // The longest module prefix of the path is what it uses.
                let target = (1..=path.len())
                    .rev()
                    .map(|n| path[..n].to_vec())
                    .find(|p| known.contains(p));
                if let Some(t) = target.filter(|t| t != module) {
                    out.insert((module.clone(), t));
                }
            }
        }
    }
    out
}

/// Pairs of sibling modules that reach each other.
fn cycles(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Vec<String> {
    let parents: BTreeSet<Vec<String>> = edges
        .iter()
        .flat_map(|(a, b)| [a, b])
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    let mut cycles = Vec::new();
    for parent in &parents {
        // The graph among the children of `parent` (each module seen as the child it is in).
        let child = |m: &Vec<String>| -> Option<String> {
            (m.len() > parent.len() && m[..parent.len()] == parent[..])
                .then(|| m[parent.len()].clone())
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            if let (Some(x), Some(y)) = (child(a), child(b))
                && x != y
            {
                graph.entry(x).or_default().insert(y);
            }
        }
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.clone()];
            while let Some(x) = stack.pop() {
                for y in graph.get(&x).into_iter().flatten() {
                    if seen.insert(y.clone()) {
                        stack.push(y.clone());
                    }
                }
            }
            seen
        };
        for (a, targets) in &graph {
            for b in targets {
                if a < b && reach(b).contains(a) {
                    let name = |m: &str| {
                        parent
                            .iter()
                            .chain([&m.to_string()])
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("::")
                    };
                    cycles.push(format!("{} <-> {}", name(a), name(b)));
                }
            }
        }
    }
    cycles
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let cycles = cycles(&edges(&src()));
    assert!(
        cycles.is_empty(),
        "module cycles (each pair reaches the other): {cycles:#?}"
    );
}

/// (file::function, non-blank non-comment lines) of every function over the limit.
fn long_functions(root: &Path) -> Vec<(String, usize)> {
    let fn_re =
        regex::Regex::new(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")
            .unwrap();
    let mut out = Vec::new();
    for file in rust_files(root) {
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let name_of = file.strip_prefix(root).unwrap().display().to_string();
        let mut i = 0;
        while i < code.len() {
            let Some(m) = fn_re.captures(&code[i]) else {
                i += 1;
                continue;
            };
            let (mut depth, mut started, mut lines, mut j) = (0i64, false, 0usize, i);
            while j < code.len() {
                let line = &code[j];
                lines += usize::from(!line.trim().is_empty());
                if !started && line.contains(';') && !line.contains('{') {
                    break; // a declaration without a body
                }
                for c in line.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            started = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if started && depth == 0 {
                    break;
                }
                j += 1;
            }
            if started && lines > MAX_FUNCTION_LINES {
                out.push((format!("{name_of}::{}", &m[6]), lines));
            }
            i = if started { j + 1 } else { i + 1 };
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_the_house_limit() {
    let long: Vec<String> = long_functions(&src())
        .into_iter()
        .filter(|(name, _)| !LONG_BY_DESIGN.iter().any(|(n, _)| n == name))
        .map(|(name, n)| format!("{name}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them along their seams, or name a declarative table in LONG_BY_DESIGN): {long:#?}"
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    // A cycle and a long function, planted in a scratch tree, are found.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(root.join("a/mod.rs"), "pub mod x;\nuse crate::b::thing;\n").unwrap();
    std::fs::write(root.join("a/x.rs"), "use super::super::b;\n").unwrap();
    let body: String = (0..130)
        .map(|i| format!("    let v{i} = '{{';\n"))
        .collect();
    std::fs::write(
        root.join("b.rs"),
        format!("use crate::a::x;\npub fn thing() {{\n{body}}}\n#[cfg(test)]\nmod tests {{\n    use crate::a;\n}}\n"),
    )
    .unwrap();
    let edges = edges(root);
    let has = |a: &[&str], b: &[&str]| {
        edges.contains(&(
            a.iter().map(|s| s.to_string()).collect(),
            b.iter().map(|s| s.to_string()).collect(),
        ))
    };
    assert!(has(&["a"], &["b"]) && has(&["a", "x"], &["b"]) && has(&["b"], &["a", "x"]));
    assert_eq!(cycles(&edges), vec!["a <-> b".to_string()]);
    assert_eq!(long_functions(root), vec![("b.rs::thing".to_string(), 132)]);
}
