//! Checks the book's code blocks that are not doctests: every block names its language,
//! every chapter is compiled as doctests, included sources exist and are compiled by the
//! workspace, and the TOML and JSON blocks are what they claim to be.

use std::path::{Path, PathBuf};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use koupleless::config::{Config, LoadedConfig, ReleaseConfig};

/// One fenced block of a chapter.
struct Block {
    chapter: String,
    line: usize,
    info: String,
    text: String,
}

impl Block {
    fn lang(&self) -> &str {
        self.info.split(',').next().unwrap_or("").trim()
    }

    fn at(&self) -> String {
        format!("book/src/{}:{}", self.chapter, self.line)
    }
}

fn book_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chapters SUMMARY.md links, in order.
fn chapters() -> Vec<String> {
    let summary = std::fs::read_to_string(book_dir().join("src/SUMMARY.md")).expect("SUMMARY.md");
    summary
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(link, _)| link.to_owned()))
        .filter(|link| link.ends_with(".md"))
        .collect()
}

fn blocks() -> Vec<Block> {
    let mut blocks = Vec::new();
    for chapter in chapters() {
        let text = std::fs::read_to_string(book_dir().join("src").join(&chapter))
            .unwrap_or_else(|e| panic!("book/src/{chapter}: {e}"));
        let mut open: Option<Block> = None;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            match (&mut open, trimmed.strip_prefix("```")) {
                (None, Some(info)) => {
                    open = Some(Block {
                        chapter: chapter.clone(),
                        line: i + 1,
                        info: info.trim().to_owned(),
                        text: String::new(),
                    })
                }
                (Some(_), Some(_)) => blocks.push(open.take().expect("open block")),
                (Some(block), None) => {
                    block.text.push_str(line);
                    block.text.push('\n');
                }
                (None, None) => {}
            }
        }
        assert!(
            open.is_none(),
            "book/src/{chapter}: a code block is never closed"
        );
    }
    blocks
}

#[test]
fn every_block_names_its_language() {
    let unnamed: Vec<String> = blocks()
        .iter()
        .filter(|b| b.lang().is_empty())
        .map(Block::at)
        .collect();
    assert!(
        unnamed.is_empty(),
        "code blocks without a language (rustdoc would compile them as Rust; write ```text, ```sh, …): {unnamed:?}"
    );
}

