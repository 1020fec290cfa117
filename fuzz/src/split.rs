//! How a fuzz input is cut into chunks: shared by the cargo-fuzz targets
//! and by the stable corpus replay (tests/fuzz-replay), which has no
//! tokio `test-util` and so cannot take `paused_runtime`.

/// A payload and the chunks it arrives in.
pub struct Split<'a> {
    /// The bytes the parser sees, in order.
    pub payload: &'a [u8],
    /// `payload` cut where the input says.
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
