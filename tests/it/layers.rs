//! The layering docs/design.md claims, checked on the source: `pg/` imports
//! nothing of pgdrill but itself and `error`; only `cli/`, `report/` and the
//! binary import `cli` or `report`; nothing but the binary imports `cli`;
//! and the top-level modules import each other without cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`gate` for src/gate/lock.rs,
/// `main` for src/main.rs).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules a file's code (not its comments) names as
/// `crate::X`.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let re = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for c in re.captures_iter(code) {
            if modules.contains(&c[1]) {
                out.insert(c[1].to_string());
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(&src, f);
        let mut deps = imports(&std::fs::read_to_string(f).unwrap(), &modules);
        deps.remove(&m);
        g.entry(m).or_default().extend(deps);
    }
    g
}

#[test]
fn no_upward_imports() {
    let g = graph();
    let pg: BTreeSet<&str> = g["pg"].iter().map(String::as_str).filter(|d| *d != "error").collect();
    assert!(pg.is_empty(), "pg/ must parse without pgdrill's I/O: it imports {pg:?}");
    for (m, deps) in &g {
        if !["cli", "report", "main", "lib"].contains(&m.as_str()) {
            assert!(!deps.contains("report"), "{m} imports report (only report prints)");
            assert!(!deps.contains("cli"), "{m} imports cli");
        }
        if m != "main" && m != "lib" && m != "cli" {
            assert!(!deps.contains("cli") || m == "report", "{m} imports cli");
        }
    }
}

#[test]
fn no_cycles_between_modules() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!("an import cycle: {}", path[i..].join(" -> ") + " -> " + m);
        }
        path.push(m);
        for d in g.get(m).into_iter().flatten() {
            visit(d, g, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done);
    }
}
