//! Payroll: employees and monthly payslips, prorated by the days attendance recorded.
//!
//! | route | answer |
//! |---|---|
//! | `GET /payroll/employees` | a list of [`Employee`] |
//! | `GET /payroll/payslips/{employee_id}?month=YYYY-MM` | [`Payslip`]; 404 unknown employee, 502 attendance unavailable |
//!
//! Configuration, `[modules.payroll]`: see [`PayrollConfig`].

use std::sync::{Arc, PoisonError, RwLock};

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    routing::get,
};
use koupleless::{ClientError, Health, Manifest, Module, ModuleClient, ModuleContext, ModuleError};
use serde::{Deserialize, Serialize};

use crate::{api::ApiError, calendar};

/// Working days in a standard month under Chinese labour rules ((365 − 104) / 12), the
/// divisor of a daily wage.
pub const STANDARD_WORKING_DAYS: f64 = 21.75;

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
    pub id: u32,
    /// Full name.
    pub name: String,
    /// Gross salary for a full standard month.
    pub monthly_salary: f64,
}

/// Answer of `GET /payroll/payslips/{employee_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payslip {
    /// The employee.
    pub employee_id: u32,
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

/// The payroll module, mounted at `/payroll`; the base is not ready without it.
#[derive(Debug)]
pub struct Payroll {
    employees: Arc<[Employee]>,
    // Written by `start`, read by `router`, which the base calls right after it.
    config: RwLock<PayrollConfig>,
}

impl Payroll {
    /// Payroll for these employees.
    pub fn new(employees: impl IntoIterator<Item = Employee>) -> Self {
        Self {
            employees: employees.into_iter().collect(),
            config: RwLock::default(),
        }
    }

    /// Payroll for the three seeded employees, whose daily wages are 1000, 800 and 600.
    pub fn seeded() -> Self {
        let employee = |id, name: &str, monthly_salary| Employee {
            id,
            name: name.to_owned(),
            monthly_salary,
        };
        Self::new([
            employee(1, "Zhang Wei", 21_750.0),
            employee(2, "Li Na", 17_400.0),
            employee(3, "Wang Fang", 13_050.0),
        ])
    }
}

impl Default for Payroll {
    /// The [`seeded`](Self::seeded) module.
    fn default() -> Self {
        Self::seeded()
    }
}

#[derive(Clone)]
struct AppState {
    employees: Arc<[Employee]>,
    currency: Arc<str>,
    attendance: ModuleClient,
}

/// The part of attendance's answer payroll reads. Declared here rather than imported from
/// the attendance module, because each module is built and deployed on its own and only
/// the JSON is their contract.
#[derive(Deserialize)]
struct AttendanceDays {
    days_worked: u32,
}

#[async_trait::async_trait]
impl Module for Payroll {
    fn manifest(&self) -> Manifest {
        Manifest::parse("payroll", env!("CARGO_PKG_VERSION"), "/payroll")
            .expect("the payroll manifest is valid")
    }

    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        let config: PayrollConfig = ctx.config()?;
        let currency = &config.currency;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ModuleError::msg(format!(
                "modules.payroll.currency `{currency}` is not an ISO 4217 code such as CNY or USD"
            )));
        }
        tracing::info!(parent: ctx.span(), %currency, employees = self.employees.len(), "payroll started");
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        let config = self.config.read().unwrap_or_else(PoisonError::into_inner);
        let state = AppState {
            employees: Arc::clone(&self.employees),
            currency: Arc::from(config.currency.as_str()),
            attendance: ctx.client().clone(),
        };
        Router::new()
            .route("/employees", get(list_employees))
            .route("/payslips/{employee_id}", get(payslip))
            .with_state(state)
    }

    async fn health(&self) -> Health {
        Health::Up
    }
}

async fn list_employees(State(state): State<AppState>) -> Json<Vec<Employee>> {
    Json(state.employees.to_vec())
}

async fn payslip(
    State(state): State<AppState>,
    id: Result<Path<u32>, PathRejection>,
    query: Result<Query<calendar::MonthQuery>, QueryRejection>,
) -> Result<Json<Payslip>, ApiError> {
    let Path(employee_id) = id?;
    // Checked here so that a typo is the caller's 400, not attendance's failure.
    let month = calendar::required_month(query)?;
    let employee = state
        .employees
        .iter()
        .find(|e| e.id == employee_id)
        .ok_or_else(|| ApiError::not_found(format!("no employee with id {employee_id}")))?;

    let path = format!("/attendance/employees/{employee_id}/days?month={month}");
    let days = state
        .attendance
        .get_json::<AttendanceDays>(&path)
        .await
        .map_err(attendance_unavailable)?;

    // Days beyond the standard month are overtime, which is paid separately, not prorated.
    let ratio = (f64::from(days.days_worked) / STANDARD_WORKING_DAYS).min(1.0);
    let gross_pay = (employee.monthly_salary * ratio * 100.0).round() / 100.0;
    Ok(Json(Payslip {
        employee_id,
        name: employee.name.clone(),
        month,
        days_worked: days.days_worked,
        standard_working_days: STANDARD_WORKING_DAYS,
        monthly_salary: employee.monthly_salary,
        gross_pay,
        currency: state.currency.to_string(),
    }))
}

fn attendance_unavailable(err: ClientError) -> ApiError {
    // Whatever attendance answered (404 when it is not installed, 503 while it restarts),
    // payroll cannot compute the payslip: a gateway error tells the caller to retry later
    // instead of blaming its request.
    ApiError::new(
        axum::http::StatusCode::BAD_GATEWAY,
        "attendance unavailable: cannot count the days worked",
    )
    .with_detail(err.to_string())
}
