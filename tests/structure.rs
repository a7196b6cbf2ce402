//! The module structure of `src/`: no module circles. Module A depends on
//! module B when A's code (outside its `#[cfg(test)] mod tests`) names a
//! path of B (`crate::b::…`, `super::b::…`, `use super::{b, …}`); a child
//! naming its parent (`super::X` of an item defined in the parent) is not
//! counted, a parent naming its child is. A circle is a set of modules that
//! depend on each other in a ring; a new one fails this test with its members.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `a::b` for src/a/b.rs and src/a/b/mod.rs; `crate` for src/lib.rs.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    if parts.is_empty() {
        "crate".into()
    } else {
        parts.join("::")
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit-test module.
fn code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests").map_or(text, |i| &text[..i])
}

/// Every `crate::…` / `super::…` path in `code`, brace groups expanded one
/// level (`use super::{a, b::c}` gives `super::a` and `super::b`).
fn paths(code: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (kind, is_crate) in [("crate::", true), ("super::", false)] {
        let mut from = 0;
        while let Some(i) = code[from..].find(kind) {
            let start = from + i;
            from = start + kind.len();
            // A whole word: not `foo_crate::`.
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let rest = &code[from..];
            let mut segments = Vec::new();
            let mut tail = rest;
            loop {
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if end == 0 {
                    break;
                }
                segments.push(tail[..end].to_string());
                tail = &tail[end..];
                match tail.strip_prefix("::") {
                    Some(t) => tail = t,
                    None => break,
                }
            }
            if let Some(group) = tail.strip_prefix('{') {
                let mut depth = 0;
                let mut item = String::new();
                let mut items = Vec::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            items.push(std::mem::take(&mut item));
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                items.push(item);
                for item in items {
                    let first: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !first.is_empty() {
                        let mut p = segments.clone();
                        p.push(first);
                        out.push((is_crate, p));
                    }
                }
            } else if !segments.is_empty() {
                out.push((is_crate, segments));
            }
        }
    }
    out
}

/// Module → the modules it depends on.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut texts = BTreeMap::new();
    for file in files {
        if file.starts_with(src.join("bin")) {
            continue;
        }
        texts.insert(module_of(src, &file), std::fs::read_to_string(&file).unwrap());
    }
    let known: BTreeSet<String> = texts.keys().cloned().collect();
    let resolve = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("::"))
            .find(|candidate| known.contains(candidate))
    };
    let mut graph = BTreeMap::new();
    for (module, text) in &texts {
        let parent: Vec<String> = if module == "crate" {
            Vec::new()
        } else {
            let mut p: Vec<String> = module.split("::").map(String::from).collect();
            p.pop();
            p
        };
        let mut deps = BTreeSet::new();
        for (is_crate, path) in paths(code(text)) {
            let full: Vec<String> = if is_crate {
                path
            } else {
                parent.iter().cloned().chain(path).collect()
            };
            if let Some(dep) = resolve(&full)
                && dep != *module
                && !module.starts_with(&format!("{dep}::"))
            {
                deps.insert(dep);
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn src_has_no_module_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 20, "the modules of src/ are found: {:?}", graph.keys());
    assert!(
        graph["controller"].contains("reconcile") && graph["reconcile::fanout"].contains("reconcile::build"),
        "dependencies are read: {graph:?}"
    );
    let circles = circles(&graph);
    assert!(circles.is_empty(), "module circles in src/: {circles:?}");
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &["a"][..]),
    ]
    .into_iter()
    .map(|(m, deps)| (m.to_string(), deps.iter().map(|d| d.to_string()).collect()))
    .collect();
    assert_eq!(circles(&graph), [["a", "b", "c"]]);
    let parsed = paths("use super::{decide, gather::not_read};\nlet x = crate::cache::Kept::keep(&y);");
    assert!(parsed.contains(&(false, vec!["decide".to_string()])));
    assert!(parsed.contains(&(false, vec!["gather".to_string()])));
    assert!(parsed.contains(&(true, vec!["cache".into(), "Kept".into(), "keep".into()])));
}

/// The longest a function of `src/` may be, outside unit tests.
const MAX_FUNCTION_LINES: usize = 80;

/// `(file:line name, lines)` of every function in `text` (before its unit
/// tests) longer than `max`: from its `fn` line to the closing brace at the
/// same indentation.
fn long_functions(name: &str, text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code(text).lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let signature = trimmed
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("const ")
            .trim_start_matches("async ");
        let Some(rest) = signature.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        let Some(end) = lines[i..].iter().position(|l| l.trim_end() == close) else {
            continue;
        };
        if end + 1 > max {
            let fn_name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push((format!("{name}:{} {fn_name}", i + 1), end + 1));
        }
    }
    out
}

#[test]
fn no_function_of_src_is_longer_than_80_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Files that are test modules themselves (`#[cfg(test)] mod fixtures;`).
    let test_only: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let lines: Vec<String> = text.lines().map(str::trim).map(String::from).collect();
            lines
                .windows(2)
                .filter(|w| w[0] == "#[cfg(test)]" && w[1].ends_with(';') && w[1].contains("mod "))
                .map(|w| {
                    w[1].trim_end_matches(';')
                        .rsplit(' ')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let long: Vec<(String, usize)> = files
        .iter()
        .filter(|f| !test_only.iter().any(|m| f.file_stem().is_some_and(|s| s == m.as_str())))
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            long_functions(&f.display().to_string(), &text, MAX_FUNCTION_LINES)
        })
        .collect();
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines: {long:?}");
    let sample = "fn short() {\n    1;\n}\n\npub async fn long() {\n    a;\n    b;\n}\n";
    assert_eq!(long_functions("x", sample, 3), [("x:5 long".to_string(), 4)]);
}
