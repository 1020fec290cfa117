use super::*;

#[test]
fn uris_resolve_as_whatwg_parsers_do() {
    let ok = |u: &str| resource_uri(u).unwrap();
    assert_eq!(
        ok("FILE:///srv/data/./b/../a.txt"),
        "file:///srv/data/a.txt"
    );
    assert_eq!(
        ok("file:///srv/data/My%20Docs/a"),
        "file:///srv/data/My Docs/a"
    );
    assert_eq!(
        ok("file:///srv/data/../../etc/passwd"),
        "file:///etc/passwd"
    );
    assert_eq!(ok("file://localhost/srv/x"), "file:///srv/x");
    assert_eq!(ok("file:///srv//data/./x"), "file:///srv/data/x");
    assert_eq!(ok("file://h//x"), "file://h/x");
    assert_eq!(ok("file:///etc//passwd?q=1"), "file:///etc/passwd");
    assert_eq!(ok("file:/srv/data/..//data"), "file:///srv/data");
    assert_eq!(ok("file:///srv/x?q=/../y#f"), "file:///srv/x");
    assert_eq!(ok("http://h/a/../b?q=1#f"), "http://h/b?q=1#f");
    assert_eq!(ok("test://static/resource/1"), "test://static/resource/1");
    assert_eq!(ok("file:///srv/data/caf%C3%A9"), "file:///srv/data/café");
}

#[test]
fn uris_servers_split_differently_are_refused() {
    for (u, why) in [
        (
            "file:///srv/data/%3F/../../../etc/passwd",
            Ambiguous::EncodedDelimiter,
        ),
        (
            "file:///srv/data/%23/../../../etc/passwd",
            Ambiguous::EncodedDelimiter,
        ),
        (
            "file:///srv/data/..%2f..%2fetc/passwd",
            Ambiguous::EncodedDelimiter,
        ),
        (
            "file:///srv/data/..%5C..%5Cetc/passwd",
            Ambiguous::EncodedDelimiter,
        ),
        (
            "file:///srv/data/%2e%2e/%2E%2E/etc/passwd",
            Ambiguous::EncodedDelimiter,
        ),
        ("file:///srv/data/.%2e/x", Ambiguous::EncodedDelimiter),
        ("file:///srv/data/%252e%252e/x", Ambiguous::EncodedDelimiter),
        ("file:///srv/data/..\\..\\etc\\passwd", Ambiguous::Backslash),
        ("file:///srv/data/a%00.txt", Ambiguous::Control),
        ("file:///srv/data/a\t", Ambiguous::Control),
        (" file:///srv/data/a", Ambiguous::Whitespace),
        ("file:///srv/data/%ff", Ambiguous::NotUtf8),
        ("srv/data/a", Ambiguous::NotUri),
        ("file:srv/data/a", Ambiguous::FileRelative),
        ("file:///srv/data//../x", Ambiguous::EmptyThenUp),
        ("file:////srv/data/../../etc/passwd", Ambiguous::EmptyThenUp),
    ] {
        assert_eq!(resource_uri(u), Err(why), "{u}");
    }
}

#[test]
fn path_arguments_resolve_or_are_refused() {
    assert_eq!(path_arg("/srv/data/../x").unwrap(), "/srv/x");
    assert_eq!(path_arg("relative/../x").unwrap(), "relative/../x");
    assert_eq!(path_arg("file:///a/../b").unwrap(), "file:///b");
    assert_eq!(path_arg("C:/srv/data/a").unwrap(), "C:/srv/data/a");
    for (p, why) in [
        ("/srv/data/..\\..\\etc\\passwd", Ambiguous::Backslash),
        ("C:\\srv\\data\\..\\..\\x", Ambiguous::Backslash),
        ("/srv/data/a\\b", Ambiguous::Backslash),
        ("\\etc\\passwd", Ambiguous::Backslash),
        ("C:/srv/../x", Ambiguous::DriveDots),
        ("\\srv\\data\\..\\x", Ambiguous::Backslash),
        (
            "/srv/data/%2e%2e/%2e%2e/etc/passwd",
            Ambiguous::EncodedDelimiter,
        ),
        ("/srv/data/..%2f..%2fetc", Ambiguous::EncodedDelimiter),
        (
            "file:///srv/data/%3F/../../../etc/passwd",
            Ambiguous::EncodedDelimiter,
        ),
        ("file:///srv/data/..\\..\\etc\\passwd", Ambiguous::Backslash),
        ("/srv/data/a%00", Ambiguous::Control),
        ("%2F/etc/passwd", Ambiguous::EncodedDelimiter),
        ("%5cetc", Ambiguous::EncodedDelimiter),
    ] {
        assert_eq!(path_arg(p), Err(why), "{p}");
    }
}

#[test]
fn multibyte_text_is_no_panic() {
    for s in [
        "é",
        "éé/x",
        "/../é/%3F/x#y\\srv",
        "fileé:",
        "C:é",
        "\u{10ffff}",
    ] {
        let _ = path_arg(s);
        let _ = resource_uri(s);
        let _ = walks_up(s);
    }
}

#[test]
fn walking_up_is_seen_under_every_reading() {
    assert!(walks_up("/bin/rm -rf /x/.."));
    assert!(walks_up("/x/..\\y z"));
    assert!(walks_up("/x/%2e%2e/y z"));
    assert!(!walks_up("/usr/bin/curl x | bash"));
}

#[test]
fn normalize_is_lexical() {
    assert_eq!(normalize("/a/b/../c/./d/"), "/a/c/d/");
    assert_eq!(normalize("/../../x"), "/x");
    assert_eq!(normalize("relative/../x"), "relative/../x");
    assert_eq!(normalize("file:///a/../b"), "file:///b");
}
