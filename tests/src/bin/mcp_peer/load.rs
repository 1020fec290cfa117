//! `mcp-peer load`: one rmcp session calling `echo` many times (one at a
//! time, or `--concurrency` at once: a burst), printing `ack <text>` the
//! moment each answer arrives. A test that kills the agent mid-run then
//! knows exactly which calls the client saw answered.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    #[arg(long)]
    url: String,
    /// Texts are `<prefix>-<n>`.
    #[arg(long)]
    prefix: String,
    /// Calls to make (bounded).
    #[arg(long, default_value_t = 100)]
    count: u32,
    /// Bound on each call.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
    /// Send `Authorization: Bearer <TOKEN>` on every request.
    #[arg(long, value_name = "TOKEN")]
    bearer: Option<String>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
}

pub async fn run(args: LoadArgs) -> Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building HTTP client")?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(args.url.as_str());
    if let Some(token) = args.bearer {
        // rmcp adds the "Bearer " scheme itself.
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::with_client(http, config);
    let limit = Duration::from_secs(args.timeout_secs);
    let client = tokio::time::timeout(limit, ().serve(transport))
        .await
        .map_err(|_| anyhow!("initialize timed out"))?
        .context("initializing")?;
    let (next, count) = (Arc::new(AtomicU32::new(0)), args.count);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (peer, next, prefix) = (client.peer().clone(), next.clone(), args.prefix.clone());
        callers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                call(&peer, &format!("{prefix}-{n}"), limit).await?;
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done??;
    }
    let _ = client.cancel().await;
    Ok(())
}

/// One `echo` call; prints its ack once the answer is checked.
async fn call(peer: &rmcp::Peer<rmcp::RoleClient>, text: &str, limit: Duration) -> Result<()> {
    let mut args_obj = serde_json::Map::new();
    args_obj.insert("text".into(), json!(text));
    let call = CallToolRequestParams::new("echo").with_arguments(args_obj);
    let result = tokio::time::timeout(limit, peer.call_tool(call))
        .await
        .map_err(|_| anyhow!("call {text} timed out"))?
        .with_context(|| format!("call {text}"))?;
    let got = serde_json::to_value(&result)?["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if got != text {
        return Err(anyhow!("call {text}: expected {text:?}, got {got:?}"));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ack {text}")?;
    out.flush()?;
    Ok(())
}
