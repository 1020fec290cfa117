//! Gets a plaintext client socket back once hyper is done with it. hyper
//! drops its IO when a request head does not arrive in time, and the agent
//! still owes the client a 408. A `dup` of the socket did this before, at
//! the price of a second descriptor for every connection's whole life:
//! 10,000 idle clients needed 20,000 descriptors (tests/tests/load.rs).

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// Where the socket lands when hyper drops its [`Reclaim`].
#[derive(Clone, Default)]
pub struct Slot(Arc<Mutex<Option<TcpStream>>>);

impl Slot {
    /// The socket, once hyper has let go of it.
    pub fn take(&self) -> Option<TcpStream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The socket as hyper's IO; puts it into its [`Slot`] when dropped.
pub struct Reclaim {
    inner: Option<TcpStream>,
    slot: Slot,
}

pub fn wrap(s: TcpStream) -> (Reclaim, Slot) {
    let slot = Slot::default();
    let io = Reclaim {
        inner: Some(s),
        slot: slot.clone(),
    };
    (io, slot)
}

impl Reclaim {
    fn get(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.inner
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl Drop for Reclaim {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            *self.slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
    }
}

impl AsyncRead for Reclaim {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Reclaim {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().get() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
