//! `mcp-peer client`: one rmcp client session over Streamable HTTP.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rmcp::{
    RoleClient, ServiceExt,
    model::{CallToolRequestParams, JsonObject},
    service::RunningService,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// MCP endpoint, e.g. http://127.0.0.1:8080/mcp
    #[arg(long)]
    url: String,
    /// Tool to call after listing tools.
    #[arg(long)]
    tool: Option<String>,
    /// Tool arguments as a JSON object (default: no arguments).
    #[arg(long, requires = "tool")]
    args: Option<String>,
    /// Bound on the whole run: connect, initialize, list, call, close.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

/// Runs the session and returns the line to print on success.
pub async fn run(args: ClientArgs) -> Result<Value> {
    // Bad arguments fail before any traffic, so a test's typo is not
    // mistaken for a network failure on the wire.
    let arguments = args
        .args
        .as_deref()
        .map(|raw| serde_json::from_str::<JsonObject>(raw).context("--args must be a JSON object"))
        .transpose()?;
    let call = args.tool.map(|name| {
        let params = CallToolRequestParams::new(name);
        match arguments {
            Some(arguments) => params.with_arguments(arguments),
            None => params,
        }
    });

    tokio::time::timeout(
        Duration::from_secs(args.timeout_secs),
        session(&args.url, call),
    )
    .await
    .map_err(|_| anyhow!("timed out after {}s", args.timeout_secs))?
}

async fn session(url: &str, call: Option<CallToolRequestParams>) -> Result<Value> {
    // Tests must reach their target address directly; a proxy picked up from
    // the environment would route around (or into) the interceptor.
    // Settings otherwise mirror rmcp's default client (no idle pooling).
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building HTTP client")?;
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(url),
    );
    let client = ()
        .serve(transport)
        .await
        .with_context(|| format!("initializing MCP session with {url}"))?;

    let outcome = exchange(&client, call).await;
    // Close even after a failed exchange so the server sees the session end
    // (DELETE), but report the exchange's error first: it is the cause.
    let closed = client.cancel().await;
    let line = outcome?;
    closed.context("closing MCP session")?;
    Ok(line)
}

async fn exchange(
    client: &RunningService<RoleClient, ()>,
    call: Option<CallToolRequestParams>,
) -> Result<Value> {
    let server_name = client
        .peer_info()
        .and_then(|info| info.server_info.as_ref().map(|server| server.name.clone()));
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .context("listing tools")?
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect();
    tools.sort();

    let result = match call {
        Some(params) => {
            let name = params.name.clone();
            let result = client
                .call_tool(params)
                .await
                .with_context(|| format!("calling tool {name}"))?;
            serde_json::to_value(result).context("encoding tool result")?
        }
        None => Value::Null,
    };
    Ok(json!({
        "server_name": server_name,
        "tools": tools,
        "result": result,
    }))
}
