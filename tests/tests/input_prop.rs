//! Property: on generated inputs, the agent's policy input is what real
//! servers act on, or the agent refuses. The servers' side is real code:
//! sqlite3's executescript with a trace callback (which statements ran),
//! a WHATWG URL parser (pydantic's AnyUrl, as Node's fileURLToPath) and
//! Python's urlsplit + unquote + normpath for URIs and paths, Python's
//! json module and rmcp's typed messages for whole bodies
//! (tests/peers/input_oracle.py). The agent's side is the code the proxy
//! runs: `jsonrpc::parse_client`, `input::sql_kinds`, `input::resource_uri`,
//! `input::path_tag`.
//!
//! A short run by default (a few seconds); MCPI_PROP_CASES=N or
//! MCPI_PROP_SECS=S for a long one; MCPI_PROP_SEED replays a run.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use interceptor::{jsonrpc, policy::input};
use mcp_interceptor_tests::{everything::repo, s3::venv_bin};
use serde_json::{Value, json};

#[path = "input_prop/gen.rs"]
mod generate;

use generate::Lcg;

/// The Python oracle, one request a line.
struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    fn start() -> Self {
        let mut child = Command::new(venv_bin("python"))
            .arg(repo().join("tests/peers/input_oracle.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python oracle (cargo xtask setup makes .venv)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, kind: &str, text: &str) -> Value {
        let line = json!({"k": kind, "t": text}).to_string();
        writeln!(self.stdin, "{line}").unwrap();
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("oracle on {line}: {e}: {out:?}"))
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per kind of input: cases, refusals, agreements, failures and the
/// first few failures.
#[derive(Default)]
struct Tally {
    cases: u64,
    refused: u64,
    failed: u64,
    examples: Vec<String>,
}

impl Tally {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// A path as Linux resolves it: any run of leading slashes is the root
/// (POSIX lets `//` differ; Linux does not, and Python keeps it).
fn linux(p: &str) -> &str {
    match p.strip_prefix("//") {
        Some(rest) => &p[p.len() - rest.trim_start_matches('/').len() - 1..],
        None => p,
    }
}

const PREFIXES: &[&str] = &["/srv/data", "/srv", "/etc", "/etc/passwd"];

fn under(p: &str, prefix: &str) -> bool {
    p == prefix || p.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'))
}

/// What a `like "PREFIX/*"` guard sees of a judged `file:` URI: all
/// after the authority.
fn after_authority(judged: &str) -> Option<&str> {
    let rest = judged.strip_prefix("file://")?;
    Some(&rest[rest.find('/')?..])
}

/// Whether a guard on the agent's view and the server's path could
/// disagree: for some prefix, one is under it and the other not.
fn contained_differently(view: &str, reading: &str) -> bool {
    let (view, reading) = (linux(view), linux(reading));
    PREFIXES.iter().any(|p| under(view, p) != under(reading, p))
}

fn check_sql(o: &mut Oracle, t: &mut Tally, sql: &str) {
    let kinds = input::sql_kinds(&json!({ "sql": sql }));
    let ran = o.ask("sql", sql);
    let ran: BTreeSet<String> = ran["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    if kinds.contains("other") {
        t.refused += 1;
    } else if !ran.is_subset(&kinds) {
        t.fail(format!("{sql:?}: agent {kinds:?}, sqlite ran {ran:?}"));
    }
}

fn check_uri(o: &mut Oracle, t: &mut Tally, uri: &str) {
    let Ok(judged) = input::resource_uri(uri) else {
        t.refused += 1;
        return;
    };
    let r = o.ask("uri", uri);
    for reading in [&r["whatwg"], &r["stdlib"]] {
        let Some(reading) = reading.as_str() else {
            continue;
        };
        let view = after_authority(&judged).unwrap_or("");
        if after_authority(&judged).is_none() || contained_differently(view, reading) {
            t.fail(format!("{uri:?}: agent {judged:?}, server {reading:?}"));
        }
    }
}

fn check_path(o: &mut Oracle, t: &mut Tally, path: &str) {
    let Ok(judged) = input::path_tag("path", path) else {
        t.refused += 1;
        return;
    };
    let view = after_authority(&judged).unwrap_or(&judged).to_string();
    let r = o.ask("path", path);
    for reading in r["readings"].as_array().unwrap() {
        if let Some(reading) = reading.as_str()
            && contained_differently(&view, reading)
        {
            t.fail(format!("{path:?}: agent {judged:?}, server {reading:?}"));
        }
    }
}

/// Numbers tagged as the oracle tags them: exact integers, f64 bits.
fn tagged(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"int": n.to_string()}),
        Value::Number(n) => json!({"f64": n.as_f64().unwrap_or_default().to_bits().to_string()}),
        Value::Array(a) => Value::Array(a.iter().map(tagged).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), tagged(v))).collect()),
        other => other.clone(),
    }
}

