//! `mcp-interceptor init`: a starter config for the MCP servers listening
//! on this host. Listening TCP sockets come from /proc/net/tcp{,6}; each
//! is probed on loopback (a bounded HTTP `initialize` on the usual MCP
//! paths, and a GET of the legacy SSE endpoint), and only ports that
//! answer like an MCP server become `[[intercept.ports]]` rules, named
//! after the process that owns them.
#![forbid(unsafe_code)]

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// A listening socket from /proc/net.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The address it listens on.
    pub addr: IpAddr,
    /// The port it listens on.
    pub port: u16,
    /// The socket's inode.
    pub inode: u64,
}

/// An MCP server found by probing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The port found.
    pub port: u16,
    /// The paths that answered like MCP (`/mcp`, `/sse`, ...).
    pub paths: Vec<String>,
    /// `comm` of the owning process, when it could be read.
    pub process: Option<String>,
    /// `serverInfo.name` from the answer to `initialize`.
    pub server_name: Option<String>,
}

/// Parses /proc/net/tcp or tcp6 text: the sockets in LISTEN (0A).
pub fn parse_proc_net(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            if *state != "0A" {
                return None;
            }
            let (hex_addr, hex_port) = local.split_once(':')?;
            let port = u16::from_str_radix(hex_port, 16).ok()?;
            let addr = parse_hex_addr(hex_addr, v6)?;
            Some(Listener {
                addr,
                port,
                inode: inode.parse().ok()?,
            })
        })
        .collect()
}

/// /proc/net addresses are the kernel's words in host order (little
/// endian here), 4 bytes per word.
fn parse_hex_addr(hex: &str, v6: bool) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if v6 {
        let b: [u8; 16] = bytes.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        let b: [u8; 4] = bytes.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    }
}

/// Socket inode → process name, from /proc/<pid>/fd (best effort: other
/// users' processes are unreadable without root).
fn owners() -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let pid = p.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(p.path().join("comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && let Some(inode) = link
                    .to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse().ok())
            {
                out.insert(inode, comm.clone());
            }
        }
    }
    out
}

/// One bounded HTTP exchange; the response text (head and body).
fn http(addr: SocketAddr, request: &[u8], limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    s.write_all(request).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the answer names itself, the peer closes, or time is up:
    // an SSE stream never closes on its own.
    while Instant::now() < deadline && buf.len() < 64 * 1024 {
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .ok()?;
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&buf);
        if text.contains("\"serverInfo\"") || text.contains("event: endpoint") {
            break;
        }
    }
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcp-interceptor-init","version":"1"}}}"#;

/// Whether `port` (reached at `ip`) answers like an MCP server, and on
/// which paths.
pub fn probe(ip: IpAddr, port: u16, limit: Duration) -> Option<(Vec<String>, Option<String>)> {
    let addr = SocketAddr::new(ip, port);
    let mut paths = Vec::new();
    let mut name = None;
    for path in ["/mcp", "/"] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INITIALIZE}",
            INITIALIZE.len()
        );
        if let Some(text) = http(addr, req.as_bytes(), limit)
            && text.contains("\"serverInfo\"")
        {
            paths.push(path.to_string());
            name = name.or_else(|| server_name(&text));
            break;
        }
    }
    let get = format!(
        "GET /sse HTTP/1.1\r\nHost: localhost:{port}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    if let Some(text) = http(addr, get.as_bytes(), limit)
        && text.contains("event: endpoint")
    {
        paths.push("/sse".into());
    }
    (!paths.is_empty()).then_some((paths, name))
}

fn server_name(text: &str) -> Option<String> {
    let i = text.find("\"serverInfo\"")?;
    let rest = text.get(i..)?;
    let j = rest.find("\"name\"")?;
    let after = rest
        .get(j + 6..)?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let v = after.strip_prefix('"')?;
    Some(v.get(..v.find('"')?)?.to_string())
}

