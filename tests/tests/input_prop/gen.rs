//! Generated inputs for the agent-vs-server property test: fragments
//! chosen to hit what servers read differently (quotes and comments of
//! every SQL dialect, escaped delimiters, backslashes, dot segments,
//! duplicate keys, case variants, inexact numbers).

/// A seeded generator (the runs replay with MCPI_PROP_SEED).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn join(&mut self, parts: &[&str], max: usize, seps: &[&str]) -> String {
        let n = 1 + self.below(max);
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                let sep = *self.pick(seps);
                out.push_str(sep);
            }
            let part = *self.pick(parts);
            out.push_str(part);
        }
        out
    }
}

const SQL: &[&str] = &[
    "SELECT 1",
    "SELECT a FROM t",
    "DROP TABLE orders",
    "DELETE FROM orders",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 2",
    "PRAGMA user_version = 1",
    "CREATE TABLE x (a)",
    "VACUUM",
    "BEGIN",
    "END",
    "EXPLAIN SELECT 1",
    "WITH c AS (SELECT 1) SELECT * FROM c",
    ";",
    "; ",
    "\n",
    "\r",
    " ",
    "--",
    "-- c",
    "--x",
    "#",
    "/*",
    "*/",
    "/*!",
    "/* ; */",
    "'",
    "''",
    "\"",
    "`",
    "[",
    "]",
    "[--]",
    "`--`",
    "'--'",
    "$$",
    "$a$",
    "E'",
    "\\'",
    "\\",
    " AS ",
    "x",
    "x'",
    "(",
    ")",
];

/// SQL text: statements, quotes and comment markers, run together.
pub fn sql(r: &mut Lcg) -> String {
    r.join(SQL, 8, &["", " ", "; "])
}

const SEGS: &[&str] = &[
    "srv",
    "data",
    "etc",
    "passwd",
    "..",
    ".",
    "%2e%2e",
    "%2E.",
    ".%2e",
    "%2e",
    "%3F",
    "%23",
    "%2F",
    "%5C",
    "..\\..",
    "\\",
    "a b",
    "a%20b",
    "%25",
    "%252e%252e",
    "é",
    "%C3%A9",
    "%ff",
    "x?y",
    "x#y",
    "",
    "%00",
    "..%2f..",
    "~",
    ";x",
    "%73ecret",
    "a\\b",
];

fn segments(r: &mut Lcg) -> String {
    let head = if r.below(3) > 0 { "srv/data/" } else { "" };
    format!("{head}{}", r.join(SEGS, 6, &["/", "/", "/", "\\"]))
}

/// A resource URI, mostly `file:`, with generated path segments.
pub fn uri(r: &mut Lcg) -> String {
    let scheme = r.pick(&[
        "file:///",
        "file:///",
        "FILE:///",
        "file://localhost/",
        "file:/",
        "file:",
        "file:////",
        "file://host/",
    ]);
    let tail = r.pick(&["", "", "?q=1", "#f", "?a=%2F..", "%3Fx", "?../../x"]);
    format!("{scheme}{}{tail}", segments(r))
}

/// A path argument: absolute in some system's way, or a file URI.
pub fn path(r: &mut Lcg) -> String {
    let prefix = r.pick(&["/", "/", "/", "\\", "C:\\", "file:///", "FILE:///", ""]);
    format!("{prefix}{}", segments(r))
}

const NUMBERS: &[&str] = &[
    "1",
    "-1",
    "0",
    "-0",
    "1.0",
    "0.1",
    "1e2",
    "1E-3",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901",
    "-9223372036854775809",
    "0.1000000000000000000001",
    "9007199254740993",
    "9007199254740993.0",
    "1e400",
    "1e-400",
    "2.5e-324",
];

const KEYS: &[&str] = &[
    "sql",
    "SQL",
    "path",
    "Path",
    "a\\u017fk",
    "ask",
    "\\u0073ql",
    "n",
];

fn value(r: &mut Lcg) -> String {
    match r.below(4) {
        0 => r.pick(NUMBERS).to_string(),
        1 => format!("[{}]", r.pick(NUMBERS)),
        2 => format!(
            "\"{}\"",
            r.pick(&["SELECT 1", "DROP TABLE orders", "/srv/data/a"])
        ),
        _ => format!("{{\"{}\":{}}}", r.pick(KEYS), r.pick(NUMBERS)),
    }
}

/// A tools/call or resources/read body as text, with duplicate keys,
/// case variants, escapes in names and numbers of every kind.
pub fn message(r: &mut Lcg, id: u64) -> String {
    let mut args = Vec::new();
    for _ in 0..r.below(4) {
        args.push(format!("\"{}\":{}", r.pick(KEYS), value(r)));
    }
    let names = [
        "\"name\":\"echo\"",
        "\"name\":\"query\"",
        "\"name\":\"\\u0065cho\"",
        "\"NAME\":\"query\"",
        "\"Name\":\"query\"",
        "\"uri\":\"file:///srv/data/a\"",
        "\"URI\":\"file:///etc/passwd\"",
    ];
    let mut params = vec![r.pick(&names).to_string()];
    if r.below(4) == 0 {
        params.push(r.pick(&names).to_string());
    }
    params.push(format!("\"arguments\":{{{}}}", args.join(",")));
    if r.below(6) == 0 {
        params.push("\"Arguments\":{}".to_string());
    }
    let method = r.pick(&["tools/call", "tools/call", "resources/read"]);
    let id_text = if r.below(8) == 0 {
        r.pick(NUMBERS).to_string()
    } else {
        id.to_string()
    };
    let mut top = vec![
        "\"jsonrpc\":\"2.0\"".to_string(),
        format!("\"id\":{id_text}"),
        format!("\"method\":\"{method}\""),
        format!("\"params\":{{{}}}", params.join(",")),
    ];
    if r.below(8) == 0 {
        top.push(
            r.pick(&["\"ID\":7", "\"Method\":\"ping\"", "\"PARAMS\":{}"])
                .to_string(),
        );
    }
    format!("{{{}}}", top.join(","))
}
