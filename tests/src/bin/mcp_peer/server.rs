//! `mcp-peer server`: an rmcp server behind rmcp's Streamable HTTP service,
//! over plain HTTP or HTTPS, optionally reporting and checking the
//! credentials each request carries.

use std::{
    convert::Infallible,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::LocalSessionManager,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
};
use tokio_rustls::{TlsAcceptor, rustls};
use tower_service::Service;

use super::{
    hostile::{self, Hostile},
    tools::{PeerServer, Shared},
};

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Address to bind, e.g. 127.0.0.1:0 or [::1]:8080 (port 0 picks one).
    #[arg(long)]
    listen: String,
    /// HTTP path the MCP endpoint is served on.
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// Answer POSTs with application/json instead of SSE. rmcp only does
    /// this on its stateless path, so this also turns sessions off (no
    /// Mcp-Session-Id) and a client's sampling answer never reaches
    /// ask_llm, which then reports a timeout after 10 s.
    #[arg(long)]
    json_response: bool,
    /// Print `auth <METHOD> <path> authorization=<value|-> x-upstream-auth=<value|->`
    /// on stdout for every request, so a test can see which credentials
    /// reached the server.
    #[arg(long)]
    log_auth: bool,
    /// Answer 401 `upstream credential missing` to any request whose
    /// Authorization header is not exactly this value.
    #[arg(long, value_name = "VALUE")]
    require_auth: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls-cert: require a client certificate issued by a CA in this
    /// PEM file (the handshake fails without one).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Bend every MCP answer on the wire (see `hostile`): `float-ids`
    /// or `mixed-case-type`.
    #[arg(long, value_enum)]
    hostile: Option<Hostile>,
}

/// What every connection needs besides the MCP service itself.
struct Policy {
    path: String,
    log_auth: bool,
    require_auth: Option<String>,
    hostile: Option<Hostile>,
}

type McpService = StreamableHttpService<PeerServer, LocalSessionManager>;
type HttpResponse = Response<BoxBody<Bytes, Infallible>>;

pub async fn run(args: ServerArgs) -> Result<()> {
    // A path without the slash would silently 404 every request.
    anyhow::ensure!(args.path.starts_with('/'), "--path must start with '/'");
    // Handlers go in before "listening" is printed: a test may send SIGTERM
    // as soon as it reads that line, and must then see a clean exit 0.
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    // Before binding, so a bad certificate fails the run instead of every
    // handshake.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key, args.tls_client_ca.as_deref())?),
        _ => None,
    };

    let listener = TcpListener::bind(args.listen.as_str())
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr().context("reading bound address")?;

    // rmcp rejects any Host but localhost/127.0.0.1/::1 by default (DNS
    // rebinding protection); tests reach this server via arbitrary namespace
    // addresses, possibly through the interceptor, so accept every Host.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    if args.json_response {
        config = config
            .with_legacy_session_mode(false)
            .with_json_response(true);
    }
    let shutdown = config.cancellation_token.clone();
    let shared = Arc::new(Shared::default());
    let mcp: McpService = StreamableHttpService::new(
        move || Ok(PeerServer::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let policy = Arc::new(Policy {
        path: args.path,
        log_auth: args.log_auth,
        require_auth: args.require_auth,
        hostile: args.hostile,
    });

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {local}").context("writing to stdout")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);

    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(accept(stream, tls.clone(), mcp.clone(), policy.clone()));
                }
                Err(err) => {
                    // Typically EMFILE; back off instead of spinning on it.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Ends open SSE streams and session workers; the caller exits right after.
    shutdown.cancel();
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

fn tls_acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor> {
    let chain = read_certs(cert)?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    // The provider is named rather than taken from the process default:
    // with more than one compiled in, rustls refuses to guess.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in read_certs(path)? {
                roots
                    .add(ca)
                    .with_context(|| format!("CA certificate in {}", path.display()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("TLS certificate and key")?;
    // hyper here speaks HTTP/1.1 only; a client offered h2 must not get it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept(stream: TcpStream, tls: Option<TlsAcceptor>, mcp: McpService, policy: Arc<Policy>) {
    // SSE frames are small writes that must not wait for Nagle.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {err}");
    }
    let peer = stream.peer_addr().ok();
    match tls {
        None => serve_connection(stream, peer, mcp, policy).await,
        // In the connection's own task, so a stalled handshake holds up
        // nobody else.
        Some(tls) => match tls.accept(stream).await {
            Ok(stream) => serve_connection(stream, peer, mcp, policy).await,
            Err(err) => tracing::warn!("TLS handshake with {peer:?}: {err}"),
        },
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: Option<std::net::SocketAddr>,
    mcp: McpService,
    policy: Arc<Policy>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut mcp = mcp.clone();
        let policy = policy.clone();
        async move {
            tracing::debug!(
                "{peer:?}: {} {} session={:?}",
                request.method(),
                request.uri(),
                request.headers().get("mcp-session-id"),
            );
            let authorization = request.headers().get(hyper::header::AUTHORIZATION);
            if policy.log_auth {
                log_auth(&request);
            }
            if let Some(required) = &policy.require_auth
                && authorization.map(|v| v.as_bytes()) != Some(required.as_bytes())
            {
                return Ok(plain(
                    StatusCode::UNAUTHORIZED,
                    "upstream credential missing",
                ));
            }
            if request.uri().path() == policy.path {
                let resp = mcp.call(request).await;
                match policy.hostile {
                    Some(mode) => resp.map(|r| hostile::mangle(mode, r)),
                    None => resp,
                }
            } else {
                Ok(plain(StatusCode::NOT_FOUND, "Not Found"))
            }
        }
    });
    if let Err(err) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!("connection from {peer:?}: {err}");
    }
}

/// One stdout line per request; a whole line per write so concurrent
/// connections never interleave within a line.
fn log_auth(request: &Request<Incoming>) {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .map_or_else(|| "-".into(), |v| String::from_utf8_lossy(v.as_bytes()))
    };
    let line = format!(
        "auth {} {} authorization={} x-upstream-auth={}\n",
        request.method(),
        request.uri().path(),
        header("authorization"),
        header("x-upstream-auth"),
    );
    let mut stdout = std::io::stdout().lock();
    // Best effort: a test that stopped reading has nothing to learn.
    let _ = stdout.write_all(line.as_bytes());
    let _ = stdout.flush();
}

fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}
