use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

use super::{oidc::peek, *};
use crate::{config::OidcIssuer, conn::SubjectAltNames};

fn jwt(header: serde_json::Value, payload: serde_json::Value) -> String {
    let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        enc(header),
        enc(payload),
        URL_SAFE_NO_PAD.encode(b"sig")
    )
}

fn issuer_cfg() -> OidcIssuer {
    toml::from_str(
        r#"issuer = "http://127.0.0.1:1"
audiences = ["mcp"]
jwks_url = "http://127.0.0.1:1/jwks""#,
    )
    .unwrap()
}

async fn identity(toml_text: &str) -> Identity {
    let cfg = Config::parse(toml_text, std::path::Path::new("t.toml")).unwrap();
    Identity::new(&cfg, None).await.unwrap()
}

const PORTS: &str = "[intercept]\nmode = \"ebpf\"\n[[intercept.ports]]\nport = 8080\n";

fn headers(auth: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
    h
}

#[test]
fn peek_reads_alg_kid_and_iss_and_rejects_garbage() {
    let t = jwt(
        json!({"alg": "RS256", "kid": "k1"}),
        json!({"iss": "http://i"}),
    );
    let (h, iss) = peek(&t).unwrap();
    assert_eq!(
        (h.alg.as_str(), h.kid.as_deref(), iss.as_str()),
        ("RS256", Some("k1"), "http://i")
    );
    assert!(matches!(peek("a.b"), Err(TokenError::Malformed(_))));
    assert!(matches!(peek("a.b.c.d"), Err(TokenError::Malformed(_))));
    assert!(matches!(peek("!!.b.c"), Err(TokenError::Malformed(_))));
    let no_iss = jwt(json!({"alg": "RS256"}), json!({"sub": "x"}));
    assert_eq!(
        peek(&no_iss).unwrap_err(),
        TokenError::Claims("missing iss".into())
    );
}

/// `issuer`'s verdict on a token signed (it says) with `alg`, key "k".
async fn verify_alg(issuer: &Issuer, alg: &str) -> Result<Arc<Caller>, VerifyError> {
    let t = jwt(
        json!({"alg": alg, "kid": "k"}),
        json!({"iss": "http://127.0.0.1:1"}),
    );
    let (h, _) = peek(&t).unwrap();
    issuer.verify(&t, &h).await
}

#[tokio::test]
async fn none_and_hmac_are_refused_before_any_key_is_fetched() {
    let issuer = Issuer::new(issuer_cfg());
    for alg in ["none", "NONE", "HS256", "HS512"] {
        let err = verify_alg(&issuer, alg).await.unwrap_err();
        assert_eq!(
            err,
            VerifyError::Token(TokenError::Algorithm(alg.into())),
            "{alg}"
        );
    }
    assert!(matches!(
        verify_alg(&issuer, "RS999").await,
        Err(VerifyError::Token(TokenError::AlgorithmNotAllowed { alg, .. })) if alg == "RS999"
    ));
    // Nothing was fetched (the JWKS URL is unreachable): refusal came first.
    assert!(!issuer.has_keys());
}

/// `algorithms = ["ES256"]` refuses an RS256 token from the header, before
/// any key is fetched, and the message names what the issuer accepts.
#[tokio::test]
async fn narrowed_algorithms_refuse_the_others_and_say_which_are_allowed() {
    let mut cfg = issuer_cfg();
    cfg.algorithms = vec!["ES256".into()];
    let issuer = Issuer::new(cfg);
    let err = verify_alg(&issuer, "RS256").await.unwrap_err();
    assert_eq!(
        err,
        VerifyError::Token(TokenError::AlgorithmNotAllowed {
            alg: "RS256".into(),
            allowed: "ES256".into()
        })
    );
    assert_eq!(
        err.to_string(),
        "token algorithm \"RS256\" is not accepted: this issuer's algorithms are [ES256]"
    );
    assert!(!issuer.has_keys());
}

#[tokio::test]
async fn unreachable_issuer_is_unavailable_not_a_pass() {
    let issuer = Issuer::new(issuer_cfg());
    assert!(matches!(
        verify_alg(&issuer, "RS256").await,
        Err(VerifyError::Unavailable(_))
    ));
}

