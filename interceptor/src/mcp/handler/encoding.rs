//! Content codings between the agent and the server. The agent judges and
//! masks what the server says, so it must read it: on every request it
//! judged it asks for the identity coding, whatever the client accepts
//! (clients send `Accept-Encoding: gzip, br` by default, and servers that
//! compress then answered in a form the agent refused). A server that
//! compresses anyway is refused with a clear error: the agent does not
//! decompress (no decoder to trust with a bound, and an answer the server
//! was asked not to compress is not one to guess at).

use http::{HeaderMap, HeaderValue, header};

/// Replaces the client's `Accept-Encoding` with `identity`. Called after
/// the hop-by-hop headers are gone, so a `Connection: accept-encoding`
/// cannot remove it again.
pub(super) fn ask_identity(h: &mut HeaderMap) {
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// The answer's `Content-Encoding` when it names a coding other than
/// `identity` (every header line counts), as the agent will quote it.
pub(super) fn coded(h: &HeaderMap) -> Option<String> {
    let all: Vec<String> = h
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let coded = all.iter().any(|v| {
        v.split(',')
            .map(|c| c.trim_matches([' ', '\t']))
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
    });
    coded.then(|| all.join(", "))
}

/// The refusal's message for an answer in `coding`.
pub(super) fn refusal(coding: &str) -> String {
    format!(
        "the server answered with Content-Encoding {:?} though the agent asked for identity; \
         the agent cannot judge or mask a compressed answer, so it was not forwarded",
        crate::escape::text(coding)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for x in v {
            m.append(header::CONTENT_ENCODING, HeaderValue::from_str(x).unwrap());
        }
        m
    }

    #[test]
    fn only_identity_is_uncoded() {
        assert_eq!(coded(&h(&[])), None);
        assert_eq!(coded(&h(&["identity"])), None);
        assert_eq!(coded(&h(&["Identity", " "])), None);
        assert_eq!(coded(&h(&["gzip"])).as_deref(), Some("gzip"));
        assert_eq!(
            coded(&h(&["identity, br"])).as_deref(),
            Some("identity, br")
        );
        assert_eq!(
            coded(&h(&["identity", "x-foo"])).as_deref(),
            Some("identity, x-foo")
        );
    }

    #[test]
    fn the_clients_accept_encoding_is_replaced() {
        let mut m = HeaderMap::new();
        m.append(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, br"),
        );
        m.append(header::ACCEPT_ENCODING, HeaderValue::from_static("zstd"));
        ask_identity(&mut m);
        let all: Vec<_> = m.get_all(header::ACCEPT_ENCODING).iter().collect();
        assert_eq!(all, vec!["identity"]);
    }
}
