use super::text_kinds;

fn k(s: &str) -> Vec<String> {
    text_kinds(s).into_iter().collect()
}

#[test]
fn plain_statements_read_alike_in_every_dialect() {
    assert_eq!(k("SELECT 1"), ["select"]);
    assert_eq!(k("select 1; drop table x;"), ["drop", "select"]);
    assert_eq!(k("/* x */ (SELECT 1)"), ["select"]);
    assert_eq!(k("-- c\nselect 2"), ["select"]);
    assert_eq!(k("select ';drop' from t"), ["select"]);
    assert_eq!(k("insert into t values (1)"), ["insert"]);
    assert!(k("hello world").is_empty());
    assert!(k("").is_empty());
}

#[test]
fn texts_dialects_read_differently_are_other() {
    for sql in crate::policy::tests::DIALECT_TRAPS {
        let kinds = k(sql);
        assert!(kinds.contains(&"other".to_string()), "{sql:?}: {kinds:?}");
    }
    assert!(k("SELECT 1 AS [--]; DROP TABLE orders").contains(&"drop".to_string()));
}

#[test]
fn a_huge_text_is_other_unread() {
    let big = format!("SELECT 1 {}", " ".repeat(300 * 1024));
    assert_eq!(k(&big), ["other"]);
}

#[test]
fn what_no_dialect_parses_is_other() {
    assert_eq!(k("FOO $$ EXECUTE 'x' $$"), ["other"]);
    let kinds = k("DROP TABLE t; garbage(");
    assert!(kinds.contains(&"drop".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"other".to_string()), "{kinds:?}");
}