/// Every MCP server listening on this host (in this network namespace),
/// except the ports in `skip` (the agent's own).
pub fn discover(skip: &[u16], limit: Duration) -> Vec<Found> {
    let mut listeners = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(t) = std::fs::read_to_string(file) {
            listeners.extend(parse_proc_net(&t, v6));
        }
    }
    let owners = owners();
    // One probe per port, on loopback of the family it listens on.
    let mut by_port: BTreeMap<u16, Listener> = BTreeMap::new();
    for l in listeners {
        if !skip.contains(&l.port) {
            by_port.entry(l.port).or_insert(l);
        }
    }
    by_port
        .into_values()
        .filter_map(|l| {
            let ip = match l.addr {
                IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                a => a,
            };
            let (paths, server_name) = probe(ip, l.port, limit)?;
            Some(Found {
                port: l.port,
                paths,
                process: owners.get(&l.inode).cloned(),
                server_name,
            })
        })
        .collect()
}

/// Who the starter config lets in: callers with a token from an OIDC
/// issuer, or, when the operator asks for it by name, anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callers {
    /// Bearer tokens from this issuer, for this audience.
    Oidc {
        /// The issuer URL.
        issuer: String,
        /// The audience tokens must name.
        audience: String,
    },
    /// No identity source: `allow_anonymous = true`, said loudly.
    Anonymous,
}

/// The starter config for `found`: who may call (`callers`), and the
/// policy directory, whose policies start as the starter policy
/// ([`STARTER_POLICY`]): no tool, resource or prompt is permitted until
/// the operator writes a policy for it. Default deny from the first start.
pub fn render(found: &[Found], callers: &Callers, policy_dir: &std::path::Path) -> String {
    let mut s = String::from(
        "# mcp-interceptor starter config, written by `mcp-interceptor init`.\n\
         # Every key and its default: /usr/share/mcp-interceptor/config.example.toml.\n\
         # Check it with `mcp-interceptor check-config -c FILE`, then\n\
         # `mcp-interceptor doctor --preflight -c FILE` before the first start.\n\n\
         [intercept]\nmode = \"ebpf\"\n# Connections to these ports are refused while the agent is down.\nfail = \"closed\"\n",
    );
    if found.is_empty() {
        s.push_str("\n# No MCP server answered on this host. Add one rule per server:\n# [[intercept.ports]]\n# port = 8080\n");
    }
    for f in found {
        s.push_str(&port_rule(f));
    }
    match callers {
        Callers::Oidc { issuer, audience } => s.push_str(&format!(
            "\n[identity]\nallow_anonymous = false\n[[identity.oidc]]\nissuer = {}\naudiences = [{}]\n",
            toml_string(issuer),
            toml_string(audience)
        )),
        Callers::Anonymous => s.push_str(
            "\n# ANONYMOUS CALLERS ALLOWED (init --allow-anonymous): requests without\n\
             # credentials are served, as principal auth_method \"anonymous\". Add an\n\
             # issuer and set this to false (or configure mTLS in [tls]):\n\
             # [[identity.oidc]]\n# issuer = \"https://login.example.com/realms/main\"\n# audiences = [\"https://mcp.example.com\"]\n\
             [identity]\nallow_anonymous = true\n",
        ),
    }
    s.push_str(&format!(
        "\n[policy]\n# Every .cedar file here. Anything no policy permits is denied: at first\n\
         # callers may open a session and list, and call nothing. Write a policy\n\
         # per thing they may do (examples: /usr/share/mcp-interceptor/policy/examples),\n\
         # then `mcp-interceptor policy test`.\nfiles = [{}]\n\n\
         [audit]\ndir = \"/var/lib/mcp-interceptor/audit\"\n",
        toml_string(&policy_dir.display().to_string())
    ));
    s
}

