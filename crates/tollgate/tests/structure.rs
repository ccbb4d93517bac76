//! The workspace's two dependency graphs stay acyclic (issue 18): the crates', and, inside each
//! crate, its files'. A cycle makes a change on either side reach the other, and turns "what
//! sits below what" (ARCHITECTURE.md's layering) into guesswork; these tests name the cycle and
//! the lines that close it, so it can be broken by moving the shared piece to a module both sides
//! import.
//!
//! Nothing is built: the crate graph comes from `cargo metadata --no-deps`, the file graph from a
//! small scanner of the sources (std only, no parser crate), so both run in well under a second.
//!
//! What counts as an edge between files, and why:
//! - a path that names a module of the crate from elsewhere: `use crate::a::b::Item`, a
//!   `crate::a::f()` in an expression, `super::x`, `self::x`, `$crate::x` in a macro, and every
//!   path of a `use crate::{a::X, b::{self, Y}}` group. It leads to the file that defines the
//!   module the path names (`crate::a::b::Item` is in `a/b.rs` or `a/b/mod.rs`, or in `a.rs` when
//!   `b` is an item of `a`).
//! - not a `mod child;` declaration, nor a parent's plain `child::x` paths: a parent composing its
//!   own children is how Rust spells a tree, and counting it would flag every crate root that
//!   re-exports what its modules define. A child reaching back with `super::` or `crate::` does
//!   count.
//! - not comments, string or char literals, and not items under `#[cfg(test)]` (test modules may
//!   import anything of the module they test).
//!
//! The proxy's bottom layer is checked one level up as well, between its top-level modules (a
//! folder counts as one): a file graph without a cycle can still hide one between folders, as
//! `shared/mod.rs` calling the backoff inside `credentials/` did while `credentials/` used
//! `shared/`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directed graph: node → successor → why the edge exists (shown when a cycle is found).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

// ---------------------------------------------------------------------------------------------
// The crate graph.

/// Normal and build dependencies between workspace packages form no cycle (cargo refuses one
/// anyway; this says so before a build does, with the path). Dev-dependencies are left out on
/// purpose: they may point back up (the proxy's tests run against `tollgate-sandbox`), which
/// cargo allows because tests are separate crates, and which changes nothing of what a library
/// may import.
#[test]
fn the_crates_depend_on_each_other_without_a_cycle() {
    let root = workspace_root();
    // `CARGO` is set when cargo runs the test (and was when it built it): the same cargo, even
    // when several are installed.
    let cargo: OsString =
        std::env::var_os("CARGO").unwrap_or_else(|| OsString::from(option_env!("CARGO").unwrap_or("cargo")));
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("running `{} metadata`: {e}", cargo.to_string_lossy()));
    assert!(
        out.status.success(),
        "`cargo metadata` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let graph = crate_graph(&meta);
    assert!(
        graph.len() >= 2,
        "cargo metadata listed {} workspace package(s): {:?}",
        graph.len(),
        graph.keys().collect::<Vec<_>>()
    );
    let report = cycles_report(&graph);
    assert!(
        report.is_empty(),
        "the workspace's crates depend on each other in a cycle (normal and build dependencies); \
         move what both need into a crate below them:\n{report}"
    );
}

/// Workspace package → the workspace packages it depends on (normal and build dependencies).
fn crate_graph(meta: &serde_json::Value) -> Graph {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("cargo metadata lists workspace_members")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    let packages: Vec<&serde_json::Value> = meta["packages"]
        .as_array()
        .expect("cargo metadata lists packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
        .collect();
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("a package has a name"))
        .collect();
    let mut graph = Graph::new();
    for package in &packages {
        let name = package["name"].as_str().expect("a package has a name");
        let deps = graph.entry(name.to_owned()).or_default();
        for dep in package["dependencies"]
            .as_array()
            .expect("a package lists its dependencies")
        {
            let dep_name = dep["name"].as_str().expect("a dependency has a name");
            // `kind` is null for a normal dependency.
            let section = match dep["kind"].as_str() {
                None => "[dependencies]",
                Some("build") => "[build-dependencies]",
                Some(_) => continue,
            };
            if names.contains(dep_name) && dep_name != name {
                deps.insert(dep_name.to_owned(), format!("{name}'s Cargo.toml {section}"));
            }
        }
    }
    graph
}

// ---------------------------------------------------------------------------------------------
// The file graph.

