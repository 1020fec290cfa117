//! A real OIDC issuer for the tests: `tests/peers/oidc_issuer.py`
//! (oidc-provider-mock, from the repo's `.venv`) inside a namespace, driven
//! over HTTP from a thread that entered that namespace. Besides discovery,
//! JWKS, the authorization-code flow and per-user claims, it mints hostile
//! tokens (`alg=none`, HS256 keyed with the public key, an unknown key) and
//! rotates its signing key, so a verifier can be tested against each.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    os::fd::AsFd,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{NetNs, Proc, s3::venv_bin};

/// Bound on every request to the issuer (connect, each read and write).
const TIMEOUT: Duration = Duration::from_secs(15);
/// The authorization code goes to this redirect URI, which nothing serves:
/// the code is read from the 302's Location.
const REDIRECT_URI: &str = "http://127.0.0.1/callback";

pub struct Issuer {
    proc: Proc,
    ns: String,
    /// `http://127.0.0.1:P`: the issuer identifier, as `iss` and in the
    /// metadata.
    pub url: String,
    addr: SocketAddr,
}

/// One HTTP response from the issuer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Status line and header lines, as received.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Issuer {
    /// Starts the issuer on 127.0.0.1:`port` inside `ns`; waits (≤ 30 s) for
    /// it to listen. Its logs go to `dir`.
    pub fn start(ns: &NetNs, port: u16, dir: &Path) -> Self {
        Self::start_on(ns, "127.0.0.1", port, dir)
    }

    /// Like [`Issuer::start`], bound to `host` (an IPv4 or IPv6 address of
    /// `ns`), for clients in other namespaces: the issuer is then
    /// `http://host:port` (brackets for IPv6).
    pub fn start_on(ns: &NetNs, host: &str, port: u16, dir: &Path) -> Self {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let url = format!("http://{authority}");
        let args = [
            script().display().to_string(),
            "--host".into(),
            host.into(),
            "--port".into(),
            port.to_string(),
            "--issuer".into(),
            url.clone(),
        ];
        let mut proc = Proc::spawn(
            &format!("oidc-issuer-{}-{port}", ns.name()),
            Some(ns.name()),
            &venv_bin("python"),
            &args,
            dir,
        );
        proc.wait_for_output(&format!("issuer ready {url}"), Duration::from_secs(30));
        let addr = authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("issuer address {authority}"));
        Self {
            proc,
            ns: ns.name().to_string(),
            url,
            addr,
        }
    }

    /// The running process (logs in `proc.stderr()`).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Sets the extra claims of user `sub` (e.g. `{"groups": ["dev"]}`);
    /// they go into that user's ID and access tokens from then on.
    pub fn set_user(&self, sub: &str, claims: Value) {
        let path = format!("/users/{}", encode(sub));
        self.expect(204, "PUT", &path, Some(("application/json", claims.into())));
    }

    /// The authorization-code flow as a browser and a confidential client
    /// would run it: the authorization form POSTed with `sub`, the code taken
    /// from the redirect, exchanged at the token endpoint. `resource` adds the
    /// RFC 8707 parameter to both requests (the access token's `aud`).
    /// Returns the token response: `access_token`, `id_token` (when `scope`
    /// has `openid`), `refresh_token`, `scope`, `expires_in`.
    pub fn login(&self, sub: &str, client_id: &str, scope: &str, resource: Option<&str>) -> Value {
        let state = "mcpi-login-state";
        let mut query = vec![
            ("client_id", client_id),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("scope", scope),
            ("state", state),
        ];
        query.extend(resource.map(|r| ("resource", r)));
        let path = format!("/oauth2/authorize?{}", form(&query));
        let form_body = form(&[("sub", sub)]);
        let r = self.expect(
            302,
            "POST",
            &path,
            Some(("application/x-www-form-urlencoded", form_body.into())),
        );
        let location = r
            .header("location")
            .unwrap_or_else(|| panic!("authorization redirect without Location:\n{}", r.head));
        let params = query_params(location);
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in the authorization redirect {location}"))
        };
        assert_eq!(param("state"), state, "state in {location}");
        let code = param("code");
        let mut token = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", client_id),
            // The issuer accepts any secret for a client it has not registered.
            ("client_secret", "mcpi-secret"),
        ];
        token.extend(resource.map(|r| ("resource", r)));
        let r = self.expect(
            200,
            "POST",
            "/oauth2/token",
            Some(("application/x-www-form-urlencoded", form(&token).into())),
        );
        json_of(&r, "token response")
    }

    /// A JWT with exactly `claims` as payload. `header` fields are added to
    /// (or, when `null`, removed from) the default header. `sign`:
    /// * `"key"`: RS256 with the current key, its `kid`;
    /// * `"none"`: `alg=none`, no `kid`, empty signature;
    /// * `"hs256-public"`: HS256 keyed with the current public key in PEM
    ///   (SubjectPublicKeyInfo) form, current `kid` (key confusion);
    /// * `"other-key"`: RS256 with a fresh key that no JWKS lists, and its
    ///   new `kid`.
    pub fn mint(&self, claims: Value, header: Value, sign: &str) -> String {
        let header = if header.is_null() { json!({}) } else { header };
        let body = json!({"claims": claims, "header": header, "sign": sign});
        let r = self.expect(
            200,
            "POST",
            "/test/mint",
            Some(("application/json", body.into())),
        );
        r.text()
    }

    /// Replaces the signing key with a new one; the JWKS then lists only the
    /// new key. Returns its `kid`.
    pub fn rotate(&self) -> String {
        self.expect(200, "POST", "/test/rotate", None).text()
    }

    /// The `kid` of the current signing key.
    pub fn kid(&self) -> String {
        self.expect(200, "GET", "/test/kid", None).text()
    }

    /// `GET <url>/jwks`.
    pub fn jwks(&self) -> Value {
        self.get_json("/jwks")
    }

    /// `GET <url><path>`, which must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.expect(200, "GET", path, None);
        json_of(&r, path)
    }

    /// One request from inside the namespace; `body` is (content type,
    /// bytes or JSON). Panics only if the issuer cannot be reached.
    pub fn request(&self, method: &str, path: &str, body: Option<(&str, Body)>) -> Response {
        let body = body.map(|(t, b)| (t.to_string(), b.0));
        let (ns, addr, host) = (self.netns_path(), self.addr, self.host());
        let (m, p) = (method.to_string(), path.to_string());
        let shown = format!("{method} {}{path}", self.url);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).map_err(|e| format!("open {ns}: {e}"))?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {ns}: {e}"))?;
            exchange(addr, &host, &m, &p, body.as_ref())
        })
        .join()
        .expect("issuer request thread")
        .unwrap_or_else(|e| panic!("{shown}: {e}"))
    }

    fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        body: Option<(&str, Body)>,
    ) -> Response {
        let r = self.request(method, path, body);
        assert_eq!(
            r.status,
            status,
            "{method} {}{path}: HTTP {} (wanted {status})\n{}\n\n{}",
            self.url,
            r.status,
            r.head,
            r.text()
        );
        r
    }

    fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }

    fn host(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }
}

