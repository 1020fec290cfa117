//! `mcp-peer client`: one rmcp client session over Streamable HTTP(S).

use std::{
    collections::BTreeMap,
    error::Error,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, anyhow};
use rmcp::{
    ClientHandler, ErrorData, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, JsonObject, JsonRpcMessage,
        JsonRpcNotification, ServerNotification,
    },
    service::{
        ClientInitializeError, RequestContext, RunningService, RxJsonRpcMessage, TxJsonRpcMessage,
    },
    transport::{
        StreamableHttpClientTransport, Transport,
        streamable_http_client::{
            AuthRequiredError, InsufficientScopeError, StreamableHttpClientTransportConfig,
            StreamableHttpError,
        },
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
    /// Send `Authorization: Bearer <TOKEN>` on every request.
    #[arg(long, value_name = "TOKEN")]
    bearer: Option<String>,
    /// For https URLs, trust only the CA certificates in this PEM file
    /// (default: the system's roots).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Present this PEM client certificate (chain) in TLS; needs --key.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Advertise the sampling capability and answer every
    /// sampling/createMessage with an assistant message of TEXT (model
    /// "mcp-peer"). Without it such requests get "method not found".
    #[arg(long, value_name = "TEXT")]
    sampling_reply: Option<String>,
    /// Wait this long before each sampling answer (a human in the loop).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        requires = "sampling_reply"
    )]
    sampling_delay_ms: u64,
}

/// The client side of a session: answers sampling requests when told to,
/// and counts and keeps them either way so a test can tell none arrived,
/// or what reached the client.
struct PeerClient {
    sampling_reply: Option<String>,
    sampling_delay: Duration,
    sampling_requests: Arc<AtomicUsize>,
    /// The params of each sampling request, as the client read them.
    sampling_params: Arc<Mutex<Vec<Value>>>,
}

impl ClientHandler for PeerClient {
    #[expect(
        deprecated,
        reason = "sampling is deprecated by SEP-2577, but tests exercise it"
    )]
    async fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, ErrorData> {
        use rmcp::model::{CreateMessageRequestMethod, CreateMessageResult, SamplingMessage};

        self.sampling_requests.fetch_add(1, Ordering::Relaxed);
        self.sampling_params
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(serde_json::to_value(&params).unwrap_or_default());
        tokio::time::sleep(self.sampling_delay).await;
        match &self.sampling_reply {
            Some(text) => Ok(CreateMessageResult::new(
                SamplingMessage::assistant_text(text.clone()),
                "mcp-peer".into(),
            )
            .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN)),
            // What rmcp's default handler answers, i.e. the behaviour from
            // before this option existed.
            None => Err(ErrorData::method_not_found::<CreateMessageRequestMethod>()),
        }
    }

    #[expect(deprecated, reason = "as for create_message")]
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        if self.sampling_reply.is_some() {
            info.capabilities = ClientCapabilities::builder().enable_sampling().build();
        }
        info
    }
}

/// The `data` of every `notifications/message` the session read, in the
/// order it read them.
type LogMessages = Arc<Mutex<Vec<Value>>>;

/// The HTTP transport, noting logging notifications as the session reads
/// them.
///
/// Not `ClientHandler::on_logging_message`: rmcp runs that on a task of its
/// own per notification, so a burst of them is handled out of order, and
/// possibly after `call_tool` has already returned the response that
/// followed them. `receive` is called in wire order, and has returned every
/// message ahead of the response before rmcp sees the response.
struct Recording<T> {
    inner: T,
    log_messages: LogMessages,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Recording<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    #[expect(
        deprecated,
        reason = "logging is deprecated by SEP-2577, but stream_customers exercises it"
    )]
    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(JsonRpcNotification {
            notification: ServerNotification::LoggingMessageNotification(logging),
            ..
        })) = &message
        {
            self.log_messages
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(logging.params.data.clone());
        }
        message
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
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
    // Also before any traffic: an unreadable certificate is a typo too.
    let http = http_client(&args)?;
    let call = args.tool.map(|name| {
        let params = CallToolRequestParams::new(name);
        match arguments {
            Some(arguments) => params.with_arguments(arguments),
            None => params,
        }
    });

    let mut config = StreamableHttpClientTransportConfig::with_uri(args.url.as_str());
    if let Some(token) = args.bearer {
        // rmcp adds the "Bearer " scheme itself.
        config = config.auth_header(token);
    }

    let handler = PeerClient {
        sampling_reply: args.sampling_reply,
        sampling_delay: Duration::from_millis(args.sampling_delay_ms),
        sampling_requests: Arc::default(),
        sampling_params: Arc::default(),
    };
    tokio::time::timeout(
        Duration::from_secs(args.timeout_secs),
        session(&args.url, http, config, handler, call),
    )
    .await
    .map_err(|_| anyhow!("timed out after {}s", args.timeout_secs))?
}