/// No file of any crate imports a file that (through others) imports it back.
#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let root = workspace_root();
    let mut report = String::new();
    let mut edges = 0;
    for krate in crate_dirs(&root) {
        let src = krate.join("src");
        let graph = file_graph(&src).unwrap_or_else(|e| panic!("{e}"));
        edges += graph.values().map(BTreeMap::len).sum::<usize>();
        let cycles = cycles_report(&graph);
        if !cycles.is_empty() {
            let shown = src.strip_prefix(&root).unwrap_or(&src).display().to_string();
            let _ = writeln!(report, "{shown}:\n{cycles}");
        }
    }
    assert!(
        edges > 0,
        "the scanner found no import between files at all: the scanner is broken, not the code"
    );
    assert!(
        report.is_empty(),
        "import cycles between files (a file uses something of a file that, directly or through \
         others, uses something of it); break each by moving the shared piece into a module both \
         sides import (see ARCHITECTURE.md, Invariants):\n{report}"
    );
}

/// Every `crates/*` directory with a `Cargo.toml` and a `src/` (the workspace's members).
fn crate_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.join("Cargo.toml").is_file() && dir.join("src").is_dir())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no crate under {}",
        root.join("crates").display()
    );
    dirs
}

/// One token of Rust source: an identifier or keyword, `::`, or a single punctuation character.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    line: usize,
}

