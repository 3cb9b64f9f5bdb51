//! Whatever text a client, a manifest or a tool sends, parsing answers a value or an error:
//! it never panics, and what it accepts keeps the rules.

use koupleless_wire::{InstallRequest, Manifest, ModuleKey, Strategy};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_manifest_that_parses_keeps_the_rules(
        name in "\\PC{0,70}|[a-z0-9_-]{1,70}",
        version in "\\PC{0,20}|[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        prefix in "\\PC{0,40}|(/[a-z.~_-]{1,6}){1,4}",
    ) {
        if let Ok(manifest) = Manifest::parse(name, &version, prefix) {
            prop_assert!(manifest.validate().is_ok());
            prop_assert!(manifest.prefix.starts_with('/') && !manifest.prefix.ends_with('/'));
            prop_assert!(!manifest.prefix.split('/').any(|s| s == "." || s == ".."));
            prop_assert!(manifest.name.len() <= 63);
        }
    }

    #[test]
    fn a_module_key_reads_back_what_it_writes(text in "\\PC{0,60}|[a-z]{1,8}@[0-9]\\.[0-9]\\.[0-9](-[a-z0-9]{1,4})?") {
        if let Ok(key) = text.parse::<ModuleKey>() {
            prop_assert_eq!(key.to_string().parse::<ModuleKey>().ok(), Some(key));
        }
    }

    #[test]
    fn a_strategy_reads_back_what_it_writes(text in "\\PC{0,24}") {
        if let Ok(strategy) = text.parse::<Strategy>() {
            prop_assert_eq!(strategy.to_string().parse::<Strategy>().ok(), Some(strategy));
        }
    }

    #[test]
    fn install_requests_of_any_shape_are_answered(
        body in "\\PC{0,200}|\\{(\"[a-zA-Z]{1,10}\": ?(\"\\PC{0,20}\"|[0-9]{1,5}|null|true|\\[\\]), ?){0,5}\"name\": \"[a-z]{1,8}\"\\}",
    ) {
        let _ = serde_json::from_str::<InstallRequest>(&body);
    }
}
