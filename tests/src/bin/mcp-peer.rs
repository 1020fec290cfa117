//! `mcp-peer`: real MCP peers (rmcp) and a raw-socket prober for the
//! end-to-end tests.
//!
//! stdout carries only machine-readable lines (one per run); everything
//! else goes to stderr. Set `MCP_PEER_LOG=debug` (or trace, info, ...) for
//! rmcp's own logs; the default shows warnings only.

#[path = "mcp_peer/client.rs"]
mod client;
#[path = "mcp_peer/content.rs"]
mod content;
#[path = "mcp_peer/customer.rs"]
mod customer;
#[path = "mcp_peer/hostile.rs"]
mod hostile;
#[path = "mcp_peer/load.rs"]
mod load;
#[path = "mcp_peer/raw.rs"]
mod raw;
#[path = "mcp_peer/server.rs"]
mod server;
#[path = "mcp_peer/tools.rs"]
mod tools;

use std::io::Write;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;

#[derive(Parser, Debug)]
#[command(
    name = "mcp-peer",
    version,
    about = "MCP test peers for mcp-interceptor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve echo, add, lookup_customer, lookup_customer_structured,
    /// fail_lookup, read_file, query, ask_llm, set_echo_description,
    /// stream_customers and sleep, the prompt customer_brief and the
    /// resources customer://<id> over Streamable HTTP until SIGTERM/SIGINT;
    /// prints `listening <addr>` once bound.
    Server(server::ServerArgs),
    /// Initialize, list tools, optionally call one, close; prints one JSON
    /// line (server_name, tools, tool_descriptions, result,
    /// sampling_requests, sampling_params, log_messages); exit 1 on any
    /// failure.
    Client(client::ClientArgs),
    /// Send one raw HTTP initialize from an optionally bound source address;
    /// prints `{"status", "local"}`; exit 3 bind failed, 2 connect failed,
    /// 1 other.
    Raw(raw::RawArgs),
    /// Call echo `--count` times in one session, printing `ack <text>` as
    /// each answer arrives; exit 1 at the first failure.
    Load(load::LoadArgs),
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|err| {
        let _ = err.print();
        // clap's own exit code for usage errors is 2, which `raw` reserves
        // for "connect failed"; help and version still exit 0.
        std::process::exit(if err.use_stderr() { 1 } else { 0 })
    });
    init_logging();
    let code = match cli.command {
        Command::Raw(args) => raw::run(args),
        Command::Load(args) => in_runtime("load", load::run(args)).map_or(1, |()| 0),
        Command::Server(args) => in_runtime("server", server::run(args)).map_or(1, |()| 0),
        Command::Client(args) => match in_runtime("client", client::run(args)) {
            Some(line) => {
                println!("{line}");
                0
            }
            None => 1,
        },
    };
    // Best effort: a closed stdout has nobody left to tell.
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(code))
}

/// Runs `task` on a fresh runtime; reports its error on stderr.
fn in_runtime<T>(what: &str, task: impl Future<Output = anyhow::Result<T>>) -> Option<T> {
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let outcome = runtime.block_on(task);
            // Dropping the runtime would wait for blocking tasks (e.g. name
            // resolution) and could turn a bounded run into a hang.
            runtime.shutdown_background();
            outcome
        });
    match outcome {
        Ok(value) => Some(value),
        Err(err) => {
            eprintln!("mcp-peer {what}: {err:#}");
            None
        }
    }
}

fn init_logging() {
    let level = std::env::var("MCP_PEER_LOG")
        .ok()
        .and_then(|value| value.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
}
