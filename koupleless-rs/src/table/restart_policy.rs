//! The restart policy, written once: backoff between restarts, then `broken` past a
//! meltdown limit.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use koupleless_config::SupervisorConfig;

/// What to do after a module actor failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Restart after this delay.
    RestartAfter(Duration),
    /// Too many failures in the window: mark the module broken.
    Meltdown,
}

/// Failure times of one module version.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    times: VecDeque<Instant>,
}

impl FailureLog {
    /// Records a failure at `now` and decides.
    pub(crate) fn record(&mut self, now: Instant, policy: &SupervisorConfig) -> Verdict {
        self.times.push_back(now);
        self.prune(now, policy);
        let failures = self.times.len() as u32;
        if failures > policy.max_restarts {
            return Verdict::Meltdown;
        }
        let doubling = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        Verdict::RestartAfter(
            policy
                .backoff_initial
                .saturating_mul(doubling)
                .min(policy.backoff_max),
        )
    }

    /// Failures still inside the window.
    pub(crate) fn recent(&mut self, now: Instant, policy: &SupervisorConfig) -> usize {
        self.prune(now, policy);
        self.times.len()
    }

    fn prune(&mut self, now: Instant, policy: &SupervisorConfig) {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.meltdown_window)
        {
            self.times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SupervisorConfig {
        SupervisorConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            max_restarts: 3,
            meltdown_window: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_up_to_max_then_meltdown() {
        let (p, t0) = (policy(), Instant::now());
        let mut log = FailureLog::default();
        assert_eq!(
            log.record(t0, &p),
            Verdict::RestartAfter(Duration::from_millis(100))
        );
        assert_eq!(
            log.record(t0, &p),
            Verdict::RestartAfter(Duration::from_millis(200))
        );
        assert_eq!(
            log.record(t0, &p),
            Verdict::RestartAfter(Duration::from_millis(350))
        );
        assert_eq!(log.record(t0, &p), Verdict::Meltdown);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let (p, t0) = (policy(), Instant::now());
        let mut log = FailureLog::default();
        for _ in 0..3 {
            log.record(t0, &p);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(
            log.record(later, &p),
            Verdict::RestartAfter(Duration::from_millis(100))
        );
        assert_eq!(log.recent(later, &p), 1);
    }
}
