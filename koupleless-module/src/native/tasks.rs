//! Tasks a module spawns, all cancelled when the module stops.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

pub(crate) type FailureHook = Arc<dyn Fn(String) + Send + Sync>;

/// Spawns tasks tied to one module version's lifetime.
///
/// Every task is cancelled (dropped at its next `.await`) when the module stops; a task
/// that panics counts as a failure of the module, which the base restarts with backoff.
#[derive(Clone)]
pub struct TaskSpawner {
    tracker: TaskTracker,
    token: CancellationToken,
    on_failure: FailureHook,
    span: tracing::Span,
}

impl TaskSpawner {
    pub(crate) fn new(span: tracing::Span, on_failure: FailureHook) -> Self {
        Self {
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
            on_failure,
            span,
        }
    }

    /// Runs `task` until it ends or the module stops, whichever comes first.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        let on_failure = Arc::clone(&self.on_failure);
        let guarded = async move {
            tokio::select! {
                biased;
                _ = token.cancelled() => {}
                outcome = AssertUnwindSafe(task).catch_unwind() => {
                    if let Err(panic) = outcome {
                        on_failure(format!("a task of the module panicked: {}", panic_message(&*panic)));
                    }
                }
            }
        };
        self.tracker.spawn(guarded.instrument(self.span.clone()))
    }

    /// Reports a failure of the module (as a panicking task would): the base restarts it
    /// with backoff, and past the meltdown limit marks it broken.
    pub fn report_failure(&self, why: String) {
        (self.on_failure)(why);
    }

    /// A token cancelled when the module stops, for tasks that want to finish cleanly.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Number of tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// True when no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancels every task and waits (bounded) until they have all ended.
    pub(crate) async fn shutdown(&self, within: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
    }

    pub(crate) fn cancel(&self) {
        self.token.cancel();
        self.tracker.close();
    }
}

impl std::fmt::Debug for TaskSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpawner")
            .field("running", &self.tracker.len())
            .finish()
    }
}

/// The text of a panic payload (a `&str` or `String` message, else a placeholder).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}
