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

#[tokio::test]
async fn streams_never_take_request_slots_and_each_caller_has_a_share() {
    let l = limits();
    let addr: SocketAddr = A.parse().unwrap();
    let s1 = l.acquire(addr, Kind::Stream, "mallory").await.unwrap();
    let _s2 = l.acquire(addr, Kind::Stream, "mallory").await.unwrap();
    let err = l
        .acquire(addr, Kind::Stream, "mallory")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            LimitError::Caller {
                kind: Kind::Stream,
                limit: 2,
                ..
            }
        ),
        "{err}"
    );
    let _s3 = l.acquire(addr, Kind::Stream, "eve").await.unwrap();
    let err = l.acquire(addr, Kind::Stream, "alice").await.err().unwrap();
    assert_eq!(err, LimitError::Full { addr, limit: 3 });
    // Every stream slot is held, yet requests go through.
    let r = l.acquire(addr, Kind::Request, "alice").await.unwrap();
    let err = l.acquire(addr, Kind::Request, "alice").await.err().unwrap();
    assert!(
        matches!(
            err,
            LimitError::Caller {
                kind: Kind::Request,
                ..
            }
        ),
        "{err}"
    );
    let _r2 = l.acquire(addr, Kind::Request, "bob").await.unwrap();
    // The request budget is full: carol waits until alice's slot is back.
    let waiting = l.acquire(addr, Kind::Request, "carol");
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut waiting)
            .await
            .is_err()
    );
    drop(r);
    let _c = waiting.await.unwrap();
    // A released stream slot is free again, and another upstream is apart.
    drop(s1);
    l.acquire(addr, Kind::Stream, "alice").await.unwrap();
    let other: SocketAddr = "127.0.0.1:9090".parse().unwrap();
    l.acquire(other, Kind::Stream, "mallory").await.unwrap();
}
