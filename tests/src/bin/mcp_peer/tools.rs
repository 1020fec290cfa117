//! The MCP handler behind `mcp-peer server`: its tools and what it
//! advertises. One instance per session; [`Shared`] is what all sessions of
//! the process see.

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ClientResult, GetPromptRequestParams, GetPromptResponse, Implementation,
        ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        ServerCapabilities, ServerConfig, ServerRequest,
    },
    schemars,
    service::{PeerRequestOptions, RequestContext},
    tool, tool_handler, tool_router,
};
use serde::Deserialize;

use super::{content, customer};

/// How long `ask_llm` waits for the client's answer; past it the request is
/// cancelled and the tool reports the timeout.
const SAMPLING_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on `stream_customers`' count: enough for a test to see many
/// events, small enough that a typo cannot flood the session.
const STREAM_MAX: u32 = 20;

/// Upper bound on `sleep`: longer than any proxy timeout a test sets,
/// short enough that a forgotten call cannot hold a test for long.
const SLEEP_MAX_MS: u64 = 60_000;

/// State shared by every session of one server process.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by `set_echo_description`; replaces echo's static description in
    /// `tools/list`, so a test can play a server that changes a tool under
    /// its clients' feet.
    echo_description: RwLock<Option<String>>,
    /// Set by `set_echo_description`'s `read_only_hint`: echo's
    /// `annotations.readOnlyHint` in `tools/list` (absent until set), so a
    /// test can flip what clients are told about the tool.
    echo_read_only: RwLock<Option<bool>>,
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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SizedLookupArgs {
    /// Customer id; any string, the record is derived from it.
    id: String,
    /// Answer with about this many bytes of compact JSON (records of ids
    /// `<id>-0`, `<id>-1`, ...) instead of the one pretty-printed record:
    /// for measuring what result size costs. At most 4 MiB.
    #[serde(default)]
    bytes: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ReadFileArgs {
    /// Path of the file to read; nothing is read, the path is echoed.
    path: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct QueryArgs {
    /// SQL statement; not executed, only echoed.
    sql: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AskArgs {
    /// Sent to the client as the user message of sampling/createMessage.
    prompt: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct StreamArgs {
    /// How many records to send, 1 to 20.
    #[schemars(range(min = 1, max = STREAM_MAX))]
    count: u32,
    /// Customer ids are `<prefix>-0`, `<prefix>-1`, ...
    #[serde(default = "default_stream_prefix")]
    prefix: String,
}

fn default_stream_prefix() -> String {
    "s".into()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    /// How long to wait before answering, 0 to 60000 ms.
    #[schemars(range(max = SLEEP_MAX_MS))]
    ms: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct DescriptionArgs {
    /// New description for the echo tool (unchanged when absent).
    #[serde(default)]
    text: Option<String>,
    /// New `annotations.readOnlyHint` for the echo tool.
    #[serde(default)]
    read_only_hint: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct PeerServer {
    // Built once per session; #[tool_handler]'s default would rebuild the
    // router on every tools/list and tools/call.
    tool_router: ToolRouter<Self>,
    shared: Arc<Shared>,
}

#[tool_router]
impl PeerServer {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            tool_router: Self::tool_router(),
            shared,
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
    fn lookup_customer(
        &self,
        Parameters(SizedLookupArgs { id, bytes }): Parameters<SizedLookupArgs>,
    ) -> String {
        match bytes {
            Some(n) => customer::records(&id, n.min(customer::MAX_SIZED)),
            None => customer::record(&id),
        }
    }

    #[tool(description = "Look up a customer record by id, as structuredContent (and its text)")]
    fn lookup_customer_structured(
        &self,
        Parameters(LookupArgs { id }): Parameters<LookupArgs>,
    ) -> CallToolResult {
        CallToolResult::structured(customer::value(&id))
    }

    // A JSON-RPC error, not an isError result: servers leak what they were
    // working on in error messages and data too.
    #[tool(description = "Fail a customer lookup with a JSON-RPC error naming the customer")]
    fn fail_lookup(
        &self,
        Parameters(LookupArgs { id }): Parameters<LookupArgs>,
    ) -> Result<String, ErrorData> {
        let record = customer::value(&id);
        let email = record["email"].as_str().unwrap_or_default().to_owned();
        Err(ErrorData::internal_error(
            format!("lookup failed for {email}"),
            Some(record),
        ))
    }

    // The file system stays untouched: policies only need a tool that
    // looks like file access and an answer that names the path.
    #[tool(description = "Read a file and return its contents")]
    fn read_file(&self, Parameters(ReadFileArgs { path }): Parameters<ReadFileArgs>) -> String {
        format!("contents of {path}")
    }

    #[tool(description = "Run an SQL query and return its result")]
    fn query(&self, Parameters(QueryArgs { sql }): Parameters<QueryArgs>) -> String {
        format!("ran: {sql}")
    }

    // A failure is an ordinary result, not isError, so that the test can
    // read the JSON-RPC error the client (or a proxy on its behalf) sent.
    #[tool(description = "Ask the client's model for a completion (sampling/createMessage)")]
    async fn ask_llm(
        &self,
        peer: Peer<RoleServer>,
        Parameters(AskArgs { prompt }): Parameters<AskArgs>,
    ) -> String {
        match sample(&peer, prompt).await {
            Ok(text) => format!("sampled: {text}"),
            Err(err) => format!("sampling failed: {err}"),
        }
    }

    // Which stream the records take is rmcp's choice: in a session its
    // LocalSessionManager puts every notification but progress and
    // cancellation on the standalone GET stream, racing this call's result;
    // stateless (--json-response) they precede the result on the call's own
    // SSE stream.
    #[tool(
        description = "Send customer records <prefix>-0 .. <prefix>-<count-1> to the client as \
                       log messages (logger crm), one notification each, then report how many"
    )]
    async fn stream_customers(
        &self,
        peer: Peer<RoleServer>,
        Parameters(StreamArgs { count, prefix }): Parameters<StreamArgs>,
    ) -> Result<String, String> {
        // The schema's range is advice to the caller; rmcp does not enforce it.
        if !(1..=STREAM_MAX).contains(&count) {
            return Err(format!("count must be 1 to {STREAM_MAX}, got {count}"));
        }
        for i in 0..count {
            let id = format!("{prefix}-{i}");
            // Unlike a dropped hint, a record that never left means the
            // test would count the wrong number, so the call fails.
            notify_record(&peer, &id)
                .await
                .map_err(|err| format!("sending record {id}: {err}"))?;
        }
        Ok(format!("streamed {count} records"))
    }

    // A slow upstream for timeout tests: the answer (and, on the JSON
    // path, the response head) comes only after `ms`.
    #[tool(description = "Wait the given number of milliseconds, then answer")]
    async fn sleep(
        &self,
        Parameters(SleepArgs { ms }): Parameters<SleepArgs>,
    ) -> Result<String, String> {
        if ms > SLEEP_MAX_MS {
            return Err(format!("ms must be at most {SLEEP_MAX_MS}, got {ms}"));
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(format!("slept {ms} ms"))
    }

    #[tool(description = "Change the description tools/list reports for echo")]
    async fn set_echo_description(
        &self,
        peer: Peer<RoleServer>,
        Parameters(DescriptionArgs {
            text,
            read_only_hint,
        }): Parameters<DescriptionArgs>,
    ) -> String {
        if let Some(text) = &text {
            *self
                .shared
                .echo_description
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(text.clone());
        }
        if read_only_hint.is_some() {
            *self
                .shared
                .echo_read_only
                .write()
                .unwrap_or_else(PoisonError::into_inner) = read_only_hint;
        }
        // Best effort: the change is already visible to the next tools/list,
        // which is what tests check; the notification is only a hint.
        if let Err(err) = peer.notify_tool_list_changed().await {
            tracing::debug!("notifications/tools/list_changed: {err}");
        }
        let mut reply = format!(
            "echo description set to: {}",
            text.as_deref().unwrap_or("(unchanged)")
        );
        if let Some(hint) = read_only_hint {
            reply.push_str(&format!("; readOnlyHint: {hint}"));
        }
        reply
    }
}

/// Sends the customer record for `id` as one `notifications/message`, its
/// data the record as a JSON object so that a proxy inspecting it sees
/// fields rather than one opaque string.
#[expect(
    deprecated,
    reason = "logging is deprecated by SEP-2577, but it is what stream_customers exercises"
)]
async fn notify_record(peer: &Peer<RoleServer>, id: &str) -> Result<(), rmcp::ServiceError> {
    use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam};

    let data = customer::value(id);
    peer.notify_logging_message(
        LoggingMessageNotificationParam::new(LoggingLevel::Info, data).with_logger("crm"),
    )
    .await
}

/// Asks the client for a completion of `prompt`; the error is the text the
/// tool reports, and includes the JSON-RPC error message when one came back.
#[expect(
    deprecated,
    reason = "sampling is deprecated by SEP-2577, but it is what this tool exercises"
)]
async fn sample(peer: &Peer<RoleServer>, prompt: String) -> Result<String, String> {
    // Imported here so that the lint expectation above covers them.
    use rmcp::model::{CreateMessageRequest, CreateMessageRequestParams, SamplingMessage};

    let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
    let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
    // Not Peer::create_message: it has no timeout, and this one also tells
    // the client (notifications/cancelled) when it gives up.
    let answer = peer
        .send_request_with_option(request, PeerRequestOptions::with_timeout(SAMPLING_TIMEOUT))
        .await
        .map_err(|err| err.to_string())?
        .await_response()
        .await
        .map_err(|err| err.to_string())?;
    let ClientResult::CreateMessageResult(result) = answer else {
        return Err(format!("unexpected answer: {answer:?}"));
    };
    Ok(result
        .message
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n"))
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PeerServer {
    fn get_info(&self) -> ServerConfig {
        // stream_customers sends notifications/message, which the spec only
        // allows a server that declared logging.
        #[expect(deprecated, reason = "as for notify_record")]
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("mcp-peer", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Test peer for mcp-interceptor: echo, add, lookup_customer, \
                 lookup_customer_structured, fail_lookup, read_file, query, ask_llm, \
                 set_echo_description, stream_customers, sleep; prompt customer_brief; \
                 resources customer://<id>.",
            )
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        content::prompt(request).map(Into::into)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        content::resource(request).map(Into::into)
    }

    // Written out instead of #[tool_handler]'s, whose descriptions are the
    // static ones from #[tool].
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        let description = self
            .shared
            .echo_description
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(description) = description
            && let Some(echo) = tools.iter_mut().find(|tool| tool.name == "echo")
        {
            echo.description = Some(description.into());
        }
        let read_only = *self
            .shared
            .echo_read_only
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(hint) = read_only
            && let Some(echo) = tools.iter_mut().find(|tool| tool.name == "echo")
        {
            echo.annotations = Some(rmcp::model::ToolAnnotations::new().read_only(hint));
        }
        // rmcp fills in the cache hints (ttl 0) for protocols that have them.
        Ok(ListToolsResult::with_all_items(tools))
    }
}
