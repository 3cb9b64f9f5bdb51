//! Attendance as a module compiled to WebAssembly: the routes and JSON of the native HR SaaS
//! attendance module, with its check-ins kept in the base's key-value store so that they
//! survive upgrades and every instance sees the same ones.
//!
//! Build the component from the repository root:
//!
//! ```text
//! cargo build -p example-attendance-wasm --target wasm32-wasip2 --profile wasm-module
//! ```
//!
//! and install `target/wasm32-wasip2/wasm-module/example_attendance_wasm.wasm` into a running
//! base (for instance `cargo run --release -p example-hr-saas`) through its admin API:
//!
//! ```text
//! curl -s 127.0.0.1:1238/installBiz -H 'content-type: application/json' \
//!   -d "{\"bizUrl\": \"file://$PWD/target/wasm32-wasip2/wasm-module/example_attendance_wasm.wasm\"}"
//! ```
//!
//! It replaces the native attendance with no failed request; payroll then calls it in
//! process as before.
//!
//! | route | answer |
//! |---|---|
//! | `GET /attendance/employees/{id}/days?month=YYYY-MM` | [`DaysWorked`] |
//! | `POST /attendance/checkins` with a [`CheckIn`] | 201 [`CheckInRecorded`] (200 if already recorded) |
//!
//! Every answer names the version that served it in an `x-served-by` header
//! (`attendance@2.0.0`). Configuration, `[modules.attendance]`: see [`AttendanceConfig`].

use std::sync::OnceLock;

use koupleless_module::{
    Health, Module, ModuleContext, ModuleError,
    axum::{
        Json, Router,
        extract::{
            Path, Query, State,
            rejection::{JsonRejection, PathRejection, QueryRejection},
        },
        http::{HeaderValue, StatusCode},
        middleware::map_response,
        response::Response,
        routing::{get, post},
    },
};
use serde::{Deserialize, Serialize};

use crate::{api::ApiError, check_ins::CheckIns};

mod api;
mod calendar;
mod check_ins;

/// The response header naming the module version that answered.
pub const SERVED_BY: &str = "x-served-by";

/// `[modules.attendance]`: the module's own configuration keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttendanceConfig {
    /// On start, when no check-in is stored at all, record October 2024 for employees 1, 2
    /// and 3 (19, 17 and 10 days), as the native module starts with.
    pub seed: bool,
}

impl Default for AttendanceConfig {
    fn default() -> Self {
        Self { seed: true }
    }
}

// ANCHOR: module
/// The attendance module, mounted at `/attendance`.
///
/// A wasm base creates it with `Default` in every instance and calls `start` there; the
/// check-ins themselves live in the key-value store, never in the instance.
#[derive(Debug, Default)]
pub struct Attendance {
    /// Set by `start`, read by `health`.
    check_ins: OnceLock<CheckIns>,
}
// ANCHOR_END: module

/// Body of `POST /attendance/checkins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    /// Who checked in.
    pub employee_id: u32,
    /// The working day, `YYYY-MM-DD`.
    pub date: String,
}

/// Answer to a check-in: the record and the month's new total.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInRecorded {
    /// Who checked in.
    pub employee_id: u32,
    /// The working day, `YYYY-MM-DD`.
    pub date: String,
    /// The date's month, `YYYY-MM`.
    pub month: String,
    /// Days worked in that month, this one included.
    pub days_worked: u32,
}

/// Answer of `GET /attendance/employees/{id}/days`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaysWorked {
    /// The employee.
    pub employee_id: u32,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Distinct days with a check-in in that month (0 when there are none).
    pub days_worked: u32,
}

// ANCHOR: impl
#[koupleless_module::module(name = "attendance", version = "2.0.0", prefix = "/attendance")]
#[koupleless_module::async_trait]
impl Module for Attendance {
    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        let config: AttendanceConfig = ctx.config()?;
        let check_ins = CheckIns::new(ctx.kv().clone());
        // Every instance runs `start`; only the first one to find the store empty seeds
        // it (two racing ones write the same keys, which is harmless).
        if config.seed && check_ins.is_empty().await? {
            let written = check_ins.seed_october_2024().await?;
            tracing::info!(check_ins = written, "seeded October 2024");
        }
        // A restart of this version starts again on the same store.
        let _ = self.check_ins.set(check_ins);
        tracing::info!("attendance started");
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        let served_by = HeaderValue::from_str(&ctx.manifest().key().to_string())
            .expect("a module's name@version is a valid header value");
        Router::new()
            .route("/employees/{id}/days", get(days_worked))
            .route("/checkins", post(check_in))
            .with_state(CheckIns::new(ctx.kv().clone()))
            .layer(map_response(move |mut response: Response| {
                let served_by = served_by.clone();
                async move {
                    response.headers_mut().insert(SERVED_BY, served_by);
                    response
                }
            }))
    }

    async fn health(&self) -> Health {
        let Some(check_ins) = self.check_ins.get() else {
            return Health::Down("not started".to_owned());
        };
        match check_ins.is_empty().await {
            // Payslips computed now would all be zero, so say so rather than stay silent.
            Ok(true) => Health::Degraded("no check-ins recorded yet".to_owned()),
            Ok(false) => Health::Up,
            Err(e) => Health::Down(format!("check-in store unavailable: {e}")),
        }
    }
}
// ANCHOR_END: impl

async fn days_worked(
    State(check_ins): State<CheckIns>,
    id: Result<Path<u32>, PathRejection>,
    query: Result<Query<calendar::MonthQuery>, QueryRejection>,
) -> Result<Json<DaysWorked>, ApiError> {
    let Path(employee_id) = id?;
    let month = calendar::required_month(query)?;
    let days_worked = check_ins.days_in(employee_id, &month).await?;
    Ok(Json(DaysWorked {
        employee_id,
        month,
        days_worked,
    }))
}

async fn check_in(
    State(check_ins): State<CheckIns>,
    body: Result<Json<CheckIn>, JsonRejection>,
) -> Result<(StatusCode, Json<CheckInRecorded>), ApiError> {
    let Json(CheckIn { employee_id, date }) = body?;
    let month = calendar::month_of(&date)?.to_owned();
    let new = check_ins.record(employee_id, &date).await?;
    let days_worked = check_ins.days_in(employee_id, &month).await?;
    // A clock that retries must not count a day twice, nor see an error for it.
    let status = if new {
        tracing::info!(employee_id, %date, days_worked, "check-in recorded");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(CheckInRecorded {
            employee_id,
            date,
            month,
            days_worked,
        }),
    ))
}
