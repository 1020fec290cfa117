//! The agent's control plane: a local admin socket (guarded by file
//! permissions; callers are named by their Unix user through
//! `SO_PEERCRED` and `[admin] local_users`) and an optional HTTP listener
//! (every request needs an OIDC bearer token for `admin.audiences`; TLS
//! with `[tls]` cert and key). Both serve the same API (`api`): approvals
//! and grants.
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod metrics;

use std::{
    convert::Infallible,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};

use crate::{
    approval::{Actor, Approvals, human_key},
    config::{Admin, LocalUser},
    identity::Identity,
};

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin Unix socket could not be created.
    #[error("admin socket {path}: {source}")]
    Socket {
        /// The socket's path.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The configured socket group does not exist.
    #[error("admin socket group {0:?} does not exist")]
    Group(String),
    /// The admin TCP listener could not bind.
    #[error("admin listener {addr}: {source}")]
    Listen {
        /// The address it tried to bind.
        addr: std::net::SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// What the API needs; identity and local users follow config reloads.
pub struct State {
    /// The approval queue and grants the API acts on.
    pub approvals: Arc<Approvals>,
    identity: RwLock<Arc<Identity>>,
    local_users: RwLock<Vec<LocalUser>>,
    /// `admin.audiences`: what a bearer token on the listener must name.
    audiences: RwLock<Vec<String>>,
    /// Counters the metrics endpoint exports.
    pub metrics: Arc<metrics::Metrics>,
    /// Where the metrics endpoint reads gauges from.
    pub sources: metrics::Sources,
}

impl State {
    /// Builds the shared state the admin API serves from.
    pub fn new(
        identity: Arc<Identity>,
        admin: &Admin,
        metrics: Arc<metrics::Metrics>,
        sources: metrics::Sources,
    ) -> Arc<Self> {
        Arc::new(Self {
            approvals: sources.approvals.clone(),
            identity: RwLock::new(identity),
            local_users: RwLock::new(admin.local_users.clone()),
            audiences: RwLock::new(admin.audiences.clone()),
            metrics,
            sources,
        })
    }

    /// A reloaded config's identity stage and local users.
    pub fn update(&self, identity: Arc<Identity>, admin: &Admin) {
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = identity;
        *self.local_users.write().unwrap_or_else(|p| p.into_inner()) = admin.local_users.clone();
        *self.audiences.write().unwrap_or_else(|p| p.into_inner()) = admin.audiences.clone();
    }

    /// The audiences admin tokens must carry.
    pub fn admin_audiences(&self) -> Vec<String> {
        self.audiences
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The identity verifier that authenticates admin callers.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The actor for a local Unix user.
    fn local(&self, uid: u32) -> Actor {
        let name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid{uid}"));
        let users = self.local_users.read().unwrap_or_else(|p| p.into_inner());
        match users.iter().find(|u| u.user == name) {
            Some(u) => Actor {
                subject: u.subject.clone(),
                issuer: String::new(),
                groups: u.groups.clone(),
                via: format!("local:{name}"),
                human: match (&u.oidc_issuer, &u.oidc_subject) {
                    (Some(i), Some(s)) => human_key(i, s),
                    _ => human_key("", &u.subject),
                },
            },
            None => Actor {
                subject: format!("local:{name}"),
                issuer: String::new(),
                groups: Vec::new(),
                via: format!("local:{name}"),
                human: human_key("", &format!("local:{name}")),
            },
        }
    }
}

/// Binds the admin socket (replacing a stale one) with its permissions
/// and serves it until the process ends.
pub fn serve_socket(admin: &Admin, state: Arc<State>) -> Result<(), AdminError> {
    let path = admin.socket.clone();
    let err = |source| AdminError::Socket {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(&path).map_err(err)?;
    set_permissions(&path, admin).inspect_err(|_| {
        let _ = std::fs::remove_file(&path);
    })?;
    tracing::info!(socket = %path.display(), mode = format!("{:o}", admin.socket_mode), "admin socket listening");
    tokio::spawn(async move {
        loop {
            let Some((stream, _)) = accepted(listener.accept().await, "admin socket").await else {
                continue;
            };
            let uid = match stream.peer_cred() {
                Ok(c) => c.uid(),
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket: no peer credentials; refused");
                    continue;
                }
            };
            let actor = state.local(uid);
            let state = state.clone();
            tokio::spawn(serve_conn(stream, state, Some(actor)));
        }
    });
    Ok(())
}

fn set_permissions(path: &Path, admin: &Admin) -> Result<(), AdminError> {
    let err = |source| AdminError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(g) = &admin.socket_group {
        let group = nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .ok_or_else(|| AdminError::Group(g.clone()))?;
        nix::unistd::chown(path, None, Some(group.gid)).map_err(|e| err(e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(admin.socket_mode)).map_err(err)
}

/// Serves the HTTP admin listener (OIDC bearer tokens only), with TLS
/// when `tls` is set.
pub async fn serve_tcp(
    addr: std::net::SocketAddr,
    tls: Option<Arc<crate::proxy::tls::TlsServer>>,
    state: Arc<State>,
) -> Result<(), AdminError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Listen { addr, source })?;
    tracing::info!(%addr, tls = tls.is_some(), "admin listener ready");
    tokio::spawn(async move {
        loop {
            let Some((stream, peer)) = accepted(listener.accept().await, "admin listener").await
            else {
                continue;
            };
            let state = state.clone();
            match &tls {
                Some(t) => {
                    let acceptor = t.acceptor.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => serve_conn(s, state, None).await,
                            Ok(Err(e)) => {
                                tracing::info!(%peer, error = %e, "admin TLS handshake failed")
                            }
                            Err(_) => tracing::info!(%peer, "admin TLS handshake timed out"),
                        }
                    });
                }
                None => {
                    tokio::spawn(serve_conn(stream, state, None));
                }
            }
        }
    });
    Ok(())
}

/// One admin connection; `local` names the socket's user, `None` means
/// every request must carry a bearer token.
async fn serve_conn<I>(io: I, state: Arc<State>, local: Option<Actor>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let (state, local) = (state.clone(), local.clone());
        async move { Ok::<_, Infallible>(api::handle(&state, local, req).await) }
    });
    let r = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "admin connection ended");
    }
}

/// The accepted connection; on an error (out of file descriptors, say) a
/// warning and a pause first, so the accept loop does not spin.
async fn accepted<T>(r: std::io::Result<T>, what: &str) -> Option<T> {
    match r {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "{what} accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}
