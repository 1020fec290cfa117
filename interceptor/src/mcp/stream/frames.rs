//! The agent's own streamed answers (a relayed SSE stream, a held
//! request's keep-alives) as one kind of response body: each is a source
//! of frames, polled through `&mut self`.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::proxy::body::{BoxError, ProxyBody};

/// What a source yields when polled, as `Body::poll_frame` does.
pub(crate) type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// A source of an answer's frames.
pub(crate) trait Source: Send + Sync + Unpin + 'static {
    /// The next frame; `Ready(None)` once the answer is complete.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Polled;
}

/// `source` as a response body.
pub(crate) fn body(source: impl Source) -> ProxyBody {
    Frames(source).boxed()
}

/// The body of a [`Source`]: size and end unknown until it says.
struct Frames<S>(S);

impl<S: Source> http_body::Body for Frames<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        self.get_mut().0.poll_next(cx)
    }
}
