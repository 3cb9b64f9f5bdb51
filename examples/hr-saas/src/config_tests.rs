//! The example's configuration layering: payroll is required unless the user says otherwise,
//! and the sample file matches the base's configuration keys.

use std::{path::PathBuf, time::Duration};

use koupleless::config::LoadedConfig;

use crate::{config_figment, config_figment_with_file, payroll::PayrollConfig};

fn required(figment: figment::Figment) -> Vec<String> {
    LoadedConfig::from_figment(figment)
        .expect("valid configuration")
        .config
        .health
        .required_modules
}

#[test]
fn payroll_is_required_by_default() {
    figment::Jail::expect_with(|_jail| {
        assert_eq!(required(config_figment()), ["payroll"]);
        Ok(())
    });
}

#[test]
fn the_file_and_the_environment_override_the_default() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "koupleless.toml",
            "[health]\nrequired_modules = [\"payroll\", \"attendance\"]\n",
        )?;
        assert_eq!(required(config_figment()), ["payroll", "attendance"]);

        jail.create_file("none.toml", "[health]\nrequired_modules = []\n")?;
        jail.set_env("KOUPLELESS_CONFIG", "none.toml");
        assert!(required(config_figment()).is_empty());

        jail.set_env("KOUPLELESS_HEALTH__REQUIRED_MODULES", "[attendance]");
        assert_eq!(required(config_figment()), ["attendance"]);
        Ok(())
    });
}

#[test]
fn the_sample_file_is_valid() {
    figment::Jail::expect_with(|_jail| {
        let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("koupleless.example.toml");
        let loaded = LoadedConfig::from_figment(config_figment_with_file(&sample))
            .expect("the sample configuration is valid");
        let config = &loaded.config;
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:1238");
        assert_eq!(config.health.required_modules, ["payroll"]);
        assert_eq!(config.shutdown.drain_delay, Duration::from_secs(1));
        let payroll: PayrollConfig = loaded
            .figment
            .focus("modules.payroll")
            .extract()
            .expect("payroll section");
        assert_eq!(payroll.currency, "CNY");
        // The base reads `enabled`, `version` and `strategy` from the same section.
        assert!(loaded.module("recruitment").settings().enabled);
        Ok(())
    });
}
