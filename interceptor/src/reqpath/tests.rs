use super::*;

/// Every spelling Express, Node, Tomcat or a decoding router sends to the
/// `/mcp` route normalizes to `/mcp`.
#[test]
fn spellings_of_one_path_normalize_alike() {
    for p in [
        "/mcp",
        "/MCP",
        "/Mcp",
        "/mcp/",
        "//mcp",
        "/mcp//",
        "/%6dcp",
        "/%6Dcp",
        "/m%63p",
        "/mcp;jsessionid=1",
        "\\mcp",
        "/%4d%43%50",
        "///mcp///",
    ] {
        assert_eq!(normalize(p).as_deref(), Ok("/mcp"), "{p}");
    }
    assert_eq!(normalize("/").as_deref(), Ok("/"));
    assert_eq!(normalize("//").as_deref(), Ok("/"));
    assert_eq!(normalize("/A/b//C/").as_deref(), Ok("/a/b/c"));
    assert_eq!(normalize("/caf%C3%A9").as_deref(), Ok("/café"));
}

/// Paths whose meaning depends on the server are refused, not guessed.
#[test]
fn ambiguous_paths_are_refused() {
    for (p, e) in [
        ("/a/../mcp", PathError::DotSegment),
        ("/./mcp", PathError::DotSegment),
        ("/%2e%2e/mcp", PathError::DotSegment),
        ("/mcp/.", PathError::DotSegment),
        ("/healthz;%2f..%2fmcp", PathError::EscapedDelimiter),
        ("/healthz;..", PathError::DotSegment),
        ("/a%2fmcp", PathError::EscapedDelimiter),
        ("/a%5cmcp", PathError::EscapedDelimiter),
        ("/%256dcp", PathError::EscapedDelimiter),
        ("/mcp%00", PathError::EscapedDelimiter),
        ("/mcp%3f", PathError::EscapedDelimiter),
        ("/mcp%", PathError::BadEscape),
        ("/mcp%4", PathError::BadEscape),
        ("/mcp%zz", PathError::BadEscape),
        ("/mcp%+1", PathError::BadEscape),
        ("/%ff", PathError::NotUtf8),
        ("*", PathError::NotAbsolute),
        ("mcp", PathError::NotAbsolute),
    ] {
        assert_eq!(normalize(p), Err(e), "{p}");
    }
}

#[test]
fn queries_decode_and_refuse_escaped_delimiters() {
    assert_eq!(
        query_pairs("sessionId=a%2Db&x=1+2&flag&&").unwrap(),
        vec![
            ("sessionId".to_string(), "a-b".to_string()),
            ("x".into(), "1 2".into()),
            ("flag".into(), String::new()),
        ]
    );
    assert_eq!(query_pairs("a=1%26b=2"), Err(PathError::EscapedDelimiter));
    assert_eq!(query_pairs("a%3d1"), Err(PathError::EscapedDelimiter));
    assert_eq!(query_pairs("a=%"), Err(PathError::BadEscape));
}

#[test]
fn patterns_match_paths_and_prefixes() {
    assert!(matches("/healthz", "/healthz"));
    assert!(matches("/Healthz/", "/healthz"));
    assert!(!matches("/healthz", "/healthz/x"));
    assert!(matches("/api/*", "/api"));
    assert!(matches("/api/*", "/api/v1/x"));
    assert!(!matches("/api/*", "/apix"));
    assert!(matches("/*", "/anything/at/all"));
    assert!(matches("/*", "/"));
}

/// On generated paths: the normal form is a fixed point, has no empty,
/// dot or upper-case segment, and every accepted path is absolute.
#[test]
fn the_normal_form_is_a_fixed_point_on_generated_paths() {
    const PIECES: &[&str] = &[
        "/", "//", "\\", "m", "M", "c", "p", "%6d", "%6D", "%2e", ".", "..", ";", ";a=b", "%2f",
        "%25", "%", "%4", "é", "%C3%A9", "%ff", "?", "a", "Z", "%20", "~", "%00",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut p = String::new();
        for _ in 0..(1 + next(8)) {
            p.push_str(PIECES[next(PIECES.len())]);
        }
        let Ok(n) = normalize(&p) else { continue };
        accepted += 1;
        assert_eq!(normalize(&n).as_deref(), Ok(n.as_str()), "{p:?} -> {n:?}");
        assert!(n.starts_with('/'), "{p:?} -> {n:?}");
        assert!(n == "/" || !n.ends_with('/'), "{p:?} -> {n:?}");
        assert!(!n.contains("//"), "{p:?} -> {n:?}");
        assert_eq!(n, n.to_lowercase(), "{p:?}");
        assert!(
            n.split('/').all(|s| s != "." && s != ".."),
            "{p:?} -> {n:?}"
        );
    }
    assert!(accepted > 1000, "{accepted}");
}
