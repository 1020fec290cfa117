//! The CLI's side of the admin API: the local socket (the Unix user is
//! the approver), or the admin listener with a bearer token.

use std::path::PathBuf;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why an admin client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the agent's admin socket {path}: {source} (is the agent running, and may this user open the socket?)"
    )]
    /// The admin socket could not be reached.
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The HTTP exchange with the admin API failed.
    #[error("admin request failed: {0}")]
    Http(String),
    /// The agent refused; its message.
    #[error("{message} (HTTP {status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The agent's message.
        message: String,
    },
}

/// Where the CLI talks to the agent.
#[derive(Debug, Clone)]
pub enum Target {
    /// The admin API's Unix socket at this path.
    Socket(PathBuf),
    /// The admin API over HTTPS.
    Url {
        /// The base URL, e.g. `https://host:port`.
        base: String,
        /// The bearer token sent with each request.
        token: String,
        /// A CA bundle to verify the server with, instead of the system roots.
        ca: Option<PathBuf>,
    },
}

/// One API call; the JSON answer of a 2xx, else the agent's error.
pub async fn call(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, ClientError> {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, text) = match target {
        Target::Socket(sock) => unix(sock, method, path, bytes).await?,
        Target::Url { base, token, ca } => {
            let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
            if let Some(ca) = ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| ClientError::Http(format!("{}: {e}", ca.display())))?;
                let cert = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| ClientError::Http(format!("{}: {e}", ca.display())))?;
                b = b.add_root_certificate(cert);
            }
            let c = b.build().map_err(|e| ClientError::Http(e.to_string()))?;
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let r = c
                .request(method, &url)
                .bearer_auth(token)
                .header(header::CONTENT_TYPE, "application/json")
                .body(bytes)
                .send()
                .await
                .map_err(|e| ClientError::Http(format!("{url}: {e}")))?;
            let status = r.status().as_u16();
            (
                status,
                r.text()
                    .await
                    .map_err(|e| ClientError::Http(e.to_string()))?,
            )
        }
    };
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        let message = v
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        Err(ClientError::Refused { status, message })
    }
}

async fn unix(
    sock: &PathBuf,
    method: Method,
    path: &str,
    body: String,
) -> Result<(u16, String), ClientError> {
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|source| ClientError::Connect {
            path: sock.clone(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
