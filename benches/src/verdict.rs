//! Targets and their verdicts. A bench collects every target it measures, runs its error
//! checks, and only then calls [`Verdicts::finish`]: that prints one line per target and
//! fails the bench (a non-zero exit from `cargo bench`) when any target is missed. A
//! verdict is never printed for a run whose checks failed.

use std::fmt;

use anyhow::bail;

/// Which side of the threshold meets the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    AtLeast,
    AtMost,
}

/// One target and what the run measured.
#[derive(Clone, Debug)]
pub struct Check {
    what: String,
    measured: f64,
    threshold: f64,
    direction: Direction,
    unit: &'static str,
}

impl Check {
    /// Whether the measurement meets the target.
    pub fn met(&self) -> bool {
        match self.direction {
            Direction::AtLeast => self.measured >= self.threshold,
            Direction::AtMost => self.measured <= self.threshold,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.direction {
            Direction::AtLeast => "≥",
            Direction::AtMost => "≤",
        };
        let verdict = if self.met() { "met" } else { "MISSED" };
        write!(
            f,
            "{}: {} {} (target {sign} {} {}): {verdict}",
            self.what,
            number(self.measured),
            self.unit,
            number(self.threshold),
            self.unit,
        )
    }
}

/// Three significant decimals for ratios, whole numbers for large values.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// The targets of one bench run.
#[derive(Debug, Default)]
#[must_use = "call finish() after the run's error checks, or the verdict is lost"]
pub struct Verdicts {
    checks: Vec<Check>,
}

impl Verdicts {
    /// No targets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `what` meets its target when `measured ≥ threshold`.
    pub fn at_least(
        &mut self,
        what: impl Into<String>,
        measured: f64,
        threshold: f64,
        unit: &'static str,
    ) {
        self.push(what.into(), measured, threshold, Direction::AtLeast, unit);
    }

    /// `what` meets its target when `measured ≤ threshold`.
    pub fn at_most(
        &mut self,
        what: impl Into<String>,
        measured: f64,
        threshold: f64,
        unit: &'static str,
    ) {
        self.push(what.into(), measured, threshold, Direction::AtMost, unit);
    }

    fn push(
        &mut self,
        what: String,
        measured: f64,
        threshold: f64,
        direction: Direction,
        unit: &'static str,
    ) {
        self.checks.push(Check {
            what,
            measured,
            threshold,
            direction,
            unit,
        });
    }

    /// The checks so far.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Prints every target with its verdict and fails when one is missed (a measurement
    /// that is not a number counts as missed). Call it last, after the run's own checks.
    pub fn finish(self) -> anyhow::Result<()> {
        println!();
        println!("## Targets");
        println!();
        for check in &self.checks {
            println!("- {check}");
        }
        let missed: Vec<&Check> = self.checks.iter().filter(|c| !c.met()).collect();
        if missed.is_empty() {
            println!();
            println!("All {} target(s) met.", self.checks.len());
            return Ok(());
        }
        let names: Vec<&str> = missed.iter().map(|c| c.what.as_str()).collect();
        bail!(
            "{} of {} target(s) missed: {}",
            missed.len(),
            self.checks.len(),
            names.join("; ")
        )
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_fails_and_names_it() {
        let mut v = Verdicts::new();
        v.at_least("ratio", 0.97, 0.98, "");
        v.at_most("latency", 90.0, 100.0, "ms");
        let err = v.finish().unwrap_err().to_string();
        assert!(err.contains("1 of 2") && err.contains("ratio"), "{err}");
    }

    #[test]
    fn met_targets_pass_and_nan_misses() {
        let mut v = Verdicts::new();
        v.at_least("ratio", 0.98, 0.98, "");
        v.at_most("latency", 100.0, 100.0, "ms");
        v.finish().unwrap();
        let mut v = Verdicts::new();
        v.at_least("nothing measured", f64::NAN, 0.5, "");
        assert!(v.finish().is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
