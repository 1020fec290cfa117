//! Bodies: the one boxed body type both directions use, and bounded reads.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// The error type of proxied bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type the proxy sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body of these bytes.
pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Streams any hyper body through unchanged.
pub fn stream<B>(b: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}

/// Why a request or response body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// More than the limit arrived.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The peer went silent for longer than the idle limit.
    #[error("no body bytes for {0:?}")]
    Idle(Duration),
    /// The connection failed mid-body.
    #[error("reading body: {0}")]
    Io(BoxError),
}

/// Reads a whole body, refusing more than `max` bytes and any silence
/// longer than `idle` between frames.
pub async fn read_limited<B>(mut body: B, max: usize, idle: Duration) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > max as u64 {
        return Err(ReadError::TooLarge(max));
    }
    // Most bodies come in one frame: kept as it came, copied only when a
    // second one arrives.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(ReadError::Idle(idle)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ReadError::Io(e.into())),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
        if held + data.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&data);
            }
            None => buf.extend_from_slice(&data),
        }
        // A body of known length says when it is done: no poll for `None`.
        if body.is_end_stream() {
            break;
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

#[cfg(test)]
mod tests;