fn check_message(o: &mut Oracle, t: &mut Tally, body: &str) {
    let Ok(parsed) = jsonrpc::parse_client(&Bytes::copy_from_slice(body.as_bytes())) else {
        t.refused += 1;
        return;
    };
    let m = &parsed.messages()[0];
    let params = m.params().cloned().unwrap_or(Value::Null);
    let agent = json!({
        "method": m.method(),
        "name": params.get("name"),
        "uri": params.get("uri"),
        "arguments": tagged(params.get("arguments").unwrap_or(&Value::Null)),
    });
    let python = o.ask("msg", body);
    if !python.is_null() && python != agent {
        t.fail(format!("{body}: agent {agent}, python {python}"));
    }
    // rmcp, where it reads the message at all, reads the same name and
    // arguments.
    if let Ok(msg) = serde_json::from_str::<rmcp::model::ClientJsonRpcMessage>(body) {
        let v = serde_json::to_value(&msg).unwrap_or_default();
        for k in ["name", "uri", "arguments"] {
            let theirs = v["params"].get(k).filter(|x| !x.is_null());
            let ours = params.get(k).filter(|x| !x.is_null());
            if theirs.is_some() && theirs != ours {
                t.fail(format!("{body}: rmcp {k} {theirs:?}, agent {ours:?}"));
            }
        }
    }
}

#[test]
fn the_agent_reads_inputs_as_servers_do_or_refuses() {
    let seed = std::env::var("MCPI_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)
        });
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let secs = env("MCPI_PROP_SECS");
    let cases = env("MCPI_PROP_CASES").unwrap_or(if secs.is_some() { u64::MAX } else { 400 });
    let until = secs.map(|s| Instant::now() + Duration::from_secs(s));
    eprintln!("property seed: MCPI_PROP_SEED={seed}");
    let mut rng = Lcg(seed);
    let mut oracle = Oracle::start();
    let mut tallies: [(&str, Tally); 4] = Default::default();
    for (i, name) in ["sql", "uri", "path", "message"].iter().enumerate() {
        tallies[i].0 = name;
    }
    let mut n = 0u64;
    while n < cases && until.is_none_or(|u| Instant::now() < u) {
        let which = rng.below(4);
        let t = &mut tallies[which].1;
        t.cases += 1;
        match which {
            0 => check_sql(&mut oracle, t, &generate::sql(&mut rng)),
            1 => check_uri(&mut oracle, t, &generate::uri(&mut rng)),
            2 => check_path(&mut oracle, t, &generate::path(&mut rng)),
            _ => check_message(&mut oracle, t, &generate::message(&mut rng, n)),
        }
        n += 1;
    }
    let mut failed = 0;
    for (name, t) in &tallies {
        eprintln!(
            "{name}: {} cases, {} refused (or `other`), {} failures",
            t.cases, t.refused, t.failed
        );
        for e in &t.examples {
            eprintln!("  {e}");
        }
        failed += t.failed;
    }
    assert_eq!(failed, 0, "seed {seed}: the agent and a server disagreed");
}
