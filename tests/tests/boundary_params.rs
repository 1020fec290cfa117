//! `Mcp-Param-*` headers (MCP 2026-07-28, SEP-2243) through the agent: the
//! official Python SDK's server (tests/peers/params_server.py) declares
//! `x-mcp-header` arguments, its client (tests/peers/params_client.py)
//! mirrors them and is served; raw stateless requests whose headers and
//! body could be read two ways are refused with -32020 before the server
//! sees them, each with a `denied` row (`decided_by = 'headers'`).

use mcp_interceptor_tests::{
    Agent, NetNs, Proc, TempDir, auditq::records, http::RawResponse, proc::run_in, require_root,
    s3::venv_bin, sdk, world::Stateless,
};
use serde_json::{Value, json};

struct Setup {
    agent: Agent,
    server: Proc,
    ns: NetNs,
    _dir: TempDir,
}

/// The SDK server on 127.0.0.1:8080 behind an agent (anonymous callers,
/// no policy: only the transport's checks decide).
fn setup(tag: &str) -> Setup {
    let (ns, dir) = (NetNs::new(tag), TempDir::new(tag));
    let server = sdk::server(&ns, "params_server.py", &[], dir.path());
    let agent = Agent::start(&ns, dir.path(), "", "[[intercept.ports]]\nport = 8080\n");
    Setup {
        agent,
        server,
        ns,
        _dir: dir,
    }
}

/// A raw stateless `tools/call` of `tool` with `args` and extra header
/// lines, id `id`.
fn raw_call(ns: &NetNs, id: i64, tool: &str, args: Value, headers: &[&str]) -> RawResponse {
    let call = Stateless {
        method: "tools/call",
        name: Some(tool),
        caps: json!({}),
        headers: headers.iter().map(|h| h.to_string()).collect(),
    };
    call.send(ns, id, json!({"name": tool, "arguments": args}))
}

/// The SDK client: lists the tools, then calls `tool` with `args`.
fn sdk_call(s: &Setup, tool: &str, args: Value) -> Value {
    let argv = [
        "--url",
        "http://127.0.0.1:8080/mcp",
        "--tool",
        tool,
        "--args",
        &args.to_string(),
    ]
    .map(String::from);
    let out = run_in(
        Some(s.ns.name()),
        &venv_bin("python"),
        &sdk::script_args("params_client.py", &argv),
        std::time::Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.agent.log()
        )
    })
}

/// The requests the server received (`recv` lines), as JSON.
fn received(server: &Proc) -> Vec<Value> {
    server
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("recv "))
        .map(|l| serde_json::from_str(l).expect("recv lines are JSON"))
        .collect()
}

/// Asserts a -32020 answer naming `header` in `data.mismatch`, and that
/// the error answers request `id`.
fn assert_refused(r: &RawResponse, id: i64, header: &str, why: &str) {
    assert_eq!((r.status, r.code()), (400, -32020), "{why}: {r:?}");
    let v = r.json();
    assert_eq!(v["id"], id, "{why}: {v}");
    assert_eq!(
        v["error"]["data"]["reason"], "header_mismatch",
        "{why}: {v}"
    );
    assert_eq!(
        v["error"]["data"]["mismatch"]["header"], header,
        "{why}: {v}"
    );
}

/// One raw attack: (id, tool, arguments, header lines, the header the
/// refusal names, what it tries).
type Attack = (
    i64,
    &'static str,
    Value,
    Vec<&'static str>,
    &'static str,
    &'static str,
);

/// The attacks: (id, tool, arguments, header lines, the header named,
/// what it tries). Each query argument is unique, so the server's log
/// tells whether it arrived.
fn attacks() -> Vec<Attack> {
    let route = |q: &str, region: &str| json!({"region": region, "query": q});
    vec![
        (
            11,
            "route",
            route("atk-mismatch", "us-west1"),
            vec!["Mcp-Param-Region: eu-west1"],
            "Mcp-Param-Region",
            "a header that names another region",
        ),
        (
            12,
            "route",
            route("atk-missing", "us-west1"),
            vec![],
            "Mcp-Param-Region",
            "the declared header left out",
        ),
        (
            13,
            "route",
            route("atk-extra", "us-west1"),
            vec!["Mcp-Param-Region: us-west1", "Mcp-Param-Query: atk-extra"],
            "Mcp-Param-query",
            "a header the tool does not declare",
        ),
        (
            14,
            "route",
            route("atk-base64", "us-west1"),
            vec!["Mcp-Param-Region: =?base64?ZXUtd2VzdDE=?="],
            "Mcp-Param-Region",
            "Base64 that decodes to another region",
        ),
        (
            15,
            "route",
            route("atk-dup", "us-west1"),
            vec!["Mcp-Param-Region: us-west1", "mcp-param-REGION: eu-west1"],
            "Mcp-Param-region",
            "two case variants of one header",
        ),
        (
            16,
            "route",
            json!({"region": "us-west1", "query": "atk-count", "count": 3}),
            vec!["Mcp-Param-Region: us-west1", "Mcp-Param-Count: 03"],
            "Mcp-Param-Count",
            "an integer spelled another way",
        ),
        (
            17,
            "route",
            json!({"region": null, "query": "atk-null"}),
            vec!["Mcp-Param-Region: us-west1"],
            "Mcp-Param-Region",
            "a header for a null argument",
        ),
        (
            18,
            "twin",
            json!({"a": "atk-twin", "b": "y"}),
            vec!["Mcp-Param-Region: atk-twin"],
            "",
            "a tool whose declarations bind one header two ways",
        ),
    ]
}

