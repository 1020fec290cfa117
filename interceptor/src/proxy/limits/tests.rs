use std::time::Duration;

use super::*;

fn limits() -> Limits {
    Limits::new(UpstreamLimits {
        streams: 3,
        requests: 2,
        streams_per_caller: 2,
        requests_per_caller: 1,
    })
}

const A: &str = "127.0.0.1:8080";

/// Whether `f` is still pending after a moment (it waits for a slot).
async fn waits<F: std::future::Future + Unpin>(f: &mut F) -> bool {
    tokio::time::timeout(Duration::from_millis(50), f)
        .await
        .is_err()
}

#[tokio::test]
async fn streams_never_take_request_slots_and_each_caller_has_a_share() {
    let l = limits();
    let addr: SocketAddr = A.parse().unwrap();
    let s1 = l.acquire(addr, Kind::Stream, "mallory").await.unwrap();
    let _s2 = l.acquire(addr, Kind::Stream, "mallory").await.unwrap();
    let err = l.acquire(addr, Kind::Stream, "mallory").await.err();
    assert!(
        matches!(err, Some(LimitError::Caller { limit: 2, .. })),
        "{err:?}"
    );
    let _s3 = l.acquire(addr, Kind::Stream, "eve").await.unwrap();
    let err = l.acquire(addr, Kind::Stream, "alice").await.err().unwrap();
    assert_eq!(err, LimitError::Full { addr, limit: 3 });
    // Every stream slot is held, yet requests go through.
    let r = l.acquire(addr, Kind::Request, "alice").await.unwrap();
    // Alice's second request waits for her own share, and while it waits
    // bob still gets the last request slot.
    let mut alice2 = Box::pin(l.acquire(addr, Kind::Request, "alice"));
    assert!(waits(&mut alice2).await);
    let _r2 = l.acquire(addr, Kind::Request, "bob").await.unwrap();
    // The request budget is full: carol waits too.
    let mut carol = Box::pin(l.acquire(addr, Kind::Request, "carol"));
    assert!(waits(&mut carol).await);
    drop(r);
    // The freed budget slot goes to carol, who queued for it first; alice
    // now has her share back but waits for the budget.
    let c = carol.await.unwrap();
    assert!(waits(&mut alice2).await);
    drop(c);
    let _a2 = alice2.await.unwrap();
    // A released stream slot is free again, and another upstream is apart.
    drop(s1);
    l.acquire(addr, Kind::Stream, "alice").await.unwrap();
    let other: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    l.acquire(other, Kind::Stream, "mallory").await.unwrap();
}

#[tokio::test]
async fn a_cancelled_wait_gives_its_place_back() {
    let l = limits();
    let addr: SocketAddr = A.parse().unwrap();
    let r = l.acquire(addr, Kind::Request, "alice").await.unwrap();
    let mut queued = Box::pin(l.acquire(addr, Kind::Request, "alice"));
    assert!(waits(&mut queued).await);
    drop(queued);
    drop(r);
    let state = l.lock();
    let up = &state[&addr];
    assert!(up.callers.is_empty() && up.shares.is_empty());
}
