//! The HR SaaS base; run it with `cargo run --release -p example-hr-saas`.
//!
//! It serves payroll, attendance and recruitment on http://127.0.0.1:8080 and the admin API
//! on http://127.0.0.1:1238 until Ctrl-C. Configuration comes from `koupleless.toml` in the
//! working directory (or the file named by `KOUPLELESS_CONFIG`, e.g.
//! `examples/hr-saas/koupleless.example.toml`) and `KOUPLELESS_*` variables; payroll is a
//! required module unless `health.required_modules` says otherwise.

use example_hr_saas::{Attendance, Payroll, Recruitment, config_figment};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    koupleless::Base::builder()
        .figment(config_figment())
        .module(Payroll::default())
        .module(Attendance::default())
        .module(Recruitment::default())
        .run()
        .await?;
    Ok(())
}
