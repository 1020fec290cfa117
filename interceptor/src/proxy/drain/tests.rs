use super::Drain;

#[test]
fn try_enter_stops_at_the_limit_and_frees_a_place_on_drop() {
    let d = Drain::default();
    let a = d.try_enter(2).expect("first");
    let b = d.try_enter(2).expect("second");
    assert!(d.try_enter(2).is_none(), "a third is over the limit");
    assert_eq!(d.active(), 2, "a refusal counts nothing");
    drop(a);
    let c = d.try_enter(2).expect("a place was freed");
    assert_eq!(d.active(), 2);
    drop((b, c));
    assert_eq!(d.active(), 0);
}

#[tokio::test]
async fn wait_returns_once_the_last_connection_ends() {
    let d = Drain::default();
    let g = d.enter();
    let waiter = tokio::spawn({
        let d = d.clone();
        async move { d.wait(std::time::Duration::from_secs(10)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    drop(g);
    assert_eq!(waiter.await.expect("join"), 0);
}
