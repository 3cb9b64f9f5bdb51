//! `koupleless doctor`: the configuration as a base would load it, each value with its source.

use std::path::Path;

use anyhow::{anyhow, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use figment::Figment;
use koupleless_config::LoadedConfig;
use serde_json::Value;

use crate::output::Out;

pub(crate) fn doctor(file: Option<&Path>, out: &Out) -> anyhow::Result<()> {
    let figment = match file {
        Some(file) if !file.is_file() => {
            bail!(
                "{} does not exist; pass the base's configuration file with --config",
                file.display()
            )
        }
        Some(file) => LoadedConfig::figment_with_file(file),
        None => LoadedConfig::figment(),
    };
    // Each module's section is checked as the configuration loads.
    let loaded = LoadedConfig::from_figment(figment)
        .map_err(|e| anyhow!("the configuration is invalid:\n{e}"))?;
    let value = serde_json::to_value(&loaded.config)?;
    let mut rows = Vec::new();
    flatten(&value, String::new(), &mut rows);
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["KEY", "VALUE", "FROM"]);
    for (key, value) in rows {
        let shown = if secret(&key) && value != "null" {
            "(set, not shown)".to_owned()
        } else {
            koupleless_config::redact_url(&value)
        };
        table.add_row(vec![key.clone(), shown, source(&loaded.figment, &key)]);
    }
    out.data(&table.to_string());
    out.say("the configuration is valid");
    Ok(())
}

/// Keys whose values are credentials: tokens, secrets, passwords, and the object stores'
/// `*_key` options (`azure_storage_account_key`, `google_service_account_key`…).
fn secret(key: &str) -> bool {
    ["token", "secret", "password"]
        .iter()
        .any(|word| key.contains(word))
        || key.ends_with("_key")
}

/// `a.b.c = value` for every leaf; lists stay whole.
fn flatten(value: &Value, prefix: String, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, key, rows);
            }
        }
        Value::String(s) => rows.push((prefix, s.clone())),
        other => rows.push((prefix, other.to_string())),
    }
}

/// Where a key's value came from: the file, the environment variable, or the defaults.
fn source(figment: &Figment, key: &str) -> String {
    let Some(metadata) = figment.find_metadata(key) else {
        return "default".to_owned();
    };
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        _ if metadata.name.contains("environment") => format!(
            "environment variable KOUPLELESS_{}",
            key.split('.').collect::<Vec<_>>().join("__").to_uppercase()
        ),
        // Values serialized in code: the library's (or the application's) defaults.
        Some(figment::Source::Code(_)) => "default".to_owned(),
        _ => metadata.name.to_string(),
    }
}
