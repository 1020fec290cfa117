//! `mcp-peer raw`: one hand-written HTTP/1.1 `initialize` POST from a plain
//! socket, optionally bound to a chosen source address and port.
//!
//! No MCP SDK here on purpose: tests need control of the socket before
//! connect (source port, privileged or not), which no HTTP client exposes.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};

#[derive(clap::Args, Debug)]
pub struct RawArgs {
    /// Server address, e.g. 127.0.0.1:8080 or [::1]:8080.
    #[arg(long)]
    connect: SocketAddr,
    /// Local address to bind before connecting (port 0: any port).
    #[arg(long)]
    source: Option<SocketAddr>,
    /// Bound on the whole run.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

/// Each failure class has its own exit code so tests can tell "the kernel
/// refused the source port" from "the server was unreachable".
enum Failure {
    Bind(io::Error),
    Connect(io::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Self::Other(err)
    }
}

/// Runs the exchange, prints the outcome, and returns the exit code.
pub fn run(args: RawArgs) -> u8 {
    match exchange(&args) {
        Ok((status, local)) => {
            println!("{}", json!({"status": status, "local": local.to_string()}));
            0
        }
        Err(Failure::Bind(err)) => {
            eprintln!("bind failed: {err}");
            3
        }
        Err(Failure::Connect(err)) => {
            eprintln!("connect failed: {err}");
            2
        }
        Err(Failure::Other(err)) => {
            eprintln!("raw: {err:#}");
            1
        }
    }
}

fn exchange(args: &RawArgs) -> Result<(u16, SocketAddr), Failure> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| anyhow!("timed out after {}s", args.timeout_secs))
    };

    let socket = Socket::new(
        Domain::for_address(args.connect),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .context("creating socket")?;
    // Lets tests reuse a fixed source port right after a previous run's
    // connection sits in TIME_WAIT.
    socket
        .set_reuse_address(true)
        .context("setting SO_REUSEADDR")?;
    if let Some(source) = args.source {
        socket.bind(&source.into()).map_err(Failure::Bind)?;
        if source.port() != 0 {
            // Close with RST rather than FIN: no TIME_WAIT is left on this
            // 4-tuple, so a test can rerun with the same fixed source port
            // straight away instead of getting EADDRNOTAVAIL from connect.
            socket
                .set_linger(Some(Duration::ZERO))
                .context("setting SO_LINGER")?;
        }
    }
    socket
        .connect_timeout(&args.connect.into(), remaining()?)
        .map_err(|err| match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                Failure::Other(anyhow!("connect timed out after {}s", args.timeout_secs))
            }
            _ => Failure::Connect(err),
        })?;
    let mut stream: TcpStream = socket.into();
    let local = stream.local_addr().context("reading local address")?;

    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "mcp-peer-raw", "version": env!("CARGO_PKG_VERSION")},
        },
    })
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\n\
         Host: {host}\r\n\
         Content-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n\
         Content-Length: {length}\r\n\
         Connection: close\r\n\
         \r\n\
         {body}",
        host = args.connect,
        length = body.len(),
    );
    stream
        .set_write_timeout(Some(remaining()?))
        .context("setting write timeout")?;
    stream
        .write_all(request.as_bytes())
        .context("sending request")?;

    let head = read_head(&mut stream, remaining)?;
    Ok((parse_status(&head)?, local))
}

/// Reads until the end of the response head; the body (an SSE stream,
/// possibly long-lived) is of no interest.
fn read_head(
    stream: &mut TcpStream,
    remaining: impl Fn() -> anyhow::Result<Duration>,
) -> anyhow::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            bail!("response head larger than 64 KiB");
        }
        stream
            .set_read_timeout(Some(remaining()?))
            .context("setting read timeout")?;
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                bail!("timed out waiting for the response head")
            }
            Err(err) => return Err(err).context("reading response"),
        };
        if read == 0 {
            // A complete status line is still an HTTP response even if the
            // peer closed before the blank line.
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn parse_status(head: &str) -> anyhow::Result<u16> {
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code
            .parse()
            .with_context(|| format!("bad status line {status_line:?}")),
        _ => bail!("no HTTP response (got {status_line:?})"),
    }
}
