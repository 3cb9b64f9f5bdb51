//! Payroll: employees and monthly payslips, prorated by the days attendance recorded. The
//! employees live in the module's database: its own SQLite, kept by the base across versions,
//! or a PostgreSQL database of the base when `[modules.payroll] database` names one. The same
//! crate is linked into the HR SaaS base and built as a wasm component:
//!
//! ```text
//! cargo build -p example-payroll --target wasm32-wasip2 --profile wasm-module
//! ```
//!
//! | route | answer |
//! |---|---|
//! | `GET /payroll/employees` | a list of [`Employee`] |
//! | `POST /payroll/employees` with a [`NewEmployee`] | 201 [`Employee`] |
//! | `POST /payroll/employees/import` with a list of [`NewEmployee`] | 201 [`Imported`]: all of them in one transaction, or none |
//! | `GET /payroll/employees/{employee_id}` | [`Employee`]; 404 unknown employee |
//! | `GET /payroll/payslips/{employee_id}?month=YYYY-MM` | [`Payslip`]; 404 unknown employee, 502 attendance unavailable |
//!
//! Every answer names the version that served it in an `x-served-by` header. Configuration,
//! `[modules.payroll]`: see [`PayrollConfig`]. The schema is in `migrations/`, applied by the
//! base before a version starts.

use std::sync::{PoisonError, RwLock};

use koupleless_module::{
    ClientError, Health, Module, ModuleContext, ModuleError,
    axum::{
        Json, Router,
        extract::{
            Path, Query, State,
            rejection::{JsonRejection, PathRejection, QueryRejection},
        },
        http::{HeaderValue, StatusCode},
        middleware::map_response,
        response::{IntoResponse, Response},
        routing::{get, post},
    },
    sql::{Database, Rows, SqlError, Value},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Working days in a standard month under Chinese labour rules ((365 − 104) / 12), the
/// divisor of a daily wage.
pub const STANDARD_WORKING_DAYS: f64 = 21.75;

/// The response header naming the module version that answered.
pub const SERVED_BY: &str = "x-served-by";

/// `[modules.payroll]`: the module's own configuration keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PayrollConfig {
    /// ISO 4217 code printed on payslips.
    pub currency: String,
}

impl Default for PayrollConfig {
    fn default() -> Self {
        Self {
            currency: "CNY".to_owned(),
        }
    }
}

/// An employee on the payroll.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Employee {
    /// The id attendance knows the employee by.
    pub id: i64,
    /// Full name.
    pub name: String,
    /// Gross salary for a full standard month.
    pub monthly_salary: f64,
}

/// Body of `POST /payroll/employees`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEmployee {
    /// Full name, 1 to 200 characters.
    pub name: String,
    /// Gross salary for a full standard month, not negative.
    pub monthly_salary: f64,
    /// The first day, `YYYY-MM-DD`, if known.
    #[serde(default)]
    pub hired_on: Option<String>,
}

/// Answer of `GET /payroll/payslips/{employee_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payslip {
    /// The employee.
    pub employee_id: i64,
    /// The employee's name.
    pub name: String,
    /// The month paid, `YYYY-MM`.
    pub month: String,
    /// Days attendance recorded for the month.
    pub days_worked: u32,
    /// The divisor of the daily wage, [`STANDARD_WORKING_DAYS`].
    pub standard_working_days: f64,
    /// Gross salary for a full month.
    pub monthly_salary: f64,
    /// `monthly_salary × days_worked / standard_working_days`, at most `monthly_salary`,
    /// rounded to cents.
    pub gross_pay: f64,
    /// The configured currency.
    pub currency: String,
}

/// The payroll module, mounted at `/payroll`.
#[derive(Debug, Default)]
pub struct Payroll {
    // Written by `start`, read by `router`, which the base calls right after it.
    config: RwLock<PayrollConfig>,
}

#[derive(Clone)]
struct AppState {
    ctx: ModuleContext,
    currency: String,
}

/// The part of attendance's answer payroll reads. Declared here rather than imported from
/// the attendance module, because each module is built and deployed on its own and only
/// the JSON is their contract.
#[derive(Deserialize)]
struct AttendanceDays {
    days_worked: u32,
}

