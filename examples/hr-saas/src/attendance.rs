//! Attendance: records check-ins and counts the days each employee worked in a month.
//!
//! | route | answer |
//! |---|---|
//! | `GET /attendance/employees/{id}/days?month=YYYY-MM` | [`DaysWorked`] |
//! | `POST /attendance/checkins` with a [`CheckIn`] | 201 [`CheckInRecorded`] (200 if already recorded) |
//!
//! Every answer names the version that served it in an `x-served-by` header
//! (`attendance@0.1.0`), as the wasm build of this module (`examples/attendance-wasm`) does,
//! so that an upgrade from one to the other can be watched request by request.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode},
    middleware::map_response,
    response::Response,
    routing::{get, post},
};
use koupleless::{Health, Manifest, Module, ModuleContext};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::{api::ApiError, calendar};

/// The response header naming the module version that answered.
pub const SERVED_BY: &str = "x-served-by";

/// Dates checked in, per employee id; `BTreeSet` so a repeated check-in counts once.
type Store = Arc<RwLock<BTreeMap<u32, BTreeSet<String>>>>;

/// The attendance module, mounted at `/attendance`.
#[derive(Clone, Debug)]
pub struct Attendance {
    store: Store,
}

impl Attendance {
    /// Attendance with no check-ins at all; its health is degraded until the first one.
    pub fn empty() -> Self {
        Self {
            store: Store::default(),
        }
    }

    /// Attendance seeded with October 2024 for employees 1, 2 and 3 (19, 17 and 10 days).
    pub fn seeded() -> Self {
        // October 2024 in China: the National Day holiday runs 1–7, Saturday the 12th is a
        // make-up working day, which leaves 19 working days.
        const OCTOBER: [u32; 19] = [
            8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 28, 29, 30, 31,
        ];
        let dates = |days: &[u32]| -> BTreeSet<String> {
            days.iter().map(|d| format!("2024-10-{d:02}")).collect()
        };
        let seed = BTreeMap::from([
            (1, dates(&OCTOBER)),
            // Two days of leave at the end of the month.
            (2, dates(&OCTOBER[..17])),
            // Joined on the 18th.
            (3, dates(&OCTOBER[9..])),
        ]);
        Self {
            store: Arc::new(RwLock::new(seed)),
        }
    }
}

impl Default for Attendance {
    /// The [`seeded`](Self::seeded) module.
    fn default() -> Self {
        Self::seeded()
    }
}

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

#[async_trait::async_trait]
impl Module for Attendance {
    fn manifest(&self) -> Manifest {
        Manifest::parse("attendance", env!("CARGO_PKG_VERSION"), "/attendance")
            .expect("the attendance manifest is valid")
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        let served_by = HeaderValue::from_str(&ctx.manifest().key().to_string())
            .expect("a module's name@version is a valid header value");
        Router::new()
            .route("/employees/{id}/days", get(days_worked))
            .route("/checkins", post(check_in))
            .with_state(Arc::clone(&self.store))
            .layer(map_response(move |mut response: Response| {
                let served_by = served_by.clone();
                async move {
                    response.headers_mut().insert(SERVED_BY, served_by);
                    response
                }
            }))
    }

    async fn health(&self) -> Health {
        if self.store.read().await.is_empty() {
            // Payslips computed now would all be zero, so say so rather than stay silent.
            Health::Degraded("no check-ins recorded yet".to_owned())
        } else {
            Health::Up
        }
    }
}

async fn days_worked(
    State(store): State<Store>,
    id: Result<Path<u32>, PathRejection>,
    query: Result<Query<calendar::MonthQuery>, QueryRejection>,
) -> Result<Json<DaysWorked>, ApiError> {
    let Path(employee_id) = id?;
    let month = calendar::required_month(query)?;
    let days_worked = count_days(&*store.read().await, employee_id, &month);
    Ok(Json(DaysWorked {
        employee_id,
        month,
        days_worked,
    }))
}

async fn check_in(
    State(store): State<Store>,
    body: Result<Json<CheckIn>, JsonRejection>,
) -> Result<(StatusCode, Json<CheckInRecorded>), ApiError> {
    let Json(CheckIn { employee_id, date }) = body?;
    let month = calendar::month_of(&date)?.to_owned();
    let mut store = store.write().await;
    let new = store.entry(employee_id).or_default().insert(date.clone());
    let days_worked = count_days(&store, employee_id, &month);
    // A clock that retries must not count a day twice, nor see an error for it.
    let status = if new {
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

fn count_days(store: &BTreeMap<u32, BTreeSet<String>>, employee_id: u32, month: &str) -> u32 {
    let prefix = format!("{month}-");
    let count = store.get(&employee_id).map_or(0, |dates| {
        dates.iter().filter(|d| d.starts_with(&prefix)).count()
    });
    u32::try_from(count).unwrap_or(u32::MAX)
}