fn http_client(args: &ClientArgs) -> Result<reqwest::Client> {
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    // Tests must reach their target address directly; a proxy picked up from
    // the environment would route around (or into) the interceptor.
    // Settings otherwise mirror rmcp's default client (no idle pooling).
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &args.ca {
        let roots = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .with_context(|| format!("parsing {}", ca.display()))?;
        anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", ca.display());
        builder = builder.tls_certs_only(roots);
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        // reqwest wants certificate and key in one PEM buffer.
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity = reqwest::Identity::from_pem(&pem)
            .with_context(|| format!("parsing {} with {}", cert.display(), key.display()))?;
        builder = builder.identity(identity);
    }
    builder.build().context("building HTTP client")
}

async fn session(
    url: &str,
    http: reqwest::Client,
    config: StreamableHttpClientTransportConfig,
    handler: PeerClient,
    call: Option<CallToolRequestParams>,
) -> Result<Value> {
    let sampling_requests = handler.sampling_requests.clone();
    let sampling_params = handler.sampling_params.clone();
    let log_messages = LogMessages::default();
    let transport = Recording {
        inner: StreamableHttpClientTransport::with_client(http, config),
        log_messages: log_messages.clone(),
    };
    let client = handler.serve(transport).await.map_err(|err| {
        anyhow!(
            "initializing MCP session with {url}: {}",
            describe_init_error(&err)
        )
    })?;

    let outcome = exchange(&client, call).await;
    // Close even after a failed exchange so the server sees the session end
    // (DELETE), but report the exchange's error first: it is the cause.
    let closed = client.cancel().await;
    let mut line = outcome?;
    closed.context("closing MCP session")?;
    // Read last: a message that arrived at any point of the run counts,
    // including one on the standalone GET stream after the tool's result.
    line["sampling_requests"] = sampling_requests.load(Ordering::Relaxed).into();
    line["sampling_params"] = std::mem::take(
        &mut *sampling_params
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    )
    .into();
    line["log_messages"] =
        std::mem::take(&mut *log_messages.lock().unwrap_or_else(PoisonError::into_inner)).into();
    Ok(line)
}

async fn exchange(
    client: &RunningService<RoleClient, PeerClient>,
    call: Option<CallToolRequestParams>,
) -> Result<Value> {
    let server_name = client
        .peer_info()
        .and_then(|info| info.server_info.as_ref().map(|server| server.name.clone()));
    let listed = client.list_all_tools().await.context("listing tools")?;
    // Sorted by name, so the output does not depend on the server's order;
    // duplicates stay in `tools`, where a test can see them.
    let mut tools: Vec<&str> = listed.iter().map(|tool| tool.name.as_ref()).collect();
    tools.sort_unstable();
    let descriptions: BTreeMap<&str, Option<&str>> = listed
        .iter()
        .map(|tool| (tool.name.as_ref(), tool.description.as_deref()))
        .collect();

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
        "tool_descriptions": descriptions,
        "result": result,
    }))
}

/// The initialize failure with what rmcp's own message leaves out: the
/// HTTP status and challenge of a rejected request, and the cause under a
/// reqwest error (a TLS failure shows only there).
fn describe_init_error(err: &ClientInitializeError) -> String {
    match err {
        ClientInitializeError::TransportError { error, context } => {
            format!(
                "{} (when {context})",
                describe_transport(error.error.as_ref())
            )
        }
        ClientInitializeError::LegacyFallbackFailed { discover, fallback } => format!(
            "{err}: discover: {}; legacy initialize: {}",
            describe_init_error(discover),
            describe_init_error(fallback)
        ),
        other => chain(other),
    }
}

fn describe_transport(err: &(dyn Error + 'static)) -> String {
    // rmcp reports a 401/403 that carries a challenge as its own error
    // types, whose messages name neither the status nor (at the top level)
    // the challenge.
    let mut source = Some(err);
    while let Some(current) = source {
        if let Some(auth) = current.downcast_ref::<AuthRequiredError>() {
            return format!(
                "HTTP 401 Unauthorized, WWW-Authenticate: {}",
                auth.www_authenticate_header
            );
        }
        if let Some(scope) = current.downcast_ref::<InsufficientScopeError>() {
            return format!(
                "HTTP 403 Forbidden, WWW-Authenticate: {}",
                scope.www_authenticate_header
            );
        }
        // Its Client variant does not expose the reqwest error as a source.
        if let Some(StreamableHttpError::Client(client)) =
            current.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            return format!("Client error: {}", chain(client));
        }
        source = current.source();
    }
    chain(err)
}

/// An error and its sources, `: `-separated, as anyhow's `{:#}` would.
fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        // Some wrappers repeat their source's message in their own.
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}
