use super::*;

fn all(p: &mut Parser, chunks: &[&[u8]]) -> Vec<Event> {
    chunks
        .iter()
        .flat_map(|c| p.push(c).expect("parse"))
        .collect()
}

#[test]
fn events_split_across_chunks_keep_exact_bytes() {
    let stream: &[u8] =
        b"event: message\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: x\ndata: y\r\n\r\n";
    for split in 1..stream.len() {
        let mut p = Parser::new(1 << 20);
        let evs = all(&mut p, &[&stream[..split], &stream[split..]]);
        assert_eq!(evs.len(), 3, "split at {split}");
        let joined: Vec<u8> = evs.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(joined, stream, "bytes preserved at split {split}");
        assert_eq!(evs[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(evs[0].kind(), "message");
        assert_eq!(evs[1].data, None, "comment-only block");
        assert_eq!(evs[2].data.as_deref(), Some("x\ny"));
    }
}

#[test]
fn bare_cr_line_endings_and_fields() {
    let mut p = Parser::new(1024);
    // A trailing \r may be half of \r\n: the event completes with the next byte.
    assert!(
        p.push(b"event: endpoint\rid: 7\rdata:/messages?sessionId=1\r\r")
            .unwrap()
            .is_empty()
    );
    let evs = p.push(b":").unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind(), "endpoint");
    assert_eq!(evs[0].id.as_deref(), Some("7"));
    assert_eq!(evs[0].data.as_deref(), Some("/messages?sessionId=1"));
}

#[test]
fn an_event_that_never_ends_is_bounded() {
    let mut p = Parser::new(64);
    assert!(p.push(b"data: short\n").is_ok());
    let err = p.push(&[b'a'; 100]).unwrap_err();
    assert_eq!(err, SseError::TooLarge(64));
    // Also when a whole oversized event arrives in one chunk.
    let mut p = Parser::new(16);
    let err = p.push(b"data: 0123456789abcdef\n\n").unwrap_err();
    assert_eq!(err, SseError::TooLarge(16));
}

#[test]
fn leftover_is_returned_at_end_of_stream() {
    let mut p = Parser::new(1024);
    assert!(p.push(b"data: partial").unwrap().is_empty());
    assert_eq!(&p.leftover()[..], b"data: partial");
}

#[test]
fn serialize_round_trips() {
    let b = serialize(Some("message"), Some("3"), "line1\nline2");
    let mut p = Parser::new(1024);
    let evs = p.push(&b).unwrap();
    assert_eq!(evs[0].data.as_deref(), Some("line1\nline2"));
    assert_eq!(evs[0].id.as_deref(), Some("3"));
}

#[test]
fn side_text_is_every_line_but_data() {
    let mut p = Parser::new(1024);
    let evs = p
        .push(b": ping ada@example.org\r\nevent: message\nid: 7\ndata: {\"a\":1}\ndata: x\nretry: 3000\nodd\n\n")
        .unwrap();
    assert_eq!(
        evs[0].side_text(),
        ": ping ada@example.org\nevent: message\nid: 7\nretry: 3000\nodd"
    );
    // Data only (the usual event), and a BOM before a data line: nothing.
    let evs = p.push(b"data: {}\n\n\xef\xbb\xbfdata: y\n\n").unwrap();
    assert_eq!(evs[0].side_text(), "");
    assert_eq!(evs[1].side_text(), "");
    // `data` without a colon is still a data line; `datum` is not.
    let evs = p.push(b"data\ndatum: z\n\n").unwrap();
    assert_eq!(evs[0].side_text(), "datum: z");
}

#[test]
fn after_an_error_the_rest_of_the_chunk_stays_in_the_parser() {
    // The relay drops what `leftover` returns after an error: it must hold
    // the events that followed the bad one, not hand them out.
    let mut p = Parser::new(1024);
    let err = p
        .push(b"data: \xff\n\ndata: {\"e\":\"ada@example.org\"}\n\n")
        .unwrap_err();
    assert_eq!(err, SseError::Utf8);
    assert_eq!(&p.leftover()[..], b"data: {\"e\":\"ada@example.org\"}\n\n");
    // An oversized event that arrived whole is still buffered, unparsed.
    let mut p = Parser::new(16);
    let big = b"data: ada.lovelace@example.org\n\n";
    assert_eq!(p.push(big).unwrap_err(), SseError::TooLarge(16));
    assert_eq!(&p.leftover()[..], &big[..]);
}
