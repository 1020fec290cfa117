//! mcp-interceptor: a transparent security boundary for MCP servers.
//!
//! Data flows one way: steer -> proxy -> (identity -> mcp -> policy -> mask
//! -> approval -> audit, in later stages). No module reaches back up.

pub mod admin;
pub mod agent;
pub mod approval;
pub mod audit;
pub mod config;
pub mod doctor;
pub mod error;
pub mod escape;
pub mod identity;
pub mod init;
pub mod mask;
pub mod mcp;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod steer;
pub mod telemetry;
