use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{ReadError, read_limited};

/// A body that hands out its frames one by one, of no announced length.
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn frames(parts: &[&'static str]) -> Frames {
    Frames(
        parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect(),
    )
}

const IDLE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn one_frame_is_kept_as_it_came_and_more_are_joined() {
    let one = Bytes::from_static(b"{\"a\":1}");
    let got = read_limited(Frames(VecDeque::from([one.clone()])), 100, IDLE)
        .await
        .unwrap();
    // The same bytes, not a copy.
    assert_eq!(got.as_ptr(), one.as_ptr());
    let got = read_limited(frames(&["{\"a\"", "", ":1", "}"]), 100, IDLE)
        .await
        .unwrap();
    assert_eq!(&got[..], b"{\"a\":1}");
    let got = read_limited(frames(&[]), 100, IDLE).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn the_limit_counts_every_frame() {
    assert!(read_limited(frames(&["12345"]), 5, IDLE).await.is_ok());
    for parts in [
        &["123456"][..],
        &["123", "456"],
        &["1", "2345", "6"],
        &["", "123456"],
    ] {
        match read_limited(frames(parts), 5, IDLE).await {
            Err(ReadError::TooLarge(5)) => {}
            other => panic!("{parts:?}: {other:?}"),
        }
    }
}
