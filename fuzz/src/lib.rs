//! Helpers shared by the fuzz targets (see fuzz/README.md).

/// A payload and the chunks it arrives in.
pub struct Split<'a> {
    pub payload: &'a [u8],
    pub chunks: Vec<&'a [u8]>,
}

/// Splits a fuzz input into a chunking plan and a payload, so incremental
/// parsers see every way a stream can be cut: the first byte gives how
/// many length bytes follow (0-7); the payload is cut into chunks of those
/// lengths (1-256 bytes each, cyclically). No length bytes: one chunk.
pub fn split(data: &[u8]) -> Split<'_> {
    let Some((&n, rest)) = data.split_first() else {
        return Split {
            payload: data,
            chunks: Vec::new(),
        };
    };
    let (lens, payload) = rest.split_at(usize::from(n % 8).min(rest.len()));
    if lens.is_empty() {
        return Split {
            payload,
            chunks: vec![payload],
        };
    }
    let mut chunks = Vec::new();
    let mut left = payload;
    let mut i = 0;
    while !left.is_empty() {
        let len = (usize::from(lens[i % lens.len()]) + 1).min(left.len());
        let (c, r) = left.split_at(len);
        chunks.push(c);
        left = r;
        i += 1;
    }
    Split { payload, chunks }
}

/// A current-thread runtime with time paused: timers fire as soon as the
/// runtime is idle, so the agent's timeouts run their code without making
/// an input slow.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("tokio runtime")
}
