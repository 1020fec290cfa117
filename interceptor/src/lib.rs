//! mcp-interceptor: a transparent security boundary for MCP servers.
//!
//! A request flows steer -> proxy -> identity -> mcp -> pipeline phases
//! (policy -> tool pins -> mask -> approval) -> audit.
//!
//! Imports follow one order, and `tests/imports.rs` keeps it: a module
//! builds only on the leaves and on the modules listed before it, never on
//! one listed after it.
//!
//! - Leaves, usable by every module, each importing only leaves before it:
//!   `escape`, `conn` (connection facts: `ConnInfo`, address newtypes, TLS
//!   peer), `jsonrpc` (JSON-RPC messages), `reqpath` (request paths read as
//!   servers route them), `config`, `telemetry`.
//! - Stages, in order: `identity` (-> `Caller`), `pipeline` (the phase
//!   trait, the per-message context, exchange and lifecycle events),
//!   `policy`, `mask`, `approval`, `audit` (the phases: they see neither
//!   sockets, nor HTTP, nor `mcp`; approvals and tool pins reach the audit
//!   through `pipeline::Events`, its one sink), then `steer`, `proxy`
//!   (TCP, TLS and HTTP, never MCP), and `mcp`, which runs the phases over
//!   the proxy's HTTP.
//! - Wiring, which may import anything and which nothing imports: `agent`,
//!   `admin`, `doctor`, `report`, `init`, and the binary's command files.

#![warn(missing_docs)]
#![warn(
    clippy::undocumented_unsafe_blocks,
    clippy::allow_attributes_without_reason
)]

pub mod admin;
pub mod agent;
pub mod approval;
pub mod audit;
pub mod config;
pub mod conn;
pub mod doctor;
pub mod error;
pub mod escape;
pub mod identity;
pub mod init;
pub mod jsonrpc;
pub mod mask;
pub mod mcp;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod reqpath;
pub mod steer;
pub mod telemetry;