#[test]
fn every_chapter_is_compiled_as_doctests() {
    let doctests = std::fs::read_to_string(book_dir().join("doctests.rs")).expect("doctests.rs");
    let missing: Vec<String> = chapters()
        .into_iter()
        .filter(|chapter| !doctests.contains(&format!("\"src/{chapter}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "chapters in SUMMARY.md but not in book/doctests.rs, so their Rust is never compiled: {missing:?}"
    );
}

/// `{{#include path:anchor}}` lines of a block, or the reason it is not only includes.
fn includes(block: &Block) -> Result<Vec<(String, Option<String>)>, String> {
    let mut found = Vec::new();
    for line in block.text.lines().filter(|l| !l.trim().is_empty()) {
        let inner = line
            .trim()
            .strip_prefix("{{#include ")
            .and_then(|rest| rest.strip_suffix("}}"))
            .ok_or_else(|| format!("`{line}` is not an {{{{#include}}}} line"))?;
        let (path, anchor) = match inner.trim().rsplit_once(':') {
            Some((path, anchor)) => (path.to_owned(), Some(anchor.to_owned())),
            None => (inner.trim().to_owned(), None),
        };
        found.push((path, anchor));
    }
    if found.is_empty() {
        return Err("it is empty".to_owned());
    }
    Ok(found)
}

/// The workspace members, as directories relative to the repository root.
fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(book_dir().join("../Cargo.toml")).expect("Cargo.toml");
    Figment::from(Toml::string(&manifest))
        .extract_inner("workspace.members")
        .expect("workspace.members")
}

#[test]
fn ignored_rust_blocks_only_include_sources_the_workspace_compiles() {
    let root = book_dir()
        .join("..")
        .canonicalize()
        .expect("repository root");
    let members: Vec<PathBuf> = workspace_members().iter().map(|m| root.join(m)).collect();
    let mut problems = Vec::new();
    let mut included = 0;
    for block in blocks().iter().filter(|b| b.lang() == "rust") {
        let ignored = block.info.split(',').any(|a| a.trim() == "ignore");
        if !ignored {
            if block.text.contains("{{#include") {
                problems.push(format!(
                    "{}: an {{{{#include}}}} block must be marked `ignore` (rustdoc does not expand it)",
                    block.at()
                ));
            }
            continue;
        }
        let found = match includes(block) {
            Ok(found) => found,
            Err(why) => {
                problems.push(format!(
                    "{}: marked `ignore` but {why}; make it a doctest (hidden `# ` lines for what it needs) or include a compiled file",
                    block.at()
                ));
                continue;
            }
        };
        for (path, anchor) in found {
            let file = book_dir().join("src").join(&path);
            let Ok(text) = std::fs::read_to_string(&file) else {
                problems.push(format!(
                    "{}: includes {path}, which does not exist",
                    block.at()
                ));
                continue;
            };
            let file = file.canonicalize().expect("an existing file");
            if !members.iter().any(|m| file.starts_with(m.join("src"))) {
                problems.push(format!(
                    "{}: includes {path}, which is not in the src/ of a workspace member, so nothing compiles it",
                    block.at()
                ));
            }
            if let Some(anchor) = anchor {
                for marker in [format!("ANCHOR: {anchor}"), format!("ANCHOR_END: {anchor}")] {
                    if !text.contains(&marker) {
                        problems.push(format!("{}: {path} has no `{marker}`", block.at()));
                    }
                }
            }
            included += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        included > 0,
        "the book includes no source file: this test checks nothing"
    );
}

/// A TOML block is a Cargo manifest (or part of one) when it has one of these tables.
const CARGO_TABLES: &[&str] = &[
    "[package]",
    "[dependencies]",
    "[dev-dependencies]",
    "[lib]",
    "[workspace]",
    "[profile.",
    "[target.",
];

#[test]
fn toml_blocks_load_as_the_base_loads_its_configuration() {
    let mut problems = Vec::new();
    let mut configs = 0;
    for block in blocks().iter().filter(|b| b.lang() == "toml") {
        if CARGO_TABLES.iter().any(|t| block.text.contains(t)) {
            if let Err(e) =
                Figment::from(Toml::string(&block.text)).extract::<figment::value::Dict>()
            {
                problems.push(format!("{}: not valid TOML: {e}", block.at()));
            }
            continue;
        }
        // A release's own config, headed by a comment naming its `module.toml`, is checked as
        // a base checks one.
        if block
            .text
            .lines()
            .next()
            .is_some_and(|l| l.starts_with('#') && l.ends_with("module.toml"))
        {
            if let Err(e) = ReleaseConfig::parse("module.toml", block.text.as_bytes()) {
                problems.push(format!("{}: {e}", block.at()));
            }
            continue;
        }
        configs += 1;
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&block.text));
        // Loading checks every `[modules.<name>]` section too.
        if let Err(e) = LoadedConfig::from_figment(figment) {
            problems.push(format!("{}: {e}", block.at()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        configs > 0,
        "the book shows no koupleless.toml: this test checks nothing"
    );
}

#[test]
fn json_blocks_are_json() {
    let mut problems = Vec::new();
    for block in blocks().iter().filter(|b| b.lang() == "json") {
        // A block may show several documents, one per line (a log, a stream of answers).
        let whole: Result<serde_json::Value, _> = serde_json::from_str(&block.text);
        if whole.is_ok() {
            continue;
        }
        let lines: Result<Vec<serde_json::Value>, _> = block
            .text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect();
        if let Err(e) = lines {
            problems.push(format!("{}: not JSON: {e}", block.at()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_relative_links_between_chapters_resolve() {
    let src = book_dir().join("src");
    let mut problems = Vec::new();
    for chapter in chapters() {
        let text = std::fs::read_to_string(src.join(&chapter)).expect("chapter");
        for link in text
            .split("](")
            .skip(1)
            .filter_map(|r| r.split_once(')').map(|(l, _)| l))
        {
            if link.starts_with("http") || link.starts_with('#') || link.starts_with("mailto:") {
                continue;
            }
            let file = link.split('#').next().unwrap_or(link);
            if !Path::new(&src.join(file)).exists() {
                problems.push(format!(
                    "book/src/{chapter}: link to {link}, which does not exist"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn chapter(name: &str) -> String {
    std::fs::read_to_string(book_dir().join("src").join(name)).expect("a chapter")
}

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut dirs = vec![book_dir().join("..").join(dir)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                found.push((path, text));
            }
        }
    }
    found
}

/// The first string literal after each occurrence of `marker`.
fn literals_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.match_indices(marker)
        .filter_map(|(at, _)| text[at + marker.len()..].split('"').nth(1))
        .collect()
}

#[test]
fn every_admin_route_is_in_the_admin_api_chapter() {
    let reference = chapter("admin-api.md");
    let mut routes = Vec::new();
    for (_, text) in sources("koupleless-rs/src/admin") {
        routes.extend(
            literals_after(&text, ".route(")
                .into_iter()
                .map(str::to_owned),
        );
    }
    assert!(routes.len() > 15, "found only {routes:?}");
    let missing: Vec<&String> = routes
        .iter()
        .filter(|route| {
            !reference.contains(&format!(" {route}`")) && !reference.contains(&format!(" {route}?"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "admin routes the Admin API chapter does not document: {missing:?}"
    );
}

#[test]
fn every_metric_is_in_the_metrics_chapter() {
    let reference = chapter("metrics.md");
    let mut names: Vec<String> = Vec::new();
    for (_, text) in sources("koupleless-rs/src") {
        for piece in text.split('"').skip(1).step_by(2) {
            if piece.starts_with("koupleless_")
                && piece.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                names.push(piece.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    assert!(names.len() >= 8, "found only {names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !reference.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics the Metrics chapter does not list: {missing:?}"
    );
}

/// The rows of the reference table under `### \`[section]\``.
fn documented_keys(reference: &str, section: &str) -> Vec<String> {
    let heading = format!("### `[{section}]`");
    let Some(start) = reference.find(&heading) else {
        return Vec::new();
    };
    let body = &reference[start + heading.len()..];
    let body = &body[..body.find("\n#").unwrap_or(body.len())];
    body.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(key, _)| key.to_owned()))
        .collect()
}

#[test]
fn every_configuration_key_is_in_the_configuration_reference() {
    let reference = chapter("configuration.md");
    let defaults = serde_json::to_value(Config::default()).expect("the defaults serialize");
    let mut missing = Vec::new();
    let mut checked = 0;
    for (section, keys) in defaults.as_object().expect("a table") {
        if section == "modules" {
            continue;
        }
        let documented = documented_keys(&reference, section);
        for key in keys.as_object().expect("a section").keys() {
            checked += 1;
            if !documented.contains(key) {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    let module =
        serde_json::to_value(koupleless::config::ModuleSettings::default()).expect("serializes");
    let documented = documented_keys(&reference, "modules.<name>");
    for key in module.as_object().expect("a section").keys() {
        checked += 1;
        if !documented.contains(key) {
            missing.push(format!("modules.<name>.{key}"));
        }
    }
    assert!(checked > 40, "checked only {checked} keys");
    assert!(
        missing.is_empty(),
        "keys the Configuration reference has no row for: {missing:?}"
    );
}

#[test]
fn the_complete_file_in_the_configuration_chapter_is_the_defaults() {
    let reference = chapter("configuration.md");
    let heading = "## A complete file with the defaults";
    let after = &reference[reference.find(heading).expect("the section") + heading.len()..];
    let block = after
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a toml block");
    let loaded: Config = Figment::from(Toml::string(block))
        .extract()
        .unwrap_or_else(|e| panic!("the complete file does not load: {e}"));
    let mut loaded = serde_json::to_value(loaded).unwrap();
    // The file shows a module section as an example; modules have no defaults.
    loaded.as_object_mut().expect("a table").remove("modules");
    assert_eq!(
        loaded,
        serde_json::to_value(Config::default()).unwrap(),
        "the complete file's values differ from the defaults"
    );
}
