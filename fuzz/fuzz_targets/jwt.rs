//! Bearer tokens: the `Authorization` header of every request reaches
//! `Identity::authenticate`, which splits `Bearer <token>`, reads the JOSE
//! header and the unverified `iss` (`identity::oidc::peek`, which picks
//! the issuer), refuses `none`/HMAC/unlisted algorithms, picks a key by
//! `kid`, verifies (jsonwebtoken) and maps the claims (subject and groups
//! at dotted paths, scopes, required scopes).
//!
//! Two modes, by the first byte's low bit:
//! - raw: the rest is the header value, as a client sends it;
//! - signed: the rest is `<JOSE header JSON> NUL <claims JSON>` (no NUL:
//!   claims only, header `{"alg":"EdDSA","kid":"fuzz-ed"}`), signed with
//!   the Ed25519 key the issuers' JWKS holds, so the fuzzer gets past the
//!   signature to the header and claims handling behind it. Bit 1 adds
//!   a valid `iss`/`aud`/`exp` where the claims lack them; bit 2 picks the
//!   second issuer (dotted claim paths, required scope, EdDSA only).
//!
//! The JWKS is served from a thread of this process on 127.0.0.1; keys are
//! fetched once at start (refetches are rate-limited to an hour), so no
//! input waits on the network.
#![no_main]

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use http::{HeaderMap, HeaderValue, header};
use interceptor::{
    config::Config,
    conn::ConnInfo,
    identity::{AuthMethod, Identity, oidc},
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const ISSUER_A: &str = "https://a.fuzz.example";
const ISSUER_B: &str = "https://b.fuzz.example";
/// A 2048-bit RSA public key with no private half anywhere: tokens naming
/// it exercise the RSA path and the key/algorithm mismatch checks.
const RSA_N: &str = "woKsDDgQIy5DoQhVFnfi8QUMqE596hAV0yaQjMeOwo2-3Q6niFkq630VR_EecQA5meIbFcYsc1Umpwp5JxOqTTAJJsknivQ-j-S9-kzG-VUgYeiLv0_94uyjIzWG5_hIqzbzZ98OLWlj5hAMC7IoxyZatMFpkkm0KIgt0ZPAGpHmZ9IjOinDT842Ulny89kkd3-ibM0ncy32a7krRikVFtfpVZmEKkHvxfUcSx4Y0Pha8iq4HMDy9UEWzcnhVEGn9kHI6ILKxmWkFy4zKwA-WNCKFoZoSAs_tOlbhdk0JIoU93J5_bLbLH4qTxG6y8-e3nw-xgsqjoN6_xJrOP8wCQ";

struct World {
    rt: tokio::runtime::Runtime,
    identity: Identity,
    key: SigningKey,
    conn: ConnInfo,
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[0x5a; 32])
}

/// Serves the JWKS to every request, forever.
fn jwks_server(key: &SigningKey) -> String {
    let jwks = json!({ "keys": [
        {
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "fuzz-ed",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
        },
        { "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "fuzz-rsa", "n": RSA_N, "e": "AQAB" },
        // Skipped by the agent: encryption keys and unknown key types.
        { "kty": "RSA", "use": "enc", "kid": "fuzz-enc", "n": RSA_N, "e": "AQAB" },
        { "kty": "XYZ", "kid": "fuzz-odd" },
    ]})
    .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the JWKS server");
    let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
        }
    });
    url
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sign(key: &SigningKey, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let key = key();
        let jwks = jwks_server(&key);
        let toml = format!(
            r#"
[intercept]
mode = "listen"
[[intercept.ports]]
port = 8080
upstream = "127.0.0.1:9"

[[identity.oidc]]
issuer = "{ISSUER_A}"
audiences = ["mcp"]
jwks_url = "{jwks}"
jwks_min_refresh_seconds = 3600
jwks_max_age_seconds = 86400

[[identity.oidc]]
issuer = "{ISSUER_B}"
audiences = ["https://mcp.example/mcp", "mcp"]
jwks_url = "{jwks}"
algorithms = ["EdDSA"]
subject_claim = "user.id"
groups_claim = "realm_access.roles"
required_scopes = ["mcp:call"]
jwks_min_refresh_seconds = 3600
jwks_max_age_seconds = 86400
"#
        );
        let cfg = Config::parse(&toml, std::path::Path::new("fuzz.toml")).expect("fuzz config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let conn = ConnInfo {
            id: 1,
            client: "127.0.0.1:40000".parse().expect("addr"),
            orig_dst: "127.0.0.1:8080".parse().expect("addr"),
            tls: None,
            process: None,
        };
        let identity = rt.block_on(async {
            let identity = Identity::new(&cfg, None).await.expect("identity");
            // Both issuers' refreshers fetch the JWKS; wait until a good
            // token of each verifies.
            for (iss, claims) in [
                (ISSUER_A, json!({"sub": "setup"})),
                (
                    ISSUER_B,
                    json!({"user": {"id": "setup"}, "scope": "mcp:call"}),
                ),
            ] {
                let mut c = claims;
                c["iss"] = json!(iss);
                c["aud"] = json!("mcp");
                c["exp"] = json!(now() + 3600);
                let t = sign(
                    &key,
                    br#"{"alg":"EdDSA","kid":"fuzz-ed"}"#,
                    c.to_string().as_bytes(),
                );
                let mut ok = false;
                for _ in 0..500 {
                    if identity.authenticate(&bearer(&t), &conn).await.is_ok() {
                        ok = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert!(ok, "fuzz setup: {iss} keys not loaded from {jwks}");
            }
            identity
        });
        World {
            rt,
            identity,
            key,
            conn,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let headers = if ctl & 1 == 0 {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(rest) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    } else {
        let (head, claims) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (&br#"{"alg":"EdDSA","kid":"fuzz-ed"}"#[..], rest),
        };
        let mut claims = claims.to_vec();
        if ctl & 2 != 0
            && let Ok(Value::Object(mut c)) = serde_json::from_slice::<Value>(&claims)
        {
            let iss = if ctl & 4 != 0 { ISSUER_B } else { ISSUER_A };
            c.entry("iss").or_insert(json!(iss));
            c.entry("aud").or_insert(json!("mcp"));
            c.entry("exp").or_insert(json!(now() + 3600));
            claims = Value::Object(c).to_string().into_bytes();
        }
        bearer(&sign(&w.key, head, &claims))
    };
    let got = w.rt.block_on(w.identity.authenticate(&headers, &w.conn));
    let Ok(caller) = got else { return };
    // Accepted: only a token this process signed (the issuers have no
    // other key with a private half), never `none` or HMAC.
    let value = headers[header::AUTHORIZATION]
        .to_str()
        .expect("accepted header is text");
    let token = value
        .split_once(' ')
        .map(|(_, t)| t.trim())
        .expect("bearer");
    let (jose, iss) = oidc::peek(token).expect("an accepted token peeks");
    assert_eq!(jose.alg, "EdDSA", "accepted alg {:?}", jose.alg);
    assert_eq!(caller.method, AuthMethod::Oidc);
    assert_eq!(caller.issuer.as_deref(), Some(iss.as_str()));
    assert!(iss == ISSUER_A || iss == ISSUER_B);
    assert!(!caller.subject.is_empty());
    if iss == ISSUER_B {
        assert!(caller.scopes.iter().any(|s| s == "mcp:call"));
    }
});
