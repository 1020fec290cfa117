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