/// Splits `src` into tokens, leaving out whitespace, comments (nested block comments too), string
/// literals (plain, byte, C and raw), char literals and lifetimes: none of them can hold a path.
fn tokens(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let n = c.len();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < n {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0usize;
            while i < n {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = past_string(&c, i + 1, &mut line);
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\'', '\u{e9}'), else a lifetime or a label, whose name
            // is lexed next as a plain identifier (harmless: it is never `crate`, `self` or `super`).
            if c.get(i + 1) == Some(&'\\') {
                // Past the quote, the backslash and the escaped character, to the closing quote.
                let mut j = i + 3;
                while j < n && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch == '_' || ch.is_alphanumeric() {
            let start = i;
            while i < n && (c[i] == '_' || c[i].is_alphanumeric()) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if matches!(word.as_str(), "b" | "c") && c.get(i) == Some(&'"') {
                i = past_string(&c, i + 1, &mut line);
                continue;
            }
            if matches!(word.as_str(), "r" | "br" | "cr") {
                let mut j = i;
                while j < n && c[j] == '#' {
                    j += 1;
                }
                if c.get(j) == Some(&'"') {
                    i = past_raw_string(&c, j + 1, j - i, &mut line);
                    continue;
                }
            }
            out.push(Token { text: word, line });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".to_owned(),
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// The index just past the closing quote of a string whose contents start at `i`.
fn past_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => {
                if c.get(i + 1) == Some(&'\n') {
                    *line += 1;
                }
                i += 2;
            }
            '"' => return i + 1,
            '\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    c.len()
}

/// The index just past the end (`"` and `hashes` × `#`) of a raw string whose contents start at `i`.
fn past_raw_string(c: &[char], mut i: usize, hashes: usize, line: &mut usize) -> usize {
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        if c[i] == '\n' {
            *line += 1;
        }
        i += 1;
    }
    c.len()
}

/// Whether `t[i..]` starts with `#[cfg(test)]`.
fn is_cfg_test(t: &[Token], i: usize) -> bool {
    const ATTRIBUTE: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    t.len() >= i + ATTRIBUTE.len() && ATTRIBUTE.iter().zip(&t[i..]).all(|(a, tok)| tok.text == *a)
}

/// The index just past the `}` matching the `{` at `t[i]`.
fn past_block(t: &[Token], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < t.len() {
        match t[i].text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    t.len()
}

/// `t` without the items marked `#[cfg(test)]`: each goes up to its `;`, or through its `{ … }`
/// body, whichever comes first outside brackets (further attributes and a signature's brackets
/// are skipped whole). Unlike cutting the file at the first such line, this keeps what follows a
/// `#[cfg(test)] mod tests;` at the top of a file, or a test-only function in an `impl`.
fn drop_test_items(t: &[Token]) -> Vec<Token> {
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if !is_cfg_test(t, i) {
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        let mut depth = 0usize;
        while i < t.len() {
            match t[i].text.as_str() {
                "(" | "[" => depth += 1,
                // The end of what encloses the item (a malformed item; never seen in practice).
                ")" | "]" if depth == 0 => break,
                ")" | "]" => depth -= 1,
                "}" => break,
                ";" if depth == 0 => {
                    i += 1;
                    break;
                }
                "{" => {
                    i = past_block(t, i);
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

fn is_ident(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Reads the path or use tree at `t[i]` below `prefix` (nested `{…}` groups, `self` in a group,
/// `*`, `as`), pushes each full path with its line, and returns the index after the tree.
fn use_tree(t: &[Token], mut i: usize, prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) -> usize {
    let line = t.get(i).map_or(0, |tok| tok.line);
    let mut path = prefix.to_vec();
    while let Some(tok) = t.get(i) {
        match tok.text.as_str() {
            "{" => {
                i += 1;
                while i < t.len() && t[i].text != "}" {
                    if t[i].text == "," {
                        i += 1;
                        continue;
                    }
                    let before = i;
                    i = use_tree(t, i, &path, out);
                    if i == before {
                        // Not a path: step over it rather than read it forever.
                        i += 1;
                    }
                }
                return i + 1;
            }
            "*" => {
                out.push((path, line));
                return i + 1;
            }
            word if is_ident(word) => {
                // `self` inside a group names the group's own prefix.
                if word != "self" || path.is_empty() {
                    path.push(word.to_owned());
                }
                if t.get(i + 1).is_some_and(|next| next.text == "::") {
                    i += 2;
                    continue;
                }
                out.push((path, line));
                i += 1;
                if t.get(i).is_some_and(|next| next.text == "as") {
                    i += 2;
                }
                return i;
            }
            // `crate::a::<T>`, `crate::a::f(…)` and the like end here.
            _ => break,
        }
    }
    if path.len() > prefix.len() {
        out.push((path, line));
    }
    i
}

/// What one file says about modules: the files it declares (`mod name;`, with the inline
/// modules the declaration sits in) and the module paths it uses (with the inline modules each
/// use sits in, and its line).
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    declared: Vec<(Vec<String>, String)>,
    used: Vec<(Vec<String>, Vec<String>, usize)>,
}

/// Scans tokens already cleared of test items.
fn scan(t: &[Token]) -> Scan {
    let mut found = Scan::default();
    let mut depth = 0usize;
    // Inline modules (`mod name { … }`) around the current token, with the depth of their body.
    let mut inline: Vec<(String, usize)> = Vec::new();
    fn names(inline: &[(String, usize)]) -> Vec<String> {
        inline.iter().map(|(name, _)| name.clone()).collect()
    }
    let mut i = 0;
    while i < t.len() {
        match t[i].text.as_str() {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "mod" if t.get(i + 1).is_some_and(|name| is_ident(&name.text)) => {
                let name = t[i + 1].text.clone();
                match t.get(i + 2).map(|tok| tok.text.as_str()) {
                    Some(";") => found.declared.push((names(&inline), name)),
                    Some("{") => inline.push((name, depth + 1)),
                    _ => {}
                }
            }
            "crate" | "super" | "self" if t.get(i + 1).is_some_and(|next| next.text == "::") => {
                // `a::self::…` and `super::super::…` continue a path read already; `pub(in
                // crate::a)` is a visibility, not a use.
                let continues = before(t, i, 1) == "::";
                let visibility =
                    before(t, i, 1) == "in" && before(t, i, 2) == "(" && before(t, i, 3) == "pub";
                if !continues && !visibility {
                    let mut paths = Vec::new();
                    let end = use_tree(t, i, &[], &mut paths);
                    for (path, line) in paths {
                        found.used.push((names(&inline), path, line));
                    }
                    // A tree's braces are balanced, so skipping it leaves `depth` right.
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The text of the token `back` places before `t[i]`, or `""` before the start.
fn before(t: &[Token], i: usize, back: usize) -> &str {
    i.checked_sub(back).map_or("", |j| t[j].text.as_str())
}

/// One file of a crate's module tree.
#[derive(Debug)]
struct ModuleFile {
    /// Relative to the crate's `src/`.
    rel: PathBuf,
    scan: Scan,
}

/// The crate's module tree as files, walked from its root through `mod name;` declarations
/// (those under `#[cfg(test)]` left out), keyed by module path (`["limit", "wait"]`).
fn module_files(src: &Path) -> Result<BTreeMap<Vec<String>, ModuleFile>, String> {
    // A crate with both is two crates; `main.rs` then only wires the library, and is left out.
    let root = ["lib.rs", "main.rs"]
        .into_iter()
        .map(PathBuf::from)
        .find(|rel| src.join(rel).is_file())
        .ok_or_else(|| format!("{}: no lib.rs or main.rs", src.display()))?;
    let mut modules = BTreeMap::new();
    let mut pending: Vec<(Vec<String>, PathBuf)> = vec![(Vec::new(), root)];
    while let Some((module, rel)) = pending.pop() {
        let text = std::fs::read_to_string(src.join(&rel))
            .map_err(|e| format!("{}: {e}", src.join(&rel).display()))?;
        let scan = scan(&drop_test_items(&tokens(&text)));
        // Where `mod name;` looks: beside a `mod.rs` or a crate root, else in the directory
        // named after the file (`pipeline.rs` → `pipeline/`).
        let owns_dir = matches!(
            rel.file_name().and_then(|f| f.to_str()),
            Some("mod.rs" | "lib.rs" | "main.rs")
        );
        let dir = if owns_dir {
            rel.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            rel.with_extension("")
        };
        for (inline, name) in &scan.declared {
            let mut at = dir.clone();
            at.extend(inline);
            let candidates = [at.join(format!("{name}.rs")), at.join(name).join("mod.rs")];
            let file = candidates.iter().find(|c| src.join(c).is_file()).ok_or_else(|| {
                format!(
                    "{}: `mod {name};` has no file at {} or {} (the scanner does not follow #[path])",
                    src.join(&rel).display(),
                    candidates[0].display(),
                    candidates[1].display()
                )
            })?;
            let mut child = module.clone();
            child.extend(inline.iter().cloned());
            child.push(name.clone());
            pending.push((child, file.clone()));
        }
        modules.insert(module, ModuleFile { rel, scan });
    }
    Ok(modules)
}

/// The module a path used in module `here` leads to, as the file module that defines it: the
/// longest prefix of the path that is a file's module (`crate::a::b::Item` → `a::b` when `a/b.rs`
/// exists, else `a`).
fn resolve<M>(modules: &BTreeMap<Vec<String>, M>, here: &[String], path: &[String]) -> Vec<String> {
    let (mut module, mut rest) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        _ => (here.to_vec(), path),
    };
    while let Some(first) = rest.first() {
        match first.as_str() {
            "self" => {}
            "super" => {
                module.pop();
            }
            _ => break,
        }
        rest = &rest[1..];
    }
    for segment in rest {
        module.push(segment.clone());
        if !modules.contains_key(&module) {
            module.pop();
            break;
        }
    }
    // Inside an inline module, `self` is not a file of its own: the file around it is.
    while !module.is_empty() && !modules.contains_key(&module) {
        module.pop();
    }
    module
}

/// File → the files it uses (paths relative to `src`), with the first use as the reason.
fn file_graph(src: &Path) -> Result<Graph, String> {
    let modules = module_files(src)?;
    let mut graph = Graph::new();
    for (module, file) in &modules {
        let from = file.rel.display().to_string();
        let uses = graph.entry(from.clone()).or_default();
        for (inline, path, line) in &file.scan.used {
            let mut here = module.clone();
            here.extend(inline.iter().cloned());
            let target = resolve(&modules, &here, path);
            let to = modules[&target].rel.display().to_string();
            if to != from {
                uses.entry(to)
                    .or_insert_with(|| format!("{from}:{line} uses {}", path.join("::")));
            }
        }
    }
    Ok(graph)
}

// ---------------------------------------------------------------------------------------------
// The proxy's bottom layer.

/// The proxy's bottom modules and the only top-level modules each may import (ARCHITECTURE.md,
/// Invariants). Everything else builds on them, so an import from one of them upwards would be
/// half of a cycle.
const PROXY_BOTTOM: &[(&str, &[&str])] = &[
    ("secret", &[]),
    ("clock", &[]),
    ("backoff", &[]),
    ("jitter", &[]),
    ("config", &["secret"]),
    ("quota", &["config"]),
];

/// The proxy's bottom modules import nothing of the crate but what sits below them.
#[test]
fn the_proxys_bottom_modules_import_only_what_sits_below_them() {
    let src = workspace_root().join("crates/proxy/src");
    let graph = top_level_graph(&src).unwrap_or_else(|e| panic!("{e}"));
    // quota.rs does use the config: a scanner that missed it would pass any code.
    assert!(
        graph.get("quota").is_some_and(|u| u.contains_key("config")),
        "the scanner did not see quota.rs use the config: the scanner is broken, not the code"
    );
    let mut report = String::new();
    for &(module, allowed) in PROXY_BOTTOM {
        let uses = graph
            .get(module)
            .unwrap_or_else(|| panic!("crates/proxy/src has no top-level module `{module}`"));
        for (to, why) in uses {
            if !allowed.contains(&to.as_str()) {
                let _ = writeln!(report, "  {module} -> {to}: {why}");
            }
        }
    }
    assert!(
        report.is_empty(),
        "a bottom module of the proxy imports a module above it; move what it needs down, or \
         the code that needs it up (see ARCHITECTURE.md, Invariants):\n{report}"
    );
}

/// The top-level module a module belongs to (`crate` for the crate root).
fn top_level(module: &[String]) -> String {
    module.first().cloned().unwrap_or_else(|| "crate".to_owned())
}

/// Top-level module → the other top-level modules its files use, with the first use as the
/// reason: the file graph with each folder folded into one node.
fn top_level_graph(src: &Path) -> Result<Graph, String> {
    let modules = module_files(src)?;
    let mut graph = Graph::new();
    for (module, file) in &modules {
        let from = top_level(module);
        let uses = graph.entry(from.clone()).or_default();
        for (inline, path, line) in &file.scan.used {
            let mut here = module.clone();
            here.extend(inline.iter().cloned());
            let to = top_level(&resolve(&modules, &here, path));
            if to != from {
                uses.entry(to)
                    .or_insert_with(|| format!("{}:{line} uses {}", file.rel.display(), path.join("::")));
            }
        }
    }
    Ok(graph)
}

// ---------------------------------------------------------------------------------------------
// Cycles.

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn cyclic_components(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        found: Vec<Vec<String>>,
    }

    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let graph: &'g Graph = self.graph;
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in graph.get(v).into_iter().flat_map(BTreeMap::keys) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().expect("v is still on the stack");
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }

    let mut tarjan = Tarjan {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    tarjan.found.sort();
    tarjan.found
}

/// A shortest cycle through the component's first node, staying inside the component; it
/// starts and ends with that node.
fn a_cycle(graph: &Graph, component: &[String]) -> Vec<String> {
    let start = component[0].as_str();
    let inside: BTreeSet<&str> = component.iter().map(String::as_str).collect();
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(BTreeMap::keys) {
            let w = w.as_str();
            if !inside.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                while let Some(&prev) = came_from.get(path[path.len() - 1]) {
                    path.push(prev);
                }
                path.reverse();
                path.push(start);
                return path.into_iter().map(str::to_owned).collect();
            }
            if w != start && !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    // A component of more than one node always has a cycle through each of its nodes.
    component.to_vec()
}

/// Each cycle as `a -> b -> a`, with the reason for each edge; empty when there is none.
fn cycles_report(graph: &Graph) -> String {
    let mut report = String::new();
    for component in cyclic_components(graph) {
        let cycle = a_cycle(graph, &component);
        let _ = writeln!(report, "  {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            if let Some(why) = graph.get(&pair[0]).and_then(|to| to.get(&pair[1])) {
                let _ = writeln!(report, "      {} -> {}: {why}", pair[0], pair[1]);
            }
        }
        if component.len() > cycle.len() - 1 {
            let _ = writeln!(report, "    (all tangled together: {})", component.join(", "));
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// The scanner itself, on small sources: a scanner that misses uses would pass any code.

fn used(src: &str) -> Vec<String> {
    scan(&drop_test_items(&tokens(src)))
        .used
        .into_iter()
        .map(|(inline, path, line)| {
            let inline = if inline.is_empty() {
                String::new()
            } else {
                format!("[{}] ", inline.join("::"))
            };
            format!("{inline}{}@{line}", path.join("::"))
        })
        .collect()
}

#[test]
fn the_scanner_sees_no_path_in_comments_strings_chars_or_lifetimes() {
    let src = r####"
// crate::a::X
/* crate::b /* nested crate::c */ crate::d */
const S: &str = "crate::e \" crate::f";
const R: &str = r#"crate::g "quoted" "#;
const B: &[u8] = b"crate::h";
const C: char = '"';
const Q: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { x }
use crate::real::Item;
"####;
    assert_eq!(used(src), ["crate::real::Item@10"]);
}

#[test]
fn the_scanner_reads_groups_relative_paths_and_expressions() {
    let src = "use crate::{a::X, b::{self, c::Y}, d::*};\n\
               use super::super::p::Q as Z;\n\
               pub(in crate::q) fn g() {}\n\
               pub(crate) fn h() { self::y::z(); $crate::m::n!(); crate::o::<u8>(); }\n";
    assert_eq!(
        used(src),
        [
            "crate::a::X@1",
            "crate::b@1",
            "crate::b::c::Y@1",
            "crate::d@1",
            "super::super::p::Q@2",
            "self::y::z@4",
            "crate::m::n@4",
            "crate::o@4",
        ]
    );
}

#[test]
fn the_scanner_skips_test_items_only_and_knows_inline_modules() {
    let src = "#[cfg(test)]\n\
               mod tests;\n\
               #[cfg(test)]\n\
               #[allow(dead_code)]\n\
               fn only_in_tests() -> Result<(), [u8; 2]> { crate::t::x() }\n\
               #[cfg(test)]\n\
               use crate::u::U;\n\
               impl S {\n\
                   #[cfg(test)]\n\
                   fn new() -> Self { crate::v::v() }\n\
                   fn kept(&self) { crate::w::w() }\n\
               }\n\
               mod inline {\n\
                   use super::sibling::X;\n\
                   mod deeper;\n\
               }\n\
               mod child;\n\
               #[cfg(test)]\n\
               mod tests {\n\
                   use crate::x::X;\n\
               }\n\
               use crate::after::A;\n";
    assert_eq!(
        used(src),
        [
            "crate::w::w@11",
            "[inline] super::sibling::X@14",
            "crate::after::A@22"
        ]
    );
    let declared = scan(&drop_test_items(&tokens(src))).declared;
    assert_eq!(
        declared,
        [
            (vec!["inline".to_owned()], "deeper".to_owned()),
            (Vec::new(), "child".to_owned())
        ]
    );
}

#[test]
fn a_path_leads_to_the_file_of_the_module_it_names() {
    fn owned(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| (*s).to_owned()).collect()
    }
    let files: [&[&str]; 4] = [&[], &["a"], &["a", "b"], &["c"]];
    let modules: BTreeMap<Vec<String>, ()> = files.into_iter().map(|m| (owned(m), ())).collect();
    let here = owned(&["a", "b"]);
    let to = |path: &str| resolve(&modules, &here, &owned(&path.split("::").collect::<Vec<_>>()));
    assert_eq!(to("super::X"), owned(&["a"]));
    assert_eq!(to("self::Y"), owned(&["a", "b"]));
    assert_eq!(to("crate::a::b::f"), owned(&["a", "b"]));
    assert_eq!(to("crate::a::Item"), owned(&["a"]));
    assert_eq!(to("crate::c::d::E"), owned(&["c"]));
    assert_eq!(to("crate::Root"), owned(&[]));
    assert_eq!(to("super::super::c::F"), owned(&["c"]));
    // From an inline module `m` of `a/b.rs`: `super` is `a::b` itself, `self` is `a/b.rs`.
    let inline = owned(&["a", "b", "m"]);
    assert_eq!(
        resolve(&modules, &inline, &owned(&["super", "X"])),
        owned(&["a", "b"])
    );
    assert_eq!(
        resolve(&modules, &inline, &owned(&["self", "Y"])),
        owned(&["a", "b"])
    );
}

#[test]
fn cycles_are_found_and_shown_with_their_edges() {
    let mut graph = Graph::new();
    for (from, to) in [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("c", "d"),
        ("d", "e"),
        ("e", "d"),
        ("f", "a"),
    ] {
        graph
            .entry(from.to_owned())
            .or_default()
            .insert(to.to_owned(), format!("{from} uses {to}"));
    }
    assert_eq!(cyclic_components(&graph), [vec!["a", "b", "c"], vec!["d", "e"]]);
    assert_eq!(
        a_cycle(&graph, &["a".to_owned(), "b".to_owned(), "c".to_owned()]),
        ["a", "b", "c", "a"]
    );
    let report = cycles_report(&graph);
    assert!(report.contains("  a -> b -> c -> a\n"), "{report}");
    assert!(report.contains("      c -> a: c uses a\n"), "{report}");
    assert!(report.contains("  d -> e -> d\n"), "{report}");
    graph.remove("c");
    graph.remove("e");
    assert_eq!(cycles_report(&graph), "");
}
