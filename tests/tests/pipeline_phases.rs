//! Pipeline phases plugged into the real proxy (in process, listen mode on
//! loopback) between a real rmcp client and server: deny, rewrite, hold,
//! and server-message rewrites, with every decision recorded.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use interceptor::{
    config::{Config, Mode, PortRule},
    error::{Reason, Refusal},
    identity::Identity,
    jsonrpc::Message,
    mcp::McpHandler,
    pipeline::{ExchangeEvent, MessageCtx, Phase, Pipeline, Verdict},
    proxy::{self, Drain, Serving},
};
use mcp_interceptor_tests::{Proc, TempDir, bin, proc::run_in};
use serde_json::{Value, json};

struct Guard;

impl Phase for Guard {
    fn name(&self) -> &'static str {
        "guard"
    }

    fn on_request(&self, _: &MessageCtx<'_>, msg: &Message) -> Verdict {
        match msg.target() {
            Some("add") => {
                Verdict::Deny(Refusal::new(Reason::PolicyDenied, "denied by test guard"))
            }
            Some("echo") => {
                let mut v = msg.value.clone();
                let t = v["params"]["arguments"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_uppercase();
                v["params"]["arguments"]["text"] = json!(t);
                Verdict::Rewrite(v)
            }
            Some("lookup_customer") => Verdict::Hold(Box::pin(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Verdict::Continue
            })),
            _ => Verdict::Continue,
        }
    }

    fn on_server_message(&self, _: &MessageCtx<'_>, msg: &mut Message) {
        let Some(text) = msg.value["result"]["content"][0]["text"].as_str() else {
            return;
        };
        if text.starts_with("HELLO") {
            let mut v = msg.value.clone();
            v["result"]["content"][0]["text"] = json!(format!("{text} (seen)"));
            msg.rewrite(v).expect("still a response");
        }
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<ExchangeEvent>>);

impl Phase for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn record(&self, e: &ExchangeEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

async fn start_proxy(upstream: SocketAddr, recorder: Arc<Recorder>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let mut cfg = Config::default();
    cfg.intercept.mode = Mode::Listen;
    cfg.intercept.ports = vec![PortRule {
        port: local.port(),
        addresses: vec![],
        upstream: Some(upstream),
        listen: vec![local],
        mcp_paths: vec!["/mcp".into()],
        ..Default::default()
    }];
    let pipeline = Pipeline::new(vec![Arc::new(Guard), recorder], Duration::from_secs(5));
    cfg.identity.allow_anonymous = true;
    let identity = Arc::new(Identity::new(&cfg, None).await.unwrap());
    let serving = Serving {
        upstream: proxy::upstream_for(&cfg).unwrap(),
        config: Arc::new(cfg),
        handler: Arc::new(McpHandler::new(pipeline, identity)),
        tls: None,
    };
    let (_tx, rx) = tokio::sync::watch::channel(serving);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = (_tx, stop_tx);
        proxy::serve(listener, rx, stop_rx, Drain::default()).await;
    });
    local
}

fn client(url: String, tool: &str, args: Value) -> std::process::Output {
    let a = vec![
        "client".into(),
        "--url".into(),
        url,
        "--tool".into(),
        tool.into(),
        "--args".into(),
        args.to_string(),
    ];
    run_in(None, &bin("mcp-peer"), &a, Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_deny_rewrite_and_hold_real_traffic() {
    let dir = TempDir::new("phases");
    let args = vec!["server".into(), "--listen".into(), "127.0.0.1:0".into()];
    let mut server = Proc::spawn("server", None, &bin("mcp-peer"), &args, dir.path());
    let out = server.wait_for_output("listening", Duration::from_secs(15));
    let upstream: SocketAddr = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let recorder = Arc::new(Recorder::default());
    let proxy = start_proxy(upstream, recorder.clone()).await;
    let url = format!("http://{proxy}/mcp");

    let (u1, u2, u3) = (url.clone(), url.clone(), url);
    let echo = tokio::task::spawn_blocking(move || client(u1, "echo", json!({"text": "hello"})))
        .await
        .unwrap();
    assert!(
        echo.status.success(),
        "{}",
        String::from_utf8_lossy(&echo.stderr)
    );
    let v: Value = serde_json::from_slice(&echo.stdout).unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"], "HELLO (seen)",
        "request rewritten, then response rewritten"
    );

    let add = tokio::task::spawn_blocking(move || client(u2, "add", json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    assert!(
        !add.status.success(),
        "denied call must fail for the client"
    );
    assert!(
        String::from_utf8_lossy(&add.stderr).contains("denied by test guard"),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );

    let started = std::time::Instant::now();
    let held =
        tokio::task::spawn_blocking(move || client(u3, "lookup_customer", json!({"id": "h"})))
            .await
            .unwrap();
    assert!(held.status.success(), "held then released");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the hold delayed the call"
    );

    let events = recorder.0.lock().unwrap().clone();
    let calls: Vec<_> = events
        .iter()
        .filter(|e| e.method.as_deref() == Some("tools/call"))
        .collect();
    let denied = calls
        .iter()
        .find(|e| e.target.as_deref() == Some("add"))
        .expect("denied call recorded");
    assert_eq!(format!("{:?}", denied.kind), "Denied");
    assert_eq!(denied.decided_by.as_deref(), Some("guard"));
    assert!(denied.forwarded_us.is_none(), "never forwarded");
    let echoed = calls
        .iter()
        .find(|e| e.target.as_deref() == Some("echo"))
        .unwrap();
    assert!(echoed.rewritten);
    assert_eq!(
        echoed.params.as_ref().unwrap()["arguments"]["text"],
        "HELLO",
        "the record shows what the server got"
    );
    let lookup = calls
        .iter()
        .find(|e| e.target.as_deref() == Some("lookup_customer"))
        .unwrap();
    assert!(
        lookup.forwarded_us.unwrap() - lookup.received_us >= 300_000,
        "hold time visible in the timeline"
    );
}