#[koupleless_module::module(name = "payroll", prefix = "/payroll")]
#[koupleless_module::async_trait]
impl Module for Payroll {
    // ANCHOR: migrations
    fn migrations(&self) -> Vec<koupleless_module::sql::Migration> {
        koupleless_module::migrations!()
    }
    // ANCHOR_END: migrations

    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        let config: PayrollConfig = ctx.config()?;
        let currency = &config.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ModuleError::msg(format!(
                "modules.payroll.currency `{currency}` is not an ISO 4217 code such as CNY or USD"
            )));
        }
        let employees = count(ctx.db())
            .await
            .map_err(|e| ModuleError::msg(format!("payroll cannot read its employees: {e}")))?;
        tracing::info!(%currency, employees, "payroll started");
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        let config = self.config.read().unwrap_or_else(PoisonError::into_inner);
        let served_by = HeaderValue::from_str(&ctx.manifest().key().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("payroll"));
        let state = AppState {
            ctx: ctx.clone(),
            currency: config.currency.clone(),
        };
        Router::new()
            .route("/employees", get(list_employees).post(hire))
            .route("/employees/import", post(import))
            .route("/employees/{employee_id}", get(one_employee))
            .route("/payslips/{employee_id}", get(payslip))
            .with_state(state)
            .layer(map_response(move |mut response: Response| {
                let served_by = served_by.clone();
                async move {
                    response.headers_mut().insert(SERVED_BY, served_by);
                    response
                }
            }))
    }

    async fn health(&self) -> Health {
        Health::Up
    }
}

async fn count(db: &Database) -> Result<i64, SqlError> {
    let rows = db.query("SELECT COUNT(*) AS n FROM employee", &[]).await?;
    Ok(rows
        .first()
        .and_then(|r| r.get("n"))
        .and_then(Value::as_i64)
        .unwrap_or(0))
}

fn employees(rows: &Rows) -> Vec<Employee> {
    rows.iter()
        .filter_map(|row| {
            Some(Employee {
                id: row.get("id")?.as_i64()?,
                name: row.get("name")?.as_str()?.to_owned(),
                monthly_salary: row.get("monthly_salary")?.as_f64()?,
            })
        })
        .collect()
}

async fn list_employees(State(state): State<AppState>) -> Result<Json<Vec<Employee>>, ApiError> {
    let rows = state
        .ctx
        .db()
        .query(
            "SELECT id, name, monthly_salary FROM employee ORDER BY id",
            &[],
        )
        .await?;
    Ok(Json(employees(&rows)))
}

/// Hires an employee: the next id, in one statement (atomic on SQLite; on PostgreSQL two
/// concurrent hires may pick the same id, and the loser tries again).
async fn hire(
    State(state): State<AppState>,
    body: Result<Json<NewEmployee>, JsonRejection>,
) -> Result<(StatusCode, Json<Employee>), ApiError> {
    let Json(new) = body?;
    validate(&new)?;
    let name = new.name.trim();
    let params = [
        Value::from(name),
        Value::from(new.monthly_salary),
        Value::from(new.hired_on.clone()),
    ];
    let mut attempt = 0;
    let rows = loop {
        attempt += 1;
        match state
            .ctx
            .db()
            .query(
                "INSERT INTO employee (id, name, monthly_salary, hired_on) \
                 VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM employee), $1, $2, $3) \
                 RETURNING id, name, monthly_salary",
                &params,
            )
            .await
        {
            Err(SqlError::Constraint(_)) if attempt < 5 => continue,
            other => break other?,
        }
    };
    let employee = employees(&rows).pop().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the insert answered no row",
        )
    })?;
    Ok((StatusCode::CREATED, Json(employee)))
}

/// Answer of `POST /payroll/employees/import`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// Employees added.
    pub imported: u64,
}

/// The most employees one import takes.
pub const MAX_IMPORT: usize = 10_000;

