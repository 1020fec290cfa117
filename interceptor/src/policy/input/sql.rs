//! `context.sql_kinds`: the kind of every SQL statement in a call's string
//! arguments, read by a real SQL tokenizer and parser (`sqlparser`) in
//! several dialects.
//!
//! The agent does not know which database is behind a tool, and dialects
//! disagree on what is a comment, a string or an identifier: `[--]` is an
//! identifier in SQLite and SQL Server but starts a comment in PostgreSQL,
//! `E'\''` is one string in PostgreSQL, `/*! ... */` is code in MySQL and a
//! comment elsewhere, `--x` is a comment everywhere but MySQL. So a text is
//! read in each dialect; when they all parse it into the same statements,
//! their kinds are the answer. When any dialect fails or reads it
//! differently, the answer is every kind any reading found plus `other`,
//! which a policy that lists the kinds it allows refuses.

use std::collections::BTreeSet;

use serde_json::Value;
use sqlparser::{
    dialect::{
        Dialect, GenericDialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
    },
    parser::Parser,
    tokenizer::{Token, Tokenizer},
};

/// Statement kinds policies can name; any other statement is `other`.
const SQL_KEYWORDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "upsert",
    "replace",
    "create",
    "alter",
    "drop",
    "truncate",
    "rename",
    "grant",
    "revoke",
    "with",
    "explain",
    "show",
    "describe",
    "pragma",
    "attach",
    "detach",
    "copy",
    "call",
    "exec",
    "execute",
    "set",
    "begin",
    "commit",
    "rollback",
    "vacuum",
    "analyze",
    "do",
    "lock",
    "load",
    "prepare",
    "declare",
    "listen",
    "notify",
    "reindex",
    "cluster",
    "comment",
    "security",
    "import",
    "refresh",
    "reset",
    "savepoint",
    "release",
    "start",
    "end",
    "abort",
    "use",
    "values",
    "table",
    "discard",
];

/// Words besides `SQL_KEYWORDS` that make a text worth parsing: other
/// statement starters of PostgreSQL, MySQL, SQLite and SQL Server, and
/// words a statement with an unknown first word would carry. A text with
/// none of them cannot be a statement any of those engines runs, so it is
/// not parsed (a cost saving only: what is parsed is judged by the parser).
const SQL_WORDS: &[&str] = &[
    "perform",
    "into",
    "from",
    "kill",
    "flush",
    "install",
    "unload",
    "optimize",
    "cache",
    "uncache",
    "msck",
    "deallocate",
    "fetch",
    "close",
    "unlisten",
    "print",
    "raiserror",
    "throw",
    "while",
    "if",
    "return",
    "open",
    "summarize",
    "pivot",
    "checkpoint",
    "handler",
    "purge",
    "repair",
    "check",
    "checksum",
    "shutdown",
    "restart",
    "xa",
    "get",
    "put",
    "remove",
    "list",
    "undrop",
    "assert",
    "export",
    "backup",
    "restore",
    "dbcc",
    "bulk",
    "waitfor",
    "goto",
    "revert",
    "disable",
    "enable",
    "receive",
    "send",
    "move",
    "signal",
    "resignal",
    "iterate",
    "leave",
    "loop",
    "repeat",
    "case",
    "unlock",
    "audit",
    "go",
    "uninstall",
    "binlog",
    "cancel",
    "clone",
    "help",
    "change",
    "stop",
    "reassign",
    "security",
    "raise",
    "select",
    "exec",
];

/// Texts longer than this (bytes) with SQL words are `other` unread.
const MAX_PARSED: usize = 256 * 1024;

/// The dialects a text is read in: the engines MCP database servers front
/// most often, and sqlparser's permissive generic reading.
fn dialects() -> [&'static dyn Dialect; 5] {
    [
        &GenericDialect {},
        &PostgreSqlDialect {},
        &MySqlDialect {},
        &SQLiteDialect {},
        &MsSqlDialect {},
    ]
}

/// The kind of every SQL statement in any string argument, lowercased:
/// `SELECT 1; DROP TABLE t` gives {select, drop}. See the module doc for
/// how dialects that disagree give `other`. Plain prose with no SQL word
/// gives nothing.
pub fn sql_kinds(args: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut strings = Vec::new();
    collect_strings(args, &mut strings);
    for text in strings {
        out.extend(text_kinds(text));
    }
    out
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// The kinds of one text (see `sql_kinds`).
pub fn text_kinds(text: &str) -> BTreeSet<String> {
    if !has_sql_word(text) {
        return BTreeSet::new();
    }
    if text.len() > MAX_PARSED {
        // Ten readings of a large text would cost the proxy more than the
        // call is worth judging finely: it is simply not read-only.
        return BTreeSet::from(["other".to_string()]);
    }
    let readings: Vec<Option<Vec<String>>> =
        dialects().iter().map(|d| parsed_kinds(*d, text)).collect();
    if let Some(Some(first)) = readings.first()
        && readings.iter().all(|r| r.as_ref() == Some(first))
    {
        return first.iter().cloned().collect();
    }
    // Disagreement or a failed parse: everything any reading saw, and
    // `other`, so no allow-list of kinds admits it and every forbid on a
    // kind some engine would run still fires.
    let mut out: BTreeSet<String> = readings.into_iter().flatten().flatten().collect();
    for d in dialects() {
        out.extend(token_kinds(d, text));
    }
    out.insert("other".to_string());
    out
}

/// Whether the text has a word (ASCII letters, split at anything else, so
/// `/*!50000DROP*/` shows `DROP`) that a SQL statement needs.
fn has_sql_word(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| (2..=10).contains(&w.len()))
        .any(|w| {
            let w = w.to_ascii_lowercase();
            SQL_KEYWORDS.contains(&w.as_str()) || SQL_WORDS.contains(&w.as_str())
        })
}

/// The kinds of the statements one dialect parses, in order; `None` if it
/// does not parse.
fn parsed_kinds(d: &dyn Dialect, text: &str) -> Option<Vec<String>> {
    let mut parser = Parser::new(d).try_with_sql(text).ok()?;
    let stmts = parser.parse_statements().ok()?;
    // `parse_statements` stops at an `END` after a statement (the end of a
    // block) and leaves the rest unread: `SELECT a FROM t END; DROP TABLE
    // t` would be one SELECT, while SQLite reads END as an alias and runs
    // the DROP. Text left over is not understood.
    if parser.peek_token_ref().token != Token::EOF {
        return None;
    }
    Some(
        stmts
            .iter()
            .map(|s| kind_of(&s.to_string()))
            .collect::<Vec<_>>(),
    )
}

/// A statement's kind from its canonical text: its first keyword when
/// policies can name it, else `other`.
fn kind_of(canonical: &str) -> String {
    let word: String = canonical
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_lowercase();
    if SQL_KEYWORDS.contains(&word.as_str()) {
        word
    } else {
        "other".to_string()
    }
}

/// For a text some dialect could not parse: the first word of each
/// `;`-separated run of tokens, by this dialect's tokenizer (nothing if
/// it cannot tokenize). Only adds kinds, so a forbid on `drop` still
/// names `DROP TABLE t; garbage(`.
fn token_kinds(d: &dyn Dialect, text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(tokens) = Tokenizer::new(d, text).tokenize() else {
        return out;
    };
    let mut first = true;
    for t in tokens {
        match t {
            Token::SemiColon => first = true,
            Token::Whitespace(_) | Token::LParen => {}
            Token::Word(w) if first && w.quote_style.is_none() => {
                out.insert(kind_of(&w.value));
                first = false;
            }
            _ if first => {
                out.insert("other".to_string());
                first = false;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