#[tokio::test]
async fn unknown_issuer_and_non_bearer_are_refused() {
    let id = identity(&format!(
        "{PORTS}[[identity.oidc]]\nissuer = \"http://127.0.0.1:1\"\naudiences = [\"mcp\"]\n"
    ))
    .await;
    let t = jwt(json!({"alg": "RS256"}), json!({"iss": "http://evil"}));
    let err = id
        .authenticate(&headers(&format!("Bearer {t}")), &ConnInfo::loopback())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::Token(TokenError::UnknownIssuer("http://evil".into()))
    );
    let err = id
        .authenticate(&headers("Basic dXNlcjpwdw=="), &ConnInfo::loopback())
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::NotBearer);
    let err = id
        .authenticate(&HeaderMap::new(), &ConnInfo::loopback())
        .await
        .unwrap_err();
    assert_eq!((err.clone(), err.status()), (AuthError::Missing, 401));
}

#[tokio::test]
async fn anonymous_only_when_allowed_and_caller_auth_untouched_then() {
    let id = identity(&format!("{PORTS}[identity]\nallow_anonymous = true\n")).await;
    let c = id
        .authenticate(&HeaderMap::new(), &ConnInfo::loopback())
        .await
        .unwrap();
    assert_eq!(
        (c.subject.as_str(), c.method),
        ("anonymous", AuthMethod::Anonymous)
    );
    // No identity configured at all: the agent only steers and audits, so
    // the caller's own Authorization is the server's business.
    let mut h = headers("Bearer for-the-server");
    id.rewrite_upstream_headers(&mut h);
    assert_eq!(
        h.get(header::AUTHORIZATION).unwrap(),
        "Bearer for-the-server"
    );
}

/// Once the agent is an identity boundary in any way, the caller's
/// Authorization never goes upstream (no token passthrough), also when
/// no upstream credential replaces it.
#[tokio::test]
async fn callers_authorization_stops_at_any_identity_boundary() {
    let tls = "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n\
               client_ca = [\"/nonexistent/ca.pem\"]\n";
    let oidc = "[[identity.oidc]]\nissuer = \"http://127.0.0.1:1\"\naudiences = [\"mcp\"]\n";
    for (what, extra) in [
        (
            "mTLS only",
            format!("{tls}[identity]\nallow_anonymous = false\n"),
        ),
        (
            "mTLS, anonymous allowed",
            format!("{tls}[identity]\nallow_anonymous = true\n"),
        ),
        (
            "OIDC only",
            format!("[identity]\nallow_anonymous = false\n{oidc}"),
        ),
        (
            "OIDC, anonymous allowed",
            format!("[identity]\nallow_anonymous = true\n{oidc}"),
        ),
    ] {
        let id = identity(&format!("{PORTS}{extra}")).await;
        let mut h = headers("Bearer caller-token");
        h.insert("x-other", HeaderValue::from_static("kept"));
        id.rewrite_upstream_headers(&mut h);
        assert_eq!(h.get(header::AUTHORIZATION), None, "{what}");
        assert_eq!(h.get("x-other").unwrap(), "kept", "{what}");
    }
}

#[tokio::test]
async fn upstream_credential_replaces_the_callers() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cred");
    std::fs::write(&f, "Bearer upstream-secret\n").unwrap();
    let id = identity(&format!(
        "{PORTS}[identity]\nallow_anonymous = true\n[identity.upstream_credential]\nvalue_file = \"{}\"\n",
        f.display()
    ))
    .await;
    let mut h = headers("Bearer caller-token");
    id.rewrite_upstream_headers(&mut h);
    assert_eq!(
        h.get(header::AUTHORIZATION).unwrap(),
        "Bearer upstream-secret"
    );
    assert_eq!(h.get_all(header::AUTHORIZATION).iter().count(), 1);
}

