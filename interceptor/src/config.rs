//! One typed configuration, read from one TOML file and validated at load.
//!
//! Every key has a default; unknown keys are an error (`deny_unknown_fields`)
//! so a typo never silently weakens the boundary. The commented example in
//! `deploy/config.example.toml` documents every key; a unit test parses it.
#![forbid(unsafe_code)]

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use educe::Educe;
use serde::{Deserialize, Serialize};

mod approvals;
mod error;
pub mod evidence;
mod identity;
mod mask;
mod policy;
mod ports;
mod process;
mod s3;
mod steer;
use ValidationError::Invalid;
pub use approvals::{
    Admin, ApprovalStore, Approvals, DynamoDbStore, LocalUser, Webhook, WebhookFormat,
};
pub use error::ValidationError;
pub use identity::{CertField, ClientAuth, Identity, OidcIssuer, Tls, UpstreamCredential};
pub use mask::{CustomDetector, Mask, Profile as MaskProfile, Strategy as MaskStrategy, Validator};
pub use policy::{
    Budget, BundleApprovals, BundleMask, BundleSettings, OnToolChange, Policy, s3_location,
};
pub use process::{ProcessIdentity, ProcessRule, glob};
pub use s3::{Retention, S3Config};
pub use steer::UpstreamLimits;

/// Default location of the config file.
pub const DEFAULT_PATH: &str = "/etc/mcp-interceptor/config.toml";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file's path.
        path: PathBuf,
        /// What is wrong, with its place in the file.
        message: String,
    },
    /// The values parse but one is out of range or they contradict each other.
    #[error("{path}: {error}")]
    Invalid {
        /// The config file's path.
        path: PathBuf,
        /// What is invalid or contradictory.
        error: ValidationError,
    },
}

/// The agent's whole configuration, one TOML file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which ports to intercept and how.
    pub intercept: Intercept,
    /// HTTP limits and timeouts.
    pub http: Http,
    /// TLS for the proxy's listener.
    pub tls: Tls,
    /// How callers are authenticated.
    pub identity: Identity,
    /// The Cedar policies.
    pub policy: Policy,
    /// Masking profiles.
    pub mask: Mask,
    /// Approval rules and webhook.
    pub approvals: Approvals,
    /// The admin API.
    pub admin: Admin,
    /// The audit log.
    pub audit: Audit,
    /// The JSON-lines event file.
    pub events: Events,
    /// Logging.
    pub log: Log,
}

/// When audit writes are synced to disk.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Each row is on disk before its response is released (slowest).
    Always,
    /// Rows reach the kernel before release; a background group commit
    /// syncs every `fsync_interval_ms` (the default).
    #[default]
    Interval,
    /// Rows reach the kernel before release; the kernel writes them back.
    None,
}

/// What to do when the audit log cannot be written.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnAuditFailure {
    /// While the audit cannot be written, refuse MCP requests (NIST AU-5).
    #[default]
    Block,
    /// Keep serving; log and count the failure, retry the rows.
    Continue,
}

/// The audit trail: WAL, Parquet files, signed manifest, optional S3.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Whether to write the audit log.
    #[educe(Default = true)]
    pub enabled: bool,
    /// Holds `wal/`, `events/dt=…/hour=…/`, `manifest/<host>/`, `outbox/`.
    #[educe(Default(expression = PathBuf::from("/var/lib/mcp-interceptor/audit")))]
    pub dir: PathBuf,
    /// When writes are synced to disk.
    pub fsync: Fsync,
    /// How often to sync when syncing on an interval.
    #[educe(Default = 100)]
    pub fsync_interval_ms: u64,
    /// What to do when the audit log cannot be written.
    pub on_audit_failure: OnAuditFailure,
    /// A Parquet file is closed after this many seconds ...
    #[educe(Default = 60)]
    pub roll_seconds: u64,
    /// ... or this many bytes of WAL, or when the UTC hour changes. A
    /// closed segment is converted in row batches (a few MiB at a time,
    /// whatever this is), streamed to its Parquet file.
    #[educe(Default(expression = 16 << 20))]
    pub roll_bytes: u64,
    /// Arguments, result and error JSON longer than this are cut (flagged,
    /// full size kept).
    #[educe(Default(expression = 64 << 10))]
    pub max_field_bytes: usize,
    /// Ed25519 key signing the manifest; generated (0600) if absent.
    #[educe(Default(expression = PathBuf::from("/var/lib/mcp-interceptor/audit-signing.key")))]
    pub signing_key: PathBuf,
    /// Host name in rows and file names; unset: the kernel's host name.
    pub host: Option<String>,
    /// Every this many seconds a `heartbeat` row (host, version, policy
    /// bundle, steering counters) proves the agent alive; 0: none.
    #[educe(Default = 60)]
    pub heartbeat_seconds: u64,
    /// Upload sealed audit files to S3, if set.
    pub s3: Option<S3Config>,
}

