//! Testing with koupleless: unit-test a module without a base ([`ModuleHarness`], from
//! `koupleless-module`), and start a real base in a test with settings made for tests
//! ([`test_figment`]).
//!
//! ```
//! # use koupleless::{Module, Manifest, ModuleContext, testing::ModuleHarness};
//! # use axum::{Router, routing::get};
//! struct Hello;
//! #[async_trait::async_trait]
//! impl Module for Hello {
//!     fn manifest(&self) -> Manifest { Manifest::parse("hello", "1.0.0", "/hello").unwrap() }
//!     fn router(&self, _: &ModuleContext) -> Router { Router::new().route("/", get(|| async { "hi" })) }
//! }
//! # tokio_test_block(async {
//! let harness = ModuleHarness::builder(Hello).start().await.unwrap();
//! let response = harness.get("/hello").await;
//! assert_eq!(response.status, 200);
//! assert_eq!(response.text(), "hi");
//! harness.stop().await.unwrap();
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
pub use koupleless_module::testing::{HarnessBuilder, ModuleHarness, TestResponse};

/// Settings for a base under test: ephemeral ports on 127.0.0.1, health ticks in tens of
/// milliseconds, no shutdown delay, `warn` logs. Merge test-specific keys on top.
pub const TEST_SETTINGS: &str = r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[health]
tick_interval = "50ms"
check_interval = "100ms"
[shutdown]
drain_delay = "0s"
[log]
level = "warn"
[storage]
enabled = false
"#;

/// The base's defaults with [`TEST_SETTINGS`] on top, and neither a configuration file nor
/// `KOUPLELESS_*` variables: a test's base does not depend on the machine it runs on. Its
/// `data.dir` (the modules' own databases) is a new directory under the system's temporary
/// directory, so test bases share no data unless a test sets `data.dir` itself. Pass it to
/// `Base::builder().figment(..)`, merged with the test's own keys.
pub fn test_figment() -> Figment {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = std::env::temp_dir()
        .join("koupleless-test-data")
        .join(format!("{}-{n}", std::process::id()));
    Figment::from(Serialized::defaults(koupleless_config::Config::default()))
        .merge(Toml::string(TEST_SETTINGS))
        .merge(Serialized::default("data.dir", data))
}
