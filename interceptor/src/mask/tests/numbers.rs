use super::*;

/// Fuzz (mask target): the second number was refused for following a
/// digit, then taken by the audit's pass once the first read `[PHONE]`.
/// A chain is taken in one pass (re-masking is bounded, see `apply`).
#[test]
fn phones_chained_without_separators_are_taken_in_one_pass() {
    let p = &["phone"];
    let chain = "+15000007+10000000+10000000+10000000+10000000+10000000+10000000+10000000+10000000";
    assert_eq!(standard().profile(None).hits(chain).len(), 9);
    positive(p, chain, &"[PHONE]".repeat(9));
    positive(p, "415-555-2671(415) 555-2671", "[PHONE][PHONE]");
    // A number that is not taken still keeps a `+` after it from being one.
    negative(p, &["1.0.0+20130313144700", "12345678+15000007"]);
}

#[test]
fn card() {
    vectors("card");
    // Partial is the standard strategy for cards.
    assert_eq!(
        m("4111 1111 1111 1111").as_deref(),
        Some("**** **** **** 1111")
    );
}

#[test]
fn ipv4() {
    vectors("ipv4");
    // Not in `standard`.
    assert_eq!(m("192.168.1.10"), None);
}

type Span = (usize, usize);

/// A hand-written matcher: the first span in `t[..end]` from `from` on.
type Matcher = fn(&[u8], usize, usize) -> Option<Span>;

/// Every match of `re` in `text` from `from` on, as `find_iter` gives them
/// (second), and as the hand-written matcher `at` does (first).
fn both(re: &regex::Regex, at: Matcher, text: &str, from: usize) -> (Vec<Span>, Vec<Span>) {
    let end = text.len();
    let want = re
        .find_iter(&text[from..])
        .map(|m| (from + m.start(), from + m.end()))
        .collect();
    let mut got = Vec::new();
    let mut pos = from;
    while let Some((s, e)) = at(text.as_bytes(), pos, end) {
        got.push((s, e));
        pos = e;
    }
    (got, want)
}

/// The hand-written card and phone matchers find exactly the spans of the
/// regexes they replaced, on runs of digits and separators built to sit on
/// their edges (12, 13 and 19 digits, two separators, a `+` or `(` in the
/// middle, the wrong separator).
#[test]
fn card_and_phone_matchers_are_their_regexes() {
    const PIECES: &[&str] = &[
        "1", "4", "2", "0", "9", "1111", "415", "555", "2671", " ", "-", ".", "  ", "(", ")", "+",
        "+1", "(415)", "x", "é",
    ];
    let card = regex::Regex::new(matchers::CARD).expect("regex");
    let phone = regex::Regex::new(matchers::PHONE).expect("regex");
    let mut state = 17;
    let (mut cards, mut phones) = (0, 0);
    for _ in 0..60_000 {
        let text = random_text(&mut state, PIECES, 16);
        let from = text
            .char_indices()
            .map(|(i, _)| i)
            .take(3)
            .last()
            .unwrap_or(0);
        for start in [0, from] {
            let (got, want) = both(&card, matchers::card_at, &text, start);
            assert_eq!(got, want, "card in {text:?} from {start}");
            cards += want.len();
            let (got, want) = both(&phone, matchers::phone_at, &text, start);
            assert_eq!(got, want, "phone in {text:?} from {start}");
            phones += want.len();
        }
    }
    assert!(
        cards > 2000 && phones > 2000,
        "{cards} cards, {phones} phones"
    );
}