/// A request body: bytes, text, or JSON.
pub struct Body(Vec<u8>);

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Self(b)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self(s.into_bytes())
    }
}

impl From<&str> for Body {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Self(v.to_string().into_bytes())
    }
}

fn script() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/oidc_issuer.py");
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

fn exchange(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: Option<&(String, Vec<u8>)>,
) -> Result<Response, String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    let payload = match body {
        Some((content_type, bytes)) => {
            req.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
            bytes.as_slice()
        }
        None => {
            req.push_str("Content-Length: 0\r\n");
            &[]
        }
    };
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(payload);
    s.write_all(&out).map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("read (after {} bytes): {e}", buf.len()))?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let raw = buf[end + 4..].to_vec();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(&raw)? } else { raw };
    Ok(Response { status, head, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let i = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_field = String::from_utf8_lossy(&b[..i]);
        let size_hex = size_field.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|e| format!("chunk size {size_field:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let data = b.get(i + 2..i + 2 + size).ok_or("truncated chunked body")?;
        out.extend_from_slice(data);
        b = b.get(i + 4 + size..).ok_or("truncated chunked body")?;
    }
}

fn json_of(r: &Response, what: &str) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {}", r.text()))
}

/// `application/x-www-form-urlencoded` (also fine as a query string).
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?'));
            }
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The JOSE header of a compact JWT, as JSON.
pub fn jwt_header(token: &str) -> Value {
    jwt_part(token, 0)
}

/// The claims of a compact JWT, as JSON (not verified).
pub fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token
        .split('.')
        .nth(i)
        .unwrap_or_else(|| panic!("not a compact JWT: {token:?}"));
    let bytes =
        base64url(part).unwrap_or_else(|| panic!("JWT part {i} is not base64url: {part:?}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("JWT part {i} is not JSON ({e}): {bytes:?}"))
}

/// Unpadded base64url (RFC 7515 §2); `None` on any other character.
pub fn base64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing character (6 bits) cannot encode a byte.
    (bits < 6).then_some(out)
}
