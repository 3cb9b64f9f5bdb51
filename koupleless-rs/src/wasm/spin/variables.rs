//! `fermyon:spin/variables@2.0.0` and `wasi:config/store@0.2.0-draft-2024-09-27` (Spin 3's
//! variables): a variable is a top-level key of the module's `[modules.<name>]` section.
//! Text is handed on as it is, numbers and booleans as their text, tables and arrays as JSON.

use serde_json::{Map, Value};

use super::{
    bindings::{fermyon::spin::variables, wasi::config::store},
    quoted,
};
use crate::wasm::guest_state::GuestState;

/// The module's configuration section, as the base rendered it to JSON.
fn section(state: &GuestState) -> Result<Map<String, Value>, String> {
    let caps = state.capabilities()?;
    match serde_json::from_str::<Value>(&caps.config) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Ok(Map::new()),
        Err(e) => Err(format!(
            "the module's configuration section is not readable: {e}"
        )),
    }
}

/// A configuration value as a variable's text; `null` is no value.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(value).ok(),
    }
}

/// Spin's rule for variable names: lowercase ASCII letters, digits and underscores,
/// starting with a letter.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl variables::Host for GuestState {
    async fn get(&mut self, name: String) -> Result<String, variables::Error> {
        if !valid_name(&name) {
            return Err(variables::Error::InvalidName(format!(
                "{}: variable names are lowercase letters, digits and underscores, starting with a letter",
                quoted(&name)
            )));
        }
        let section = section(self).map_err(variables::Error::Provider)?;
        section.get(&name).and_then(text).ok_or_else(|| {
            let module = self
                .capabilities()
                .map(|c| c.module.name.clone())
                .unwrap_or_default();
            variables::Error::Undefined(format!(
                "no variable {}; set `{name}` in [modules.{module}] of the base's configuration",
                quoted(&name)
            ))
        })
    }
}

impl store::Host for GuestState {
    async fn get(&mut self, key: String) -> Result<Option<String>, store::Error> {
        let section = section(self).map_err(store::Error::Upstream)?;
        Ok(section.get(&key).and_then(text))
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, store::Error> {
        let section = section(self).map_err(store::Error::Upstream)?;
        Ok(section
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spins_rule() {
        assert!(valid_name("greeting"));
        assert!(valid_name("api_key2"));
        for bad in ["", "Greeting", "2fast", "_x", "a-b", "a.b", "é"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn values_become_text() {
        let v: Value = serde_json::json!({"s": "hej", "n": 3, "b": true, "t": {"a": 1}, "z": null});
        assert_eq!(text(&v["s"]).as_deref(), Some("hej"));
        assert_eq!(text(&v["n"]).as_deref(), Some("3"));
        assert_eq!(text(&v["b"]).as_deref(), Some("true"));
        assert_eq!(text(&v["t"]).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(text(&v["z"]), None);
    }
}
