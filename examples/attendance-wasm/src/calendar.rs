//! Validation of the `YYYY-MM` months and `YYYY-MM-DD` dates the API exchanges.
//!
//! Dates stay strings in this format: it sorts chronologically and a month's dates share
//! its text as a prefix, which is all attendance needs from a calendar (and what its
//! key-value layout relies on).
//!
//! The native HR SaaS has the same rules in `examples/hr-saas/src/calendar.rs`. This module
//! keeps its own copy: it is built and shipped on its own, and its API is the only contract
//! it shares with the base's modules.

use koupleless_module::axum::extract::{Query, rejection::QueryRejection};
use serde::Deserialize;

use crate::api::ApiError;

/// The `?month=YYYY-MM` query of the routes that work on one month.
#[derive(Debug, Deserialize)]
pub(crate) struct MonthQuery {
    month: Option<String>,
}

/// The checked month of a `?month=` query; a missing or malformed one is the caller's 400.
pub(crate) fn required_month(
    query: Result<Query<MonthQuery>, QueryRejection>,
) -> Result<String, ApiError> {
    let Query(query) = query?;
    let month = query.month.ok_or_else(|| {
        ApiError::bad_request("missing query parameter `month`").with_detail("e.g. ?month=2024-10")
    })?;
    parse_month(&month)?;
    Ok(month)
}

/// Checks a `YYYY-MM` month.
fn parse_month(month: &str) -> Result<(u32, u32), ApiError> {
    let invalid = || {
        ApiError::bad_request(format!("invalid month `{month}`"))
            .with_detail("write the month as YYYY-MM, e.g. 2024-10")
    };
    let (year, mm) = month.split_once('-').ok_or_else(invalid)?;
    if year.len() != 4 || mm.len() != 2 {
        return Err(invalid());
    }
    let year = digits(year).ok_or_else(invalid)?;
    let mm = digits(mm).ok_or_else(invalid)?;
    if !(1..=12).contains(&mm) {
        return Err(invalid());
    }
    Ok((year, mm))
}

/// Checks a `YYYY-MM-DD` date and returns its `YYYY-MM` month.
pub(crate) fn month_of(date: &str) -> Result<&str, ApiError> {
    let invalid = || {
        ApiError::bad_request(format!("invalid date `{date}`"))
            .with_detail("write the date as YYYY-MM-DD, e.g. 2024-10-14")
    };
    let (month, dd) = date
        .get(..7)
        .zip(date.get(7..))
        .and_then(|(month, rest)| Some((month, rest.strip_prefix('-')?)))
        .ok_or_else(invalid)?;
    let (year, mm) = parse_month(month).map_err(|_| invalid())?;
    let day = match dd.len() {
        2 => digits(dd).ok_or_else(invalid)?,
        _ => return Err(invalid()),
    };
    if day == 0 || day > days_in_month(year, mm) {
        return Err(invalid());
    }
    Ok(month)
}

fn digits(text: &str) -> Option<u32> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(parse_month("2024-10").unwrap(), (2024, 10));
        for bad in [
            "2024-13", "2024-00", "24-10", "2024-1", "2024/10", "2024-+1", "",
        ] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(month_of("2024-10-31").unwrap(), "2024-10");
        assert_eq!(month_of("2024-02-29").unwrap(), "2024-02");
        for bad in [
            "2023-02-29",
            "2024-11-31",
            "2024-10-00",
            "2024-10-1",
            "2024-10",
            "2024-10-011",
            "2024-10x01",
            "2024-10-é",
        ] {
            assert!(month_of(bad).is_err(), "{bad}");
        }
    }
}
