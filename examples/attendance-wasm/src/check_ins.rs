//! Check-ins in the module's key-value store, which the base keeps for the module: every
//! instance of every version reads and writes the same values, and they outlive upgrades.
//!
//! One key per employee and day, `checkins/<employee_id>/<YYYY-MM-DD>`, with an empty
//! value. A check-in is one write of its own key, so two instances recording check-ins at
//! the same moment cannot overwrite each other's, and a month's days are the keys under
//! `checkins/<employee_id>/<YYYY-MM>-`.

use koupleless_module::{KeyValue, KeyValueError};

const PREFIX: &str = "checkins/";

/// October 2024 in China: the National Day holiday runs 1–7, Saturday the 12th is a
/// make-up working day, which leaves 19 working days.
const OCTOBER_2024: [u32; 19] = [
    8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 28, 29, 30, 31,
];

/// The module's check-ins. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct CheckIns {
    kv: KeyValue,
}

impl CheckIns {
    pub(crate) fn new(kv: KeyValue) -> Self {
        Self { kv }
    }

    fn key(employee_id: u32, date: &str) -> String {
        format!("{PREFIX}{employee_id}/{date}")
    }

    /// True when no check-in has been recorded at all.
    pub(crate) async fn is_empty(&self) -> Result<bool, KeyValueError> {
        Ok(self.kv.keys(PREFIX).await?.is_empty())
    }

    /// Records a check-in; true when the day was not recorded before.
    ///
    /// Two instances recording the same new day at the same moment may both answer true;
    /// the day is still stored, and counted, once.
    pub(crate) async fn record(&self, employee_id: u32, date: &str) -> Result<bool, KeyValueError> {
        let key = Self::key(employee_id, date);
        if self.kv.get(&key).await?.is_some() {
            return Ok(false);
        }
        self.kv.set(&key, Vec::new()).await?;
        Ok(true)
    }

    /// Distinct days with a check-in in `month` (`YYYY-MM`).
    pub(crate) async fn days_in(
        &self,
        employee_id: u32,
        month: &str,
    ) -> Result<u32, KeyValueError> {
        let days = self
            .kv
            .keys(&Self::key(employee_id, &format!("{month}-")))
            .await?
            .len();
        Ok(u32::try_from(days).unwrap_or(u32::MAX))
    }

    /// October 2024 for employees 1, 2 and 3 (19, 17 and 10 days), as the native module
    /// starts with; returns the number of check-ins written.
    pub(crate) async fn seed_october_2024(&self) -> Result<usize, KeyValueError> {
        let seed: [(u32, &[u32]); 3] = [
            (1, &OCTOBER_2024),
            // Two days of leave at the end of the month.
            (2, &OCTOBER_2024[..17]),
            // Joined on the 18th.
            (3, &OCTOBER_2024[9..]),
        ];
        let mut written = 0;
        for (employee_id, days) in seed {
            for day in days {
                self.kv
                    .set(
                        &Self::key(employee_id, &format!("2024-10-{day:02}")),
                        Vec::new(),
                    )
                    .await?;
                written += 1;
            }
        }
        Ok(written)
    }
}