impl Audit {
    /// The host name rows, file names and a shared approvals store go by:
    /// `host`, else the kernel's host name, else `localhost`.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into())
        })
    }
}

/// Whether to steer traffic with eBPF or listen only.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Steer with the eBPF `sk_lookup` program (clients and servers unchanged).
    #[default]
    Ebpf,
    /// No eBPF: the proxy listens on each port itself; the server moves.
    Listen,
}

/// What happens to traffic when the agent is down.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// No proxy socket: steered connections are refused.
    #[default]
    Closed,
    /// No proxy socket: steered connections reach the real server.
    Open,
}

/// Which traffic to intercept and how.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Intercept {
    /// Whether to steer traffic with eBPF or listen only.
    pub mode: Mode,
    /// What happens to traffic when the agent is down.
    pub fail: FailMode,
    /// Network namespace to steer and serve in (e.g. `/run/netns/mcp`);
    /// unset: the agent's own.
    pub netns: Option<PathBuf>,
    /// bpffs directory for the pinned program link and maps.
    #[educe(Default(expression = PathBuf::from("/sys/fs/bpf/mcp-interceptor")))]
    pub pin_dir: PathBuf,
    /// Sockets steered connections land on (ebpf mode): at most one IPv4
    /// and one IPv6 address. Their port must not be a steered port.
    #[educe(Default(expression = vec![
        SocketAddr::from(([127, 0, 0, 1], 15001)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 15001)),
    ]))]
    pub proxy_listen: Vec<SocketAddr>,
    /// Inclusive privileged source-port range of the agent's upstream
    /// connections, which the program lets through unsteered.
    #[educe(Default(expression = PortRange { start: 700, end: 1023 }))]
    pub bypass_ports: PortRange,
    /// The ports to intercept.
    pub ports: Vec<PortRule>,
    /// Record, in the kernel, which local process opens each connection to
    /// a steered port (ebpf mode; listen mode has no capture).
    #[educe(Default = true)]
    pub process_capture: bool,
}

/// An inclusive port range, written `{ start = 700, end = 1023 }`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// The first port of the range.
    pub start: u16,
    /// The last port of the range (inclusive).
    pub end: u16,
}

