//! `mcp-peer server`: an rmcp server behind rmcp's Streamable HTTP service.

use std::{convert::Infallible, io::Write, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use rmcp::{
    ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{Implementation, ServerCapabilities, ServerConfig},
    schemars, tool, tool_handler, tool_router,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde::Deserialize;
use tokio::{
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
};
use tower_service::Service;

use super::customer;

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address to bind, e.g. 127.0.0.1:0 or [::1]:8080 (port 0 picks one).
    #[arg(long)]
    listen: String,
    /// HTTP path the MCP endpoint is served on.
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// Answer POSTs with application/json instead of SSE. rmcp only does
    /// this on its stateless path, so this also turns sessions off (no
    /// Mcp-Session-Id).
    #[arg(long)]
    json_response: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to send back unchanged.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct LookupArgs {
    /// Customer id; any string, the record is derived from it.
    id: String,
}

#[derive(Debug, Clone)]
struct PeerServer {
    // Built once per session; #[tool_handler]'s default would rebuild the
    // router on every tools/list and tools/call.
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl PeerServer {
    fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Return the given text unchanged")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Add two 64-bit integers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Result<String, String> {
        // A tool-level error (isError) rather than a panic or a wrapped value.
        a.checked_add(b)
            .map(|sum| sum.to_string())
            .ok_or_else(|| format!("{a} + {b} overflows i64"))
    }

    #[tool(description = "Look up a customer record (contact, payment card, orders) by id")]
    fn lookup_customer(&self, Parameters(LookupArgs { id }): Parameters<LookupArgs>) -> String {
        customer::record(&id)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PeerServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-peer", env!("CARGO_PKG_VERSION")))
            .with_instructions("Test peer for mcp-interceptor: echo, add, lookup_customer.")
    }
}

type McpService = StreamableHttpService<PeerServer, LocalSessionManager>;
type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

pub async fn run(args: ServerArgs) -> Result<()> {
    // A path without the slash would silently 404 every request.
    anyhow::ensure!(args.path.starts_with('/'), "--path must start with '/'");
    // Handlers go in before "listening" is printed: a test may send SIGTERM
    // as soon as it reads that line, and must then see a clean exit 0.
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;

    let listener = TcpListener::bind(args.listen.as_str())
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr().context("reading bound address")?;

    // rmcp rejects any Host but localhost/127.0.0.1/::1 by default (DNS
    // rebinding protection); tests reach this server via arbitrary namespace
    // addresses, possibly through the interceptor, so accept every Host.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    if args.json_response {
        config = config
            .with_legacy_session_mode(false)
            .with_json_response(true);
    }
    let shutdown = config.cancellation_token.clone();
    let mcp: McpService = StreamableHttpService::new(
        || Ok(PeerServer::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let path: Arc<str> = args.path.into();

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {local}").context("writing to stdout")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);

    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, mcp.clone(), path.clone()));
                }
                Err(err) => {
                    // Typically EMFILE; back off instead of spinning on it.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Ends open SSE streams and session workers; the caller exits right after.
    shutdown.cancel();
    Ok(())
}

async fn serve_connection(stream: TcpStream, mcp: McpService, path: Arc<str>) {
    // SSE frames are small writes that must not wait for Nagle.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {err}");
    }
    let peer = stream.peer_addr().ok();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut mcp = mcp.clone();
        let path = path.clone();
        async move {
            tracing::debug!(
                "{peer:?}: {} {} session={:?}",
                request.method(),
                request.uri(),
                request.headers().get("mcp-session-id"),
            );
            if request.uri().path() == &*path {
                mcp.call(request).await
            } else {
                Ok(not_found())
            }
        }
    });
    if let Err(err) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("connection from {peer:?}: {err}");
    }
}

fn not_found() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(b"Not Found")).boxed());
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
