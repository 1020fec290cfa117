//! SSE from servers: `sse::Parser` is fed a stream cut into arbitrary
//! chunks (the input's first bytes choose the cuts, see `split`), as the
//! upstream's frames arrive. Where the stream is cut must not change what
//! comes out, every byte is forwarded exactly once, and an event a phase
//! rewrote (`sse::serialize`) parses back to the same type, id and data.
#![no_main]

use interceptor::mcp::sse::{self, Event, Parser, SseError};
use libfuzzer_sys::fuzz_target;
use mcp_interceptor_fuzz::split;

/// Events, and how the stream ended (`Ok(leftover)` or the first error).
fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Event>, Result<Vec<u8>, SseError>) {
    let mut p = Parser::new(max);
    let mut events = Vec::new();
    for c in chunks {
        match p.push(c) {
            Ok(evs) => events.extend(evs),
            Err(e) => return (events, Err(e)),
        }
    }
    (events, Ok(p.leftover().to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    // Small limits so that inputs of a few KB reach them; the agent's
    // default (`http.max_message`) is 16 MiB.
    let max = [0, 1, 16, 64, 256, 1024, 4096, 1 << 24][usize::from(m % 8)];
    let s = split(rest);
    let (events, end) = run(max, &s.chunks);
    // The whole stream in one chunk: the same events and the same end.
    let (whole, whole_end) = run(max, &[s.payload]);
    match (&end, &whole_end) {
        (Ok(left), Ok(whole_left)) => {
            assert_eq!(events, whole, "chunking changed the events");
            assert_eq!(left, whole_left);
            let mut forwarded: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
            forwarded.extend_from_slice(left);
            assert_eq!(forwarded, s.payload, "bytes lost or duplicated");
        }
        // On error the one-chunk run drops the events completed in the
        // same push; the error itself must agree.
        (Err(e), Err(w)) => assert_eq!(e, w),
        _ => panic!("chunking changed the outcome: {end:?} vs {whole_end:?}"),
    }
    for ev in &events {
        assert!(ev.raw.len() <= max, "an event over the limit was returned");
        assert!(ev.raw.ends_with(b"\n") || ev.raw.ends_with(b"\r"));
        for f in [&ev.event, &ev.id].into_iter().flatten() {
            assert!(!f.contains(['\r', '\n']), "a field spans lines: {f:?}");
        }
        let Some(data) = &ev.data else { continue };
        assert!(!data.contains('\r'));
        // What the handler sends when a phase changed the data.
        let out = sse::serialize(ev.event.as_deref(), ev.id.as_deref(), data);
        let mut p = Parser::new(out.len());
        let back = p.push(&out).expect("a serialized event parses");
        assert_eq!(back.len(), 1, "{out:?}");
        assert_eq!(
            (&back[0].event, &back[0].id, &back[0].data),
            (&ev.event, &ev.id, &ev.data),
            "{out:?}"
        );
        assert_eq!(back[0].raw, out);
        assert!(p.leftover().is_empty());
    }
});