impl PortRange {
    /// Number of ports in the range (validation keeps it non-empty).
    pub fn count(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

/// One intercepted port range and how to treat it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields)]
pub struct PortRule {
    /// The MCP server's port (0 in `PortRule::default()`, which is
    /// invalid: callers set it).
    pub port: u16,
    /// Steer only connections to these local addresses; empty: any address.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Where the proxy forwards to; unset: the original destination
    /// (ebpf mode only; listen mode needs it).
    #[serde(default)]
    pub upstream: Option<SocketAddr>,
    /// Listen mode: where the proxy listens for this port;
    /// empty: `0.0.0.0:<port>`.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// HTTP paths that carry MCP (Streamable HTTP endpoint, legacy SSE and
    /// message endpoints), compared as servers route them (case, slashes,
    /// escapes). A legacy server's `endpoint` event adds its message path
    /// at run time. A POST whose body is JSON-RPC is MCP on any path.
    #[serde(default = "default_mcp_paths")]
    #[educe(Default(expression = default_mcp_paths()))]
    pub mcp_paths: Vec<String>,
    /// Non-MCP paths forwarded as they are (`/healthz`, or `/api/*` for a
    /// prefix), without the upstream credential, each an `http` audit row;
    /// empty (the default): every non-MCP request is refused (404) and
    /// audited.
    #[serde(default)]
    pub pass_through: Vec<String>,
    /// Speak TLS to the upstream, verified against `tls.upstream_ca`.
    #[serde(default)]
    pub upstream_tls: bool,
    /// Name the upstream certificate must carry; unset: its IP address.
    #[serde(default)]
    pub upstream_server_name: Option<String>,
    /// The server's name in policies (`Mcp::Server::"<name>"`); unset:
    /// the port number.
    #[serde(default)]
    pub name: Option<String>,
}

fn default_mcp_paths() -> Vec<String> {
    ["/mcp", "/sse", "/messages", "/message"]
        .map(String::from)
        .to_vec()
}

/// HTTP limits and time-outs. Each violation gets a documented status and,
/// where the client speaks JSON-RPC, a JSON-RPC error body (docs/protocol-and-errors.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Largest client request body, bytes (413).
    #[educe(Default(expression = 4 << 20))]
    pub max_request_body: usize,
    /// Largest single server message: a JSON response body or one SSE
    /// event, bytes (502, or the stream is cut with an error event).
    #[educe(Default(expression = 16 << 20))]
    pub max_message: usize,
    /// Most messages in one JSON-RPC batch (400, -32600). Batches exist
    /// only in protocol 2025-03-26; each message is decided and recorded.
    #[educe(Default = 100)]
    pub max_batch: usize,
    /// Largest request head, bytes (431).
    #[educe(Default(expression = 64 << 10))]
    pub max_header_bytes: usize,
    /// Most request header fields (431).
    #[educe(Default = 100)]
    pub max_headers: usize,
    /// Longest wait for a complete request head, also on an idle
    /// keep-alive connection (408).
    #[educe(Default = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Longest silence while reading a request body or a JSON response body
    /// (408 for the client's, 504 for the server's). SSE streams may idle.
    #[educe(Default = 60_000)]
    pub idle_timeout_ms: u64,
    /// Longest wait to connect to the upstream (502).
    #[educe(Default = 5_000)]
    pub upstream_connect_timeout_ms: u64,
    /// Longest wait for the upstream's response head (504), and on an SSE
    /// answer to a POST the longest server silence while a request waits
    /// (a `subscriptions/listen` stream: until its acknowledgment).
    #[educe(Default = 120_000)]
    pub upstream_response_timeout_ms: u64,
    /// Most client connections served at once, all steered ports
    /// together; one more is answered 503 (-32004 `too_many_connections`) and closed, so a flood
    /// meets a counted refusal instead of exhausting descriptors or memory.
    // Twice the 10,000 held connections tests/tests/load.rs proves.
    // Each holds a descriptor (far below LimitNOFILE=1048576) and,
    // mid-request, ~37 KiB: ~750 MiB at the limit, not gigabytes.
    #[educe(Default = 20_000)]
    pub max_connections: usize,
    /// Long-lived requests (GET streams, listen POSTs) in flight to one upstream; one
    /// more is refused 503 (-32004 `upstream_busy`). Unset: two fifths of the bypass range.
    pub max_upstream_streams: Option<usize>,
    /// Other requests (POST, DELETE) in flight to one upstream; one more
    /// waits for a slot (504 at upstream_response_timeout_ms). Unset: the
    /// rest of the bypass range.
    pub max_upstream_requests: Option<usize>,
    /// Streams (GET, listen) one caller may hold to one upstream (429, -32004 `caller_busy`).
    #[educe(Default = 16)]
    pub max_upstream_streams_per_caller: usize,
    /// Other requests one caller may have in flight to one upstream; more
    /// wait for one of them to finish (queued behind that caller only).
    #[educe(Default = 64)]
    pub max_upstream_requests_per_caller: usize,
}

/// Where completed exchanges go besides the log.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    /// Append every MCP exchange as one JSON line to this file (for
    /// troubleshooting and tests; the durable audit is separate).
    pub jsonl: Option<PathBuf>,
}

