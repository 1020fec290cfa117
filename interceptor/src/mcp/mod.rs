//! MCP over HTTP: which requests carry MCP, each JSON-RPC message parsed
//! both ways, paired with its answer, and run through the pipeline.
//!
//! Transports, by revision:
//! - Streamable HTTP (2025-03-26, 2025-06-18, 2025-11-25): POST answered
//!   with `application/json` or `text/event-stream`, GET stream, DELETE to
//!   end a session, `Mcp-Session-Id`, `MCP-Protocol-Version`, batches.
//! - Legacy HTTP+SSE (2024-11-05): a GET stream whose `endpoint` event names
//!   the message endpoint; POSTs there; answers on the GET stream.
//! - Stateless (2026-07-28): no session; `Mcp-Method` / `Mcp-Name` headers
//!   mirror the body and are checked against it (`stateless`).
#![forbid(unsafe_code)]

mod auth;
mod exchange;
mod handler;
mod held;
pub mod ids;
pub mod meta;
pub mod rounds;
pub mod session;
pub mod sse;
pub mod stateless;
mod stream;
pub mod tasks;

pub use handler::McpHandler;
