//! The workspace's layering, checked on its sources and its dependency trees:
//!
//! * in each library crate, no two sibling modules import each other, directly or through
//!   other siblings (dependencies between the parts of one level run one way); a name the
//!   crate root re-exports counts as the module it comes from;
//! * nothing under `rollout/` or `storage/` imports the actors: they declare the ports they
//!   need, and the composition root wires the actors to them;
//! * the command-line tool and a module built for `wasm32-wasip2` link no WebAssembly
//!   runtime, no actor system and no HTTP server.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use syn::visit::Visit;

/// A module of a crate: `["actors", "base"]` for `crate::actors::base`.
type ModulePath = Vec<String>;

/// The library crates whose modules are checked, by directory.
const CRATES: &[&str] = &[
    "koupleless-rs",
    "koupleless-module",
    "koupleless-release",
    "koupleless-config",
    "koupleless-wire",
    "koupleless-cli",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_owned()
}

/// Every module of the crate in `dir`, with the modules each one names in its `use` items
/// and paths (resolved through the root's re-exports, to the longest module that exists).
fn module_graph(dir: &str) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let src = workspace().join(dir).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let modules: BTreeMap<ModulePath, syn::File> = files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("readable source");
            let syntax = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
            (module_of(&src, &file), syntax)
        })
        .filter(|(module, _)| module.first().map(String::as_str) != Some("main"))
        .collect();
    let known: BTreeSet<ModulePath> = modules.keys().cloned().collect();
    let reexports = modules
        .get(&Vec::new())
        .map(|root| root_reexports(root, &known))
        .unwrap_or_default();
    modules
        .iter()
        .map(|(module, syntax)| {
            let mut paths = Paths::default();
            paths.visit_file(syntax);
            let targets = paths
                .0
                .into_iter()
                .filter_map(|path| resolve(module, &path))
                .map(|path| through_reexports(&reexports, path))
                .map(|path| longest_known(&known, &path))
                .filter(|target| !target.is_empty() && target != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// The names the crate root re-exports from its own modules, with where they come from
/// (`ModuleContext` → `native::ModuleContext`).
fn root_reexports(root: &syn::File, known: &BTreeSet<ModulePath>) -> BTreeMap<String, ModulePath> {
    let mut reexports = BTreeMap::new();
    for item in &root.items {
        let syn::Item::Use(item) = item else { continue };
        let mut names = Vec::new();
        leaves(&[], &item.tree, &mut names);
        for (name, path) in names {
            let path: ModulePath = match path.first().map(String::as_str) {
                Some("crate" | "self") => path[1..].to_vec(),
                _ => path,
            };
            let local = path
                .first()
                .is_some_and(|first| known.contains(std::slice::from_ref(first)));
            if local && !known.contains(std::slice::from_ref(&name)) {
                reexports.insert(name, path);
            }
        }
    }
    reexports
}

/// Each name a `use` tree brings in, with its full path.
fn leaves(prefix: &[String], tree: &syn::UseTree, out: &mut Vec<(String, Vec<String>)>) {
    let joined = |last: &syn::Ident| {
        let mut path = prefix.to_vec();
        path.push(last.to_string());
        path
    };
    match tree {
        syn::UseTree::Path(p) => leaves(&joined(&p.ident), &p.tree, out),
        syn::UseTree::Name(n) => out.push((n.ident.to_string(), joined(&n.ident))),
        syn::UseTree::Rename(r) => out.push((r.rename.to_string(), joined(&r.ident))),
        syn::UseTree::Glob(_) => {}
        syn::UseTree::Group(g) => {
            for item in &g.items {
                leaves(prefix, item, out);
            }
        }
    }
}

/// `path` with a re-exported name at its head replaced by where the name comes from.
fn through_reexports(reexports: &BTreeMap<String, ModulePath>, path: ModulePath) -> ModulePath {
    match path.first().and_then(|head| reexports.get(head)) {
        Some(origin) => origin.iter().chain(&path[1..]).cloned().collect(),
        None => path,
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> ModulePath {
    // The crate root is `lib.rs`; a binary's `main.rs` is left out by the caller.
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Every path in a file that starts with `crate`, `super` or `self`, `use` trees expanded.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl Paths {
    fn tree(&mut self, prefix: &[String], tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                let mut next = prefix.to_vec();
                next.push(p.ident.to_string());
                self.tree(&next, &p.tree);
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.to_vec();
                path.push(n.ident.to_string());
                self.push(path);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.to_vec();
                path.push(r.ident.to_string());
                self.push(path);
            }
            syn::UseTree::Glob(_) => self.push(prefix.to_vec()),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.tree(prefix, item);
                }
            }
        }
    }

    fn push(&mut self, path: Vec<String>) {
        if matches!(
            path.first().map(String::as_str),
            Some("crate" | "super" | "self")
        ) {
            self.0.push(path);
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.tree(&[], &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
}

/// `path` as seen from `module`, made absolute (without `crate`).
fn resolve(module: &ModulePath, path: &[String]) -> Option<ModulePath> {
    let mut base: ModulePath = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => module.clone(),
        _ => return None,
    };
    let mut rest = &path[1..];
    if path[0] == "super" {
        base.pop()?;
    }
    while rest.first().map(String::as_str) == Some("super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn longest_known(known: &BTreeSet<ModulePath>, path: &[String]) -> ModulePath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains(prefix))
        .unwrap_or_default()
}

/// For every module, the graph among its children (an edge when something in one child's
/// subtree names something in another's); the cycles found, as `a -> b -> a`.
fn sibling_cycles(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>) -> Vec<String> {
    let parents: BTreeSet<ModulePath> = graph
        .keys()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    let mut cycles = Vec::new();
    for parent in parents {
        let depth = parent.len();
        let child_of = |m: &ModulePath| -> Option<String> {
            (m.len() > depth && m[..depth] == parent[..]).then(|| m[depth].clone())
        };
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, targets) in graph {
            let Some(a) = child_of(from) else { continue };
            for target in targets {
                if let Some(b) = child_of(target).filter(|b| *b != a) {
                    edges.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        for cycle in find_cycles(&edges) {
            let names: Vec<String> = cycle
                .iter()
                .map(|c| {
                    let mut path = parent.clone();
                    path.push(c.clone());
                    path.join("::")
                })
                .collect();
            cycles.push(names.join(" -> "));
        }
    }
    cycles
}

/// One cycle through each node that is on a cycle (depth-first search).
fn find_cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            cycles.push(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            walk(next, edges, stack, done, cycles);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        walk(node, edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    cycles
}

#[test]
fn no_two_modules_import_each_other_in_a_circle() {
    let mut cycles = Vec::new();
    for dir in CRATES {
        let graph = module_graph(dir);
        assert!(graph.len() > 3, "the sources of {dir} were not found");
        cycles.extend(
            sibling_cycles(&graph)
                .into_iter()
                .map(|cycle| format!("{dir}: {cycle}")),
        );
    }
    assert!(
        cycles.is_empty(),
        "dependencies between modules of one level must run one way:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn rollout_and_storage_never_import_the_actors() {
    let graph = module_graph("koupleless-rs");
    assert!(graph.len() > 30, "the base's sources were not found");
    let offenders: Vec<String> = graph
        .iter()
        .filter(|(from, _)| {
            matches!(
                from.first().map(String::as_str),
                Some("rollout" | "storage")
            )
        })
        .flat_map(|(from, targets)| {
            targets
                .iter()
                .filter(|t| t.first().map(String::as_str) == Some("actors"))
                .map(move |t| format!("{} imports {}", from.join("::"), t.join("::")))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "rollout/ and storage/ declare ports instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_check_finds_a_cycle_and_resolves_relative_paths() {
    let m = |p: &str| p.split("::").map(str::to_owned).collect::<ModulePath>();
    let mut graph = BTreeMap::new();
    graph.insert(m("actors::base"), BTreeSet::from([m("actors::operations")]));
    graph.insert(m("actors::operations"), BTreeSet::from([m("actors::base")]));
    graph.insert(m("table"), BTreeSet::from([m("health")]));
    graph.insert(m("health"), BTreeSet::new());
    assert_eq!(
        sibling_cycles(&graph),
        ["actors::base -> actors::operations -> actors::base"]
    );
    let path = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        resolve(&m("actors::base"), &path("super::operations::Ops")),
        Some(m("actors::operations::Ops"))
    );
    assert_eq!(
        resolve(
            &m("rollout::attempt"),
            &path("crate::actors::base::BaseMsg")
        ),
        Some(m("actors::base::BaseMsg"))
    );
}

/// `cargo tree` of `args` (run in the workspace), as text.
fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .arg("tree")
        .args(args)
        .args(["--prefix", "none", "--edges", "normal"])
        .current_dir(workspace())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of `tree` naming one of `crates`.
fn named<'a>(tree: &'a str, crates: &[&str]) -> Vec<&'a str> {
    tree.lines()
        .filter(|line| {
            crates
                .iter()
                .any(|name| line.starts_with(&format!("{name} ")))
        })
        .collect()
}

/// The base runtime, the WebAssembly runtime and the actor system.
const RUNTIME: &[&str] = &["koupleless", "wasmtime", "ractor"];

#[test]
fn the_tool_and_a_guest_module_link_none_of_the_runtime() {
    let cli = cargo_tree(&["-p", "koupleless-cli"]);
    assert!(cli.contains("koupleless-release"), "{cli}");
    assert_eq!(named(&cli, RUNTIME), Vec::<&str>::new(), "koupleless-cli");
    for guest in ["koupleless-module", "example-attendance-wasm"] {
        let tree = cargo_tree(&["-p", guest, "--target", "wasm32-wasip2"]);
        assert!(tree.contains("wit-bindgen"), "{guest}: {tree}");
        let host: Vec<&str> = named(&tree, RUNTIME)
            .into_iter()
            .chain(named(&tree, &["tokio", "hyper", "figment"]))
            .collect();
        assert_eq!(host, Vec::<&str>::new(), "{guest} for wasm32-wasip2");
    }
}
