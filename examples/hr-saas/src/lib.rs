//! The HR SaaS of the Koupleless case study: one base hosting three native modules.
//!
//! * [`Payroll`] (`/payroll`, required; crate `examples/payroll`): employees and payslips,
//!   kept in SQL (the module's own SQLite by default); it asks attendance for the days worked
//!   through an in-process call. The same crate builds as a wasm component.
//! * [`Attendance`] (`/attendance`): check-ins and days worked per month.
//! * [`Recruitment`] (`/recruitment`): openings and candidates, with a background sweep that
//!   closes filled openings.
//!
//! Attendance and recruitment keep their data in memory; payroll shows the base's databases.

use std::path::Path;

use koupleless::{
    config::LoadedConfig,
    figment::{Figment, providers::Serialized},
};

mod api;
pub mod attendance;
// figment::Jail's closures return figment::Error, which is large by design.
mod calendar;
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod config_tests;
pub mod recruitment;

pub use attendance::Attendance;
pub use example_payroll as payroll;
pub use payroll::Payroll;
pub use recruitment::Recruitment;

/// Modules the base waits for before it reports ready, unless `health.required_modules` is set.
pub const DEFAULT_REQUIRED_MODULES: &[&str] = &["payroll"];

/// The base's configuration sources: defaults → `koupleless.toml` (or `$KOUPLELESS_CONFIG`)
/// → `KOUPLELESS_*` variables, with payroll required by default.
pub fn config_figment() -> Figment {
    LoadedConfig::figment_with_defaults(example_defaults())
}

/// [`config_figment`] with an explicit configuration file (absent is fine).
pub fn config_figment_with_file(file: &Path) -> Figment {
    LoadedConfig::figment_with_file_and_defaults(file, example_defaults())
}

fn example_defaults() -> Serialized<&'static [&'static str]> {
    Serialized::default("health.required_modules", DEFAULT_REQUIRED_MODULES)
}