async fn one_employee(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Employee>, ApiError> {
    let Path(employee_id) = id?;
    let rows = state
        .ctx
        .db()
        .query(
            "SELECT id, name, monthly_salary FROM employee WHERE id = $1",
            &[Value::from(employee_id)],
        )
        .await?;
    employees(&rows)
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no employee with id {employee_id}")))
}

/// Adds every employee of the list in one transaction: a failure (a bad entry, a lost
/// connection, the base killed half-way) leaves none of them.
async fn import(
    State(state): State<AppState>,
    body: Result<Json<Vec<NewEmployee>>, JsonRejection>,
) -> Result<(StatusCode, Json<Imported>), ApiError> {
    let Json(list) = body?;
    if list.len() > MAX_IMPORT {
        return Err(ApiError::bad_request(format!(
            "{} employees; an import takes at most {MAX_IMPORT}",
            list.len()
        )));
    }
    for new in &list {
        validate(new)?;
    }
    let mut tx = state.ctx.db().transaction().await?;
    let first = tx
        .query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM employee", &[])
        .await?
        .first()
        .and_then(|r| r.get("next"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    tracing::info!(employees = list.len(), "import started");
    for (i, new) in (0i64..).zip(&list) {
        tx.execute(
            "INSERT INTO employee (id, name, monthly_salary, hired_on) VALUES ($1, $2, $3, $4)",
            &[
                Value::from(first + i),
                Value::from(new.name.trim()),
                Value::from(new.monthly_salary),
                Value::from(new.hired_on.clone()),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Imported {
            imported: list.len() as u64,
        }),
    ))
}

fn validate(new: &NewEmployee) -> Result<(), ApiError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "`name` must have 1 to 200 characters",
        ));
    }
    if !new.monthly_salary.is_finite() || new.monthly_salary < 0.0 {
        return Err(ApiError::bad_request(
            "`monthly_salary` must be a number, not negative",
        ));
    }
    if let Some(day) = new.hired_on.as_ref().filter(|day| !is_date(day)) {
        return Err(ApiError::bad_request(format!(
            "invalid date `{day}`; write YYYY-MM-DD"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

async fn payslip(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    query: Result<Query<MonthQuery>, QueryRejection>,
) -> Result<Json<Payslip>, ApiError> {
    let Path(employee_id) = id?;
    let Query(query) = query?;
    // Checked here so that a typo is the caller's 400, not attendance's failure.
    let month = query.month.ok_or_else(|| {
        ApiError::bad_request("missing query parameter `month`").with_detail("e.g. ?month=2024-10")
    })?;
    if !is_month(&month) {
        return Err(ApiError::bad_request(format!("invalid month `{month}`"))
            .with_detail("write the month as YYYY-MM, e.g. 2024-10"));
    }
    let rows = state
        .ctx
        .db()
        .query(
            "SELECT id, name, monthly_salary FROM employee WHERE id = $1",
            &[Value::from(employee_id)],
        )
        .await?;
    let employee = employees(&rows)
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("no employee with id {employee_id}")))?;

    let path = format!("/attendance/employees/{employee_id}/days?month={month}");
    let days = state
        .ctx
        .client()
        .get_json::<AttendanceDays>(&path)
        .await
        .map_err(attendance_unavailable)?;

    // Days beyond the standard month are overtime, which is paid separately, not prorated.
    let ratio = (f64::from(days.days_worked) / STANDARD_WORKING_DAYS).min(1.0);
    let gross_pay = (employee.monthly_salary * ratio * 100.0).round() / 100.0;
    Ok(Json(Payslip {
        employee_id,
        name: employee.name,
        month,
        days_worked: days.days_worked,
        standard_working_days: STANDARD_WORKING_DAYS,
        monthly_salary: employee.monthly_salary,
        gross_pay,
        currency: state.currency,
    }))
}

fn attendance_unavailable(err: ClientError) -> ApiError {
    // Whatever attendance answered (404 when it is not installed, 503 while it restarts),
    // payroll cannot compute the payslip: a gateway error tells the caller to retry later
    // instead of blaming its request.
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "attendance unavailable: cannot count the days worked",
    )
    .with_detail(err.to_string())
}

/// `YYYY-MM` with a month from 01 to 12.
fn is_month(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && matches!(text[5..].parse::<u8>(), Ok(1..=12))
        && b[5..].iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DD` with a plausible day (the database keeps it as text).
fn is_date(text: &str) -> bool {
    text.len() == 10
        && text.is_char_boundary(7)
        && is_month(&text[..7])
        && text.as_bytes()[7] == b'-'
        && text.as_bytes()[8..].iter().all(u8::is_ascii_digit)
        && matches!(text[8..].parse::<u8>(), Ok(1..=31))
}

/// An error answered as `{"error": ..., "detail": ...}`, the shape the base itself uses.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: String,
    detail: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            detail: None,
        }
    }

    fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }

    fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.detail {
            Some(detail) => json!({ "error": self.error, "detail": detail }),
            None => json!({ "error": self.error }),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> Self {
        let status = match e {
            SqlError::Timeout(_) | SqlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, "the payroll database failed").with_detail(e.to_string())
    }
}

// axum answers extractor failures in plain text; these keep every error of the API in JSON.

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request("invalid path").with_detail(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid query string").with_detail(rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), "invalid JSON body").with_detail(rejection.body_text())
    }
}
