//! Any configuration text, and any value for a known key, loads or is refused with an error
//! naming the problem: never a panic.

use figment::{
    Figment,
    providers::{Format, Toml},
};
use koupleless_config::LoadedConfig;
use proptest::prelude::*;

/// Keys of every section, to put arbitrary values where the base reads them.
const KEYS: &[&str] = &[
    "server.listen",
    "server.header_read_timeout",
    "server.max_connections",
    "admin.token",
    "admin.allowed_hosts",
    "admin.max_artifact_mib",
    "health.listeners",
    "health.check_interval",
    "upgrade.strategy",
    "supervisor.max_restarts",
    "log.level",
    "wasm.max_memory_mib",
    "wasm.recycle_memory_percent",
    "wasm.cache_dir",
    "redis.url",
    "storage.url",
    "storage.options.aws_region",
    "rollout.max_parallel",
    "rollout.lease_ttl",
    "modules.payroll.strategy",
    "modules.payroll.version",
    "modules.payroll.max_concurrent_requests",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("[]".to_owned()),
        Just("[\"a\", 1]".to_owned()),
        Just("{ x = 1 }".to_owned()),
        "[0-9]{1,4}(ms|s|m|h|d)".prop_map(|d| format!("{d:?}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_loads_or_is_refused(text in "\\PC{0,300}") {
        let _ = LoadedConfig::from_figment(Figment::from(Toml::string(&text)));
    }

    #[test]
    fn any_value_for_a_known_key_loads_or_names_the_key(
        key in proptest::sample::select(KEYS),
        value in value(),
    ) {
        let (section, leaf) = key.rsplit_once('.').unwrap();
        let text = format!("[{section}]\n{leaf} = {value}\n");
        if let Err(e) = LoadedConfig::from_figment(Figment::from(Toml::string(&text))) {
            let message = e.to_string();
            prop_assert!(!message.is_empty());
        }
    }
}
