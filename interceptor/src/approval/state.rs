//! Approvals as named states, like rustls's `Expect*` structs: each move
//! is a method that consumes the state it leaves, so a move the lifecycle
//! does not have (`Denied` -> `Approved`, `Used` -> anything) cannot be
//! written.
//!
//! ```text
//!  Pending ─┬─ approve ───▶ Approved ─┬─ use_once ─▶ Used
//!           ├─ deny ──────▶ Denied    └─ expire ───▶ Expired
//!           ├─ expire ────▶ Expired
//!           ├─ abandon ───▶ Abandoned     (hold: the caller went away)
//!           └─ interrupt ─▶ Interrupted   (hold: the agent stopped)
//! ```
//!
//! A state names a request in the store, as a read found it
//! ([`Approval::pending`](super::Approval::pending), the store's due and
//! held queries). A move is one compare-and-set there (`UPDATE ... WHERE
//! status = <the state left>`, or DynamoDB's `ConditionExpression`): of
//! two moves racing on one request (a vote and the sweeper, two
//! approvers, two agents of a fleet) one wins and the other returns `None`.
//! Only these moves make a [`Move`], the store's one way to change a
//! status. The store keeps the [`Status`] names, as it always has.

use serde::Serialize;

use super::{
    ApprovalError,
    store::{AsBackend, Backend},
};

/// A state a request can be in.
pub trait State {
    /// The status the store keeps for it.
    const STATUS: Status;
    /// The request's id.
    fn id(&self) -> &str;
}

/// A move's outcome: the state arrived at, or `None` when another move
/// left the state first.
pub type Moved<S> = Result<Option<S>, ApprovalError>;

/// One move of the lifecycle; only this module's states make one, so the
/// store can be asked for no other.
#[derive(Debug)]
pub struct Move {
    from: Status,
    to: Status,
    valid_until_us: Option<i64>,
}

impl Move {
    /// The status the request must still have.
    pub(super) fn from(&self) -> Status {
        self.from
    }

    /// The status it moves to.
    pub(super) fn to(&self) -> Status {
        self.to
    }

    /// Until when an approved call may be made (set by `approve` only).
    pub(super) fn valid_until_us(&self) -> Option<i64> {
        self.valid_until_us
    }
}

/// Moves request `id` from `F` to `T` in `db`, with `why` as its reason.
fn step<F: State, T: State>(
    db: &dyn Backend,
    id: String,
    valid_until_us: Option<i64>,
    why: &str,
    arrive: fn(String) -> T,
) -> Moved<T> {
    let m = Move {
        from: F::STATUS,
        to: T::STATUS,
        valid_until_us,
    };
    Ok(db.transition(&id, &m, why)?.then(|| arrive(id)))
}

/// Declares each state once: a struct for its moves, a [`Status`]
/// variant, and the name the store keeps.
macro_rules! states {
    ($($(#[$doc:meta])* $name:ident = $stored:literal,)*) => {
        /// Where an approval request stands, as stored and shown.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Status {
            $($(#[$doc])* $name,)*
        }

        impl Status {
            /// Every status, in declaration order.
            pub const ALL: &[Status] = &[$(Self::$name,)*];

            /// The status's name as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$name => $stored,)*
                }
            }

            /// The status stored as `s` (an unknown name reads as expired:
            /// it can release nothing).
            pub(super) fn parse(s: &str) -> Self {
                match s {
                    $($stored => Self::$name,)*
                    _ => Self::Expired,
                }
            }
        }

        $(
            $(#[$doc])*
            #[derive(Debug, PartialEq, Eq)]
            pub struct $name(String);

            impl State for $name {
                const STATUS: Status = Status::$name;
                fn id(&self) -> &str {
                    &self.0
                }
            }
        )*
    };
}

states! {
    /// Waiting for approvers: the only state votes apply to.
    Pending = "pending",
    /// Enough approvers said yes: the call may be made once (in retry
    /// mode until `valid_until_us`).
    Approved = "approved",
    /// An approver said no.
    Denied = "denied",
    /// No decision in time (or, approved in retry mode, not used in time).
    Expired = "expired",
    /// The approved call was made (single use).
    Used = "used",
    /// Hold mode: the caller went away before a decision.
    Abandoned = "abandoned",
    /// Hold mode: the agent stopped or restarted while the call was held;
    /// the caller was refused, and the call can never be released.
    Interrupted = "interrupted",
}

impl Pending {
    /// Request `id`, as read from the store in this state (a move checks
    /// it again).
    pub(super) fn stored(id: String) -> Self {
        Self(id)
    }

    /// The quorum is reached: the call may pass once until `valid_until_us`.
    pub fn approve(
        self,
        db: &(impl AsBackend + ?Sized),
        valid_until_us: i64,
        why: &str,
    ) -> Moved<Approved> {
        step::<Self, _>(db.backend(), self.0, Some(valid_until_us), why, Approved)
    }

    /// An approver said no.
    pub fn deny(self, db: &(impl AsBackend + ?Sized), why: &str) -> Moved<Denied> {
        step::<Self, _>(db.backend(), self.0, None, why, Denied)
    }

    /// No decision before the deadline (or the store failed mid-hold).
    pub fn expire(self, db: &(impl AsBackend + ?Sized), why: &str) -> Moved<Expired> {
        step::<Self, _>(db.backend(), self.0, None, why, Expired)
    }

    /// Hold mode: the caller went away before a decision.
    pub fn abandon(self, db: &(impl AsBackend + ?Sized), why: &str) -> Moved<Abandoned> {
        step::<Self, _>(db.backend(), self.0, None, why, Abandoned)
    }

    /// Hold mode: the agent stopped (or restarted) while the call was held.
    pub fn interrupt(self, db: &(impl AsBackend + ?Sized), why: &str) -> Moved<Interrupted> {
        step::<Self, _>(db.backend(), self.0, None, why, Interrupted)
    }
}

impl Approved {
    /// Request `id`, as read from the store in this state (a move checks
    /// it again).
    pub(super) fn stored(id: String) -> Self {
        Self(id)
    }

    /// The approved call is made: single use.
    pub fn use_once(self, db: &(impl AsBackend + ?Sized), why: &str) -> Moved<Used> {
        step::<Self, _>(db.backend(), self.0, None, why, Used)
    }

    /// Approved, but not used in time.
    pub fn expire(self, db: &(impl AsBackend + ?Sized), why: &str) -> Moved<Expired> {
        step::<Self, _>(db.backend(), self.0, None, why, Expired)
    }
}