#[test]
fn mcp_param_headers_are_held_to_the_arguments_the_tool_declares() {
    require_root();
    let s = setup("params");
    // Before any tools/list the agent cannot tell what a header binds to.
    let r = raw_call(
        &s.ns,
        10,
        "route",
        json!({"region": "us-west1", "query": "atk-unseen"}),
        &["Mcp-Param-Region: us-west1"],
    );
    assert_refused(&r, 10, "Mcp-Param-region", "an unlisted tool");
    let message = r.json()["error"]["message"].to_string();
    assert!(message.contains("has not seen tool"), "{message}");
    the_sdk_client_is_served(&s);
    an_invalid_tool_is_left_out(&s);
    // A raw client that mirrors correctly is served.
    let ok = raw_call(
        &s.ns,
        3,
        "route",
        json!({"region": "us-west1", "query": "raw-ok", "count": 2}),
        &["Mcp-Param-Region: us-west1", "mcp-param-count: 2"],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let result = ok.json()["result"].to_string();
    assert!(result.contains("routed raw-ok to us-west1 x2"), "{ok:?}");
    each_attack_is_refused_before_the_server(&s);
    assert_denied_rows(s);
}

/// The SDK lists, then mirrors region (Base64: not ASCII) and count.
fn the_sdk_client_is_served(s: &Setup) {
    let args = json!({"region": "Zürich", "query": "sdk-call", "count": 3});
    let out = sdk_call(s, "route", args);
    assert_eq!(out["text"], "routed sdk-call to Zürich x3", "{out}");
    assert_eq!(out["tools"], json!(["route"]), "{out}");
    let got = received(&s.server);
    let call = got
        .iter()
        .find(|r| r["body"].as_str().unwrap().contains("sdk-call"))
        .unwrap_or_else(|| panic!("{got:#?}"));
    let mut params = call["params"].as_array().unwrap().clone();
    params.sort_by_key(|p| p[0].as_str().unwrap().to_string());
    assert_eq!(
        params,
        vec![
            json!(["mcp-param-count", "3"]),
            json!(["mcp-param-region", "=?base64?WsO8cmljaA==?="])
        ],
        "the SDK mirrored the declared arguments"
    );
}

/// The server lists twin; the agent leaves it out and says why.
fn an_invalid_tool_is_left_out(s: &Setup) {
    let list = Stateless {
        method: "tools/list",
        name: None,
        caps: json!({}),
        headers: Vec::new(),
    }
    .send(&s.ns, 2, json!({}));
    let listed = list.json();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list:?}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["route"], "{list:?}");
    let log = s.agent.log();
    assert!(
        log.contains("tool left out of tools/list") && log.contains("case-insensitive"),
        "{log}"
    );
}

/// Each attack gets -32020 naming its header; none reaches the server.
fn each_attack_is_refused_before_the_server(s: &Setup) {
    for (id, tool, args, headers, named, why) in attacks() {
        let r = raw_call(&s.ns, id, tool, args, &headers);
        if named.is_empty() {
            assert_eq!((r.status, r.code()), (400, -32020), "{why}: {r:?}");
            let data = &r.json()["error"]["data"];
            assert!(data["mismatch"]["invalid"].is_string(), "{why}: {r:?}");
        } else {
            assert_refused(&r, id, named, why);
        }
    }
    let got = received(&s.server);
    let body = |r: &Value| r["body"].as_str().unwrap().to_string();
    assert!(got.iter().any(|r| body(r).contains("raw-ok")), "{got:#?}");
    let reached: Vec<&Value> = got.iter().filter(|r| body(r).contains("atk-")).collect();
    assert!(
        reached.is_empty(),
        "refused requests reached the server: {reached:#?}"
    );
}

/// Each refusal has its `denied` row, in the events and in the Parquet
/// audit's denials.
fn assert_denied_rows(mut s: Setup) {
    let ids: Vec<i64> = std::iter::once(10)
        .chain(attacks().iter().map(|a| a.0))
        .collect();
    let events = s.agent.wait_events("a denied row per refusal", |ev| {
        ids.iter().all(|id| {
            ev.iter()
                .any(|e| e["jsonrpc_id"] == *id && e["kind"] == "denied")
        })
    });
    for id in &ids {
        let row = events.iter().find(|e| e["jsonrpc_id"] == *id).unwrap();
        assert_eq!(row["decided_by"], "headers", "{row}");
        assert_eq!(row["method"], "tools/call", "{row}");
        assert_eq!(row["transport"], "stateless", "{row}");
        assert_eq!(row["error"]["code"], -32020, "{row}");
    }
    s.agent.stop(15);
    let all = [
        ("from", "2000-01-01 00:00:00"),
        ("to", "2100-01-01 00:00:00"),
    ];
    let denials = records(&s.agent.audit_dir(), "denials", &all);
    let by_headers = denials
        .iter()
        .filter(|r| r["decided_by"] == "headers")
        .count();
    assert_eq!(by_headers, ids.len(), "{denials:#?}");
    assert!(
        denials
            .iter()
            .all(|r| r["decided_by"] != "headers" || r["method"] == "tools/call"),
        "{denials:#?}"
    );
}
