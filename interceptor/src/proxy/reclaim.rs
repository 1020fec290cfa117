//! Gets a plaintext client socket back once hyper is done with it. hyper
//! drops its IO when a request head does not arrive in time, and the agent
//! still owes the client a 408. A `dup` of the socket did this before, at
//! the price of a second descriptor for every connection's whole life:
//! 10,000 idle clients needed 20,000 descriptors (tests/tests/load.rs).

use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;

use crate::steer::bypass::{Lender, Lent};

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
pub type Reclaim = Lent<Loan>;

/// The socket hyper holds, and where it goes back to.
pub struct Loan {
    inner: Option<TcpStream>,
    slot: Slot,
}

/// `s` as hyper's IO, and the slot it lands in when hyper is done.
pub fn wrap(s: TcpStream) -> (Reclaim, Slot) {
    let slot = Slot::default();
    let io = Lent::new(Loan {
        inner: Some(s),
        slot: slot.clone(),
    });
    (io, slot)
}

impl Lender for Loan {
    fn socket(&mut self) -> Option<&mut TcpStream> {
        self.inner.as_mut()
    }

    fn socket_ref(&self) -> Option<&TcpStream> {
        self.inner.as_ref()
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            *self.slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
    }
}
