//! A coarse timer for hyper's request-head deadline.
//!
//! hyper arms its header-read timer every time it waits for a request head: between two
//! requests on every kept-alive connection. With tokio's timer that is two clock reads, a
//! heap allocation, and an insertion into and a removal from the timer wheel per request,
//! about a twentieth of what the base spends on a small request. The deadline is a limit
//! against clients that never finish a head, counted in seconds; it needs no nanosecond
//! precision. Here the clock is a number a ticker thread advances every [`TICK`], a waiting
//! head costs one allocation and two uncontended lock operations, and an expired deadline
//! fires within one tick after it passes.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use hyper::rt::{Sleep, Timer};

/// How often the clock advances and expired deadlines fire.
const TICK: Duration = Duration::from_millis(10);

/// The ticker's clock and the deadlines waiting on it.
struct Clock {
    origin: Instant,
    /// Nanoseconds from `origin` to the last tick.
    now: AtomicU64,
    /// Deadlines polled before they passed: the ticker takes the waker when one passes,
    /// the owner removes its entry when it is ready or dropped.
    waiting: Mutex<slab::Slab<(u64, Option<Waker>)>>,
}

impl Clock {
    /// The process's clock, its ticker thread started on first use.
    fn get() -> &'static Clock {
        static CLOCK: OnceLock<Clock> = OnceLock::new();
        CLOCK.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("koupleless-coarse-timer".to_owned())
                .spawn(|| {
                    let clock = Clock::get();
                    loop {
                        std::thread::sleep(TICK);
                        clock.tick();
                    }
                });
            if let Err(e) = spawned {
                // Without a ticker no deadline fires: say so loudly rather than serve without
                // the limit silently.
                tracing::error!(error = %e, "cannot start the coarse timer thread; request-head deadlines will not fire");
            }
            Clock {
                origin: Instant::now(),
                now: AtomicU64::new(0),
                waiting: Mutex::new(slab::Slab::new()),
            }
        })
    }

    fn now_nanos(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Advances the clock and wakes every deadline it passed.
    fn tick(&self) {
        let now = self.nanos(Instant::now());
        self.now.store(now, Ordering::Release);
        let mut expired = Vec::new();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            for (_, (deadline, waker)) in waiting.iter_mut() {
                if *deadline <= now
                    && let Some(waker) = waker.take()
                {
                    expired.push(waker);
                }
            }
        }
        expired.into_iter().for_each(Waker::wake);
    }
}

/// hyper's [`Timer`] on the coarse clock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CoarseTimer;

impl Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let clock = Clock::get();
        Box::pin(CoarseSleep {
            deadline: clock.nanos(deadline),
            key: None,
        })
    }

    fn now(&self) -> Instant {
        let clock = Clock::get();
        clock.origin + Duration::from_nanos(clock.now_nanos())
    }
}

/// A deadline on the coarse clock.
struct CoarseSleep {
    deadline: u64,
    /// Where its waker waits, once it has been polled before its deadline.
    key: Option<usize>,
}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let clock = Clock::get();
        if clock.now_nanos() >= self.deadline {
            self.forget(clock);
            return Poll::Ready(());
        }
        let mut waiting = clock.waiting.lock().unwrap_or_else(|p| p.into_inner());
        match self.key.and_then(|key| waiting.get_mut(key)) {
            Some((_, Some(waker))) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            Some((_, waker)) => *waker = Some(cx.waker().clone()),
            None => {
                let key = waiting.insert((self.deadline, Some(cx.waker().clone())));
                drop(waiting);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl CoarseSleep {
    fn forget(&mut self, clock: &Clock) {
        if let Some(key) = self.key.take() {
            clock
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
        }
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        self.forget(Clock::get());
    }
}

impl Sleep for CoarseSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_fires_within_a_tick_after_it_passes_and_not_before() {
        let timer = CoarseTimer;
        let started = Instant::now();
        timer.sleep(Duration::from_millis(50)).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50) - TICK, "{took:?}");
        assert!(took < Duration::from_millis(50) + 10 * TICK, "{took:?}");
    }

    #[test]
    fn a_deadline_waits_once_and_leaves_nothing_behind() {
        let clock = Clock::get();
        let deadline = clock.nanos(Instant::now() + Duration::from_secs(60));
        let mut sleep = CoarseSleep {
            deadline,
            key: None,
        };
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut sleep).poll(&mut cx).is_pending());
        let key = sleep.key.expect("waiting after a poll before its deadline");
        assert!(Pin::new(&mut sleep).poll(&mut cx).is_pending());
        assert_eq!(sleep.key, Some(key), "polled again, it keeps its one entry");
        drop(sleep);
        // (Another deadline may have taken the freed key since; not this one.)
        assert!(
            !matches!(clock.waiting.lock().unwrap().get(key), Some((d, _)) if *d == deadline),
            "dropped, its entry is gone"
        );
    }
}
