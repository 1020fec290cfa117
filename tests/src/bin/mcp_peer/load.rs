//! `mcp-peer load`: one rmcp session calling `echo` many times, printing
//! `ack <text>` the moment each answer arrives. A test that kills the
//! agent mid-run then knows exactly which calls the client saw answered.

use std::{io::Write, time::Duration};

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
    for n in 0..args.count {
        let text = format!("{}-{n}", args.prefix);
        let mut args_obj = serde_json::Map::new();
        args_obj.insert("text".into(), json!(text));
        let call = CallToolRequestParams::new("echo").with_arguments(args_obj);
        let result = tokio::time::timeout(limit, client.call_tool(call))
            .await
            .map_err(|_| anyhow!("call {n} timed out"))?
            .with_context(|| format!("call {n}"))?;
        let got = serde_json::to_value(&result)?["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if got != text {
            return Err(anyhow!("call {n}: expected {text:?}, got {got:?}"));
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "ack {text}")?;
        out.flush()?;
    }
    let _ = client.cancel().await;
    Ok(())
}