/// The policy `init` puts in an empty policy directory: identified
/// callers may open a session and list what the server offers (each list
/// filtered to what they may use, which is nothing yet).
pub const STARTER_POLICY: &str = r#"// Written by `mcp-interceptor init`. Every .cedar file in this directory
// is loaded; anything no policy permits is denied. This one lets
// identified (not anonymous) callers open a session and list; the lists
// are filtered to what each caller may use: nothing, until you add a
// policy such as (more in /usr/share/mcp-interceptor/policy/examples):
//
// @id("dev-read-files")
// permit (
//   principal in Mcp::Group::"dev",
//   action == Mcp::Action::"tools/call",
//   resource in Mcp::Server::"files"
// )
// when { resource.name == "read_file" };
@id("starter-session")
permit (
  principal,
  action in [
    Mcp::Action::"initialize",
    Mcp::Action::"ping",
    Mcp::Action::"tools/list",
    Mcp::Action::"resources/list",
    Mcp::Action::"resources/templates/list",
    Mcp::Action::"prompts/list",
    Mcp::Action::"server/discover"
  ],
  resource
)
when { principal.auth_method != "anonymous" };
"#;

/// A TOML basic string holding `s` (quotes and control characters escaped).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One `[[intercept.ports]]` rule for a found server, with what was found.
fn port_rule(f: &Found) -> String {
    let who = match (&f.process, &f.server_name) {
        (Some(p), Some(n)) => format!("{p}, serverInfo.name {n:?}"),
        (Some(p), None) => p.clone(),
        (None, Some(n)) => format!("serverInfo.name {n:?}"),
        (None, None) => "owner unknown".into(),
    };
    let name: String = f
        .server_name
        .as_deref()
        .or(f.process.as_deref())
        .unwrap_or("mcp")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut s = format!(
        "\n# Found: port {} ({who}); MCP answered on {}.\n[[intercept.ports]]\nport = {}\nname = \"{name}-{}\"\n",
        f.port,
        f.paths.join(", "),
        f.port,
        f.port
    );
    if f.paths.iter().any(|p| p == "/") {
        s.push_str("mcp_paths = [\"/\", \"/mcp\", \"/sse\", \"/messages\", \"/message\"]\n");
    }
    s.push_str(
        "# Non-MCP requests are refused; list paths the server must still\n\
         # serve unjudged, e.g. pass_through = [\"/healthz\"]\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_listeners_are_parsed() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 20 0\n\
                  1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0 20 0\n\
                  2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0 20 0\n";
        let l = parse_proc_net(v4, false);
        assert_eq!(
            l,
            vec![
                Listener {
                    addr: "127.0.0.1".parse().unwrap(),
                    port: 8080,
                    inode: 12345
                },
                Listener {
                    addr: "0.0.0.0".parse().unwrap(),
                    port: 22,
                    inode: 999
                },
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st\n\
                  0: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n";
        let l = parse_proc_net(v6, true);
        assert_eq!(l[0].addr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((l[0].port, l[0].inode), (9090, 777));
    }

    #[test]
    fn the_starter_config_loads() {
        let found = vec![Found {
            port: 8080,
            paths: vec!["/mcp".into()],
            process: Some("python3".into()),
            server_name: Some("files \"v2\"".into()),
        }];
        let oidc = Callers::Oidc {
            issuer: "https://idp.example".into(),
            audience: "mcp".into(),
        };
        let dir = std::path::Path::new("/etc/mcp-interceptor/policy");
        for callers in [Callers::Anonymous, oidc] {
            let text = render(&found, &callers, dir);
            let cfg: crate::config::Config =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(cfg.intercept.ports[0].port, 8080);
            assert_eq!(
                cfg.intercept.ports[0].name.as_deref(),
                Some("files--v2--8080")
            );
            assert_eq!(cfg.identity.allow_anonymous, callers == Callers::Anonymous);
            assert_eq!(cfg.policy.files, vec![dir.to_path_buf()]);
        }
        let p = crate::policy::Policies::from_sources(&[(
            "starter.cedar".into(),
            STARTER_POLICY.into(),
        )])
        .expect("the starter policy validates against the schema");
        assert_eq!(p.count, 1);
        assert!(
            server_name(r#"{"result":{"serverInfo":{"name": "crm","version":"1"}}}"#)
                == Some("crm".into())
        );
    }
}
