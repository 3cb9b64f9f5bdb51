//! A response body that keeps its module version counted as in flight until it is done.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio_util::task::task_tracker::TaskTrackerToken;

pin_project_lite::pin_project! {
    /// Holds the in-flight token until the body is fully sent or dropped.
    pub(crate) struct GuardedBody<B> {
        #[pin]
        inner: B,
        token: Option<TaskTrackerToken>,
    }
}

impl<B> GuardedBody<B> {
    pub(crate) fn new(inner: B, token: TaskTrackerToken) -> Self {
        Self {
            inner,
            token: Some(token),
        }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for GuardedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.token.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