/// The log line format.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (journald, log shippers).
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Educe)]
#[educe(Default)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter such as `info` or `info,interceptor::proxy=debug`;
    /// `RUST_LOG` overrides it.
    #[educe(Default = "info")]
    pub level: String,
    /// The log line format.
    #[educe(Default(expression = LogFormat::Text))]
    pub format: LogFormat,
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|error| ConfigError::Invalid {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        ports::validate(&self.intercept)?;
        let h = &self.http;
        for (name, v) in [
            ("max_request_body", h.max_request_body),
            ("max_message", h.max_message),
            ("max_headers", h.max_headers),
            ("max_connections", h.max_connections),
        ] {
            if v == 0 {
                return Err(Invalid(format!("http.{name} must be greater than 0")));
            }
        }
        if h.max_header_bytes < 8192 {
            return Err(Invalid(
                "http.max_header_bytes must be at least 8192 (hyper's minimum buffer)".into(),
            ));
        }
        for (name, v) in [
            ("header_read_timeout_ms", h.header_read_timeout_ms),
            ("idle_timeout_ms", h.idle_timeout_ms),
            ("upstream_connect_timeout_ms", h.upstream_connect_timeout_ms),
            (
                "upstream_response_timeout_ms",
                h.upstream_response_timeout_ms,
            ),
        ] {
            if v == 0 {
                return Err(Invalid(format!("http.{name} must be greater than 0")));
            }
        }
        let a = &self.audit;
        if a.roll_seconds == 0
            || a.roll_bytes < 4096
            || a.fsync_interval_ms == 0
            || a.max_field_bytes < 256
        {
            return Err(Invalid("audit: roll_seconds and fsync_interval_ms must be > 0, roll_bytes >= 4096, max_field_bytes >= 256".into()));
        }
        // ':' admits an EC2 fleet host, "<role id>:<instance id>": the
        // ${aws:userid} that scopes its S3 keys (deploy/aws/README.md).
        if let Some(h) = &a.host
            && (h.is_empty()
                || h.starts_with('.')
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        {
            return Err(Invalid(format!("audit.host {h:?} must be a plain name")));
        }
        steer::validate(self)?;
        identity::validate(self)?;
        policy::validate(&self.policy)?;
        approvals::validate(self)?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(Invalid(format!("log.level {:?}: {e}", self.log.level)));
        }
        Ok(())
    }

    /// Where tool pins live: `policy.pins_file`, else beside the audit
    /// directory, so every agent (and every test agent) keeps its own.
    pub fn pins_path(&self) -> PathBuf {
        self.or_beside_audit(&self.policy.pins_file, "tool-pins.json")
    }

    /// The approvals database: `approvals.db`, else beside the audit
    /// directory.
    pub fn approvals_db_path(&self) -> PathBuf {
        self.or_beside_audit(&self.approvals.db, "approvals.db")
    }

    /// The key of the `hash` masking strategy: `mask.hash_key`, else
    /// beside the audit directory.
    pub fn mask_key_path(&self) -> PathBuf {
        self.or_beside_audit(&self.mask.hash_key, "mask-hash.key")
    }

    /// Where the last good policy bundle is kept: `policy.bundle_cache`,
    /// else beside the audit directory.
    pub fn bundle_cache_path(&self) -> PathBuf {
        self.or_beside_audit(&self.policy.bundle_cache, "policy-bundle.json")
    }

    /// `set` if given, else `name` beside the audit directory (in
    /// /var/lib/mcp-interceptor if that directory has no parent, e.g. `/`).
    fn or_beside_audit(&self, set: &Option<PathBuf>, name: &str) -> PathBuf {
        if let Some(path) = set {
            return path.clone();
        }
        self.audit
            .dir
            .parent()
            .unwrap_or(Path::new("/var/lib/mcp-interceptor"))
            .join(name)
    }

    /// The rule for a destination port, if it is intercepted.
    pub fn rule(&self, port: u16) -> Option<&PortRule> {
        self.intercept.ports.iter().find(|r| r.port == port)
    }
}

#[cfg(test)]
mod tests;
