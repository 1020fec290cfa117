use http::HeaderValue;

use super::*;

#[test]
fn media_types_are_case_insensitive_with_parameters() {
    for v in [
        "text/event-stream",
        "Text/Event-Stream",
        "TEXT/EVENT-STREAM; charset=UTF-8",
        "text/event-stream ;charset=\"utf-8\"",
        " text/event-stream",
    ] {
        assert_eq!(parse(v), Answer::Sse, "{v}");
    }
    for v in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=utf-8; profile=\"a;b\"",
    ] {
        assert_eq!(parse(v), Answer::Json, "{v}");
    }
}

#[test]
fn what_a_client_may_read_differently_is_other() {
    for v in [
        // A prefix is not the type (the old `starts_with`).
        "application/jsonx",
        "application/json-seq",
        "text/event-streamed",
        // The TypeScript SDK finds the type anywhere in the value.
        "text/plain; x=\"text/event-stream\"",
        "text/plain, text/event-stream",
        "text/event-stream, text/plain",
        // Not UTF-8, or unreadable parameters.
        "application/json; charset=utf-16",
        "text/event-stream; charset",
        "application/json; a=\"unterminated",
        "application/json; a=b c",
        "text/ event-stream",
        "",
        "text",
    ] {
        assert_eq!(parse(v), Answer::Other, "{v}");
    }
}

#[test]
fn one_content_type_header_only() {
    let mut h = HeaderMap::new();
    assert_eq!(answer(&h), Answer::Other);
    h.append(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    assert_eq!(answer(&h), Answer::Json);
    h.append(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    assert_eq!(answer(&h), Answer::Other);
}