#[tokio::test]
async fn broken_credential_source_fails_loudly() {
    let cfg = Config::parse(
        &format!("{PORTS}[identity]\nallow_anonymous = true\n[identity.upstream_credential]\ncommand = [\"/bin/false\"]\n"),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let err = Identity::new(&cfg, None).await.err().expect("must fail");
    assert!(
        matches!(err, credential::CredentialError::Command(..)),
        "{err}"
    );
}

#[test]
fn cert_subject_follows_the_configured_order() {
    let mut c = PeerCert {
        fingerprint: "f".into(),
        serial: "1".into(),
        not_after: 0,
        subject: "CN=alice".into(),
        issuer: "CN=ca".into(),
        common_name: Some("alice".into()),
        organizational_units: vec![],
        sans: SubjectAltNames {
            uris: vec!["spiffe://corp/alice".into()],
            emails: vec!["alice@corp".into()],
            dns: vec![],
        },
    };
    let all = crate::config::Identity::default().cert_subject;
    assert_eq!(
        cert_subject(&c, &all).as_deref(),
        Some("spiffe://corp/alice")
    );
    assert_eq!(cert_subject(&c, &[CertField::Cn]).as_deref(), Some("alice"));
    // Serialized (a caller's `cert`), the names stand at the top level.
    let v = serde_json::to_value(&c).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys[keys.len() - 4..],
        ["organizational_units", "san_uris", "san_emails", "san_dns"]
    );
    assert_eq!(v["san_uris"], json!(["spiffe://corp/alice"]));
    c.sans.dns.clear();
    assert_eq!(cert_subject(&c, &[CertField::SanDns]), None);
}

#[tokio::test]
async fn metadata_url_and_challenge_follow_rfc_9728_and_6750() {
    let id = identity(&format!(
        "{PORTS}[[identity.oidc]]\nissuer = \"http://127.0.0.1:1\"\naudiences = [\"mcp\"]\nrequired_scopes = [\"mcp:call\"]\n"
    ))
    .await;
    assert_eq!(
        id.metadata_url("http://10.0.0.1:8080", "/mcp"),
        "http://10.0.0.1:8080/.well-known/oauth-protected-resource/mcp"
    );
    let doc = id.metadata("http://10.0.0.1:8080/mcp");
    assert_eq!(doc["authorization_servers"], json!(["http://127.0.0.1:1"]));
    assert_eq!(doc["scopes_supported"], json!(["mcp:call"]));
    let v = id.challenge(&AuthError::Missing, "http://m");
    assert_eq!(v, "Bearer resource_metadata=\"http://m\"");
    let v = id.challenge(&AuthError::InsufficientScope("mcp:call".into()), "http://m");
    let v = v.to_str().unwrap();
    assert!(
        v.contains("error=\"insufficient_scope\"") && v.contains("scope=\"mcp:call\""),
        "{v}"
    );
    let v = id.challenge(&AuthError::Token(TokenError::Expired), "http://m");
    assert!(v.to_str().unwrap().contains("error=\"invalid_token\""));
}

#[test]
fn principal_separates_methods_and_issuers() {
    let a = Caller::new(AuthMethod::Oidc, "alice", Some("http://a".into()));
    let mut b = a.clone();
    b.issuer = Some("http://b".into());
    assert_ne!(a.principal(), b.principal());
    // An issuer holding the separator cannot pose as another issuer's
    // subject: "http://a|x" + "y" is not "http://a" + "x|y".
    let (mut c, mut d) = (a.clone(), a.clone());
    (c.issuer, c.subject) = (Some("http://a|x".into()), "y".into());
    d.subject = "x|y".into();
    assert_ne!(c.principal(), d.principal());
    let _ = Arc::new(a);
}

#[test]
fn principal_keys_cannot_be_forged_across_issuers() {
    assert_eq!(principal_key("https://a", "alice"), "https://a|alice");
    assert_eq!(principal_key("", "anonymous"), "|anonymous");
    assert_eq!(principal_key("CN=x|y\\z", "s"), "CN=x\\|y\\\\z|s");
    // Issuer "a|b" + subject "c" against issuer "a" + subject "b|c".
    assert_ne!(principal_key("a|b", "c"), principal_key("a", "b|c"));
    assert_ne!(principal_key("a\\", "|c"), principal_key("a\\|", "c"));
}
