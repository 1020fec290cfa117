//! The test OIDC issuer itself (`tests/peers/oidc_issuer.py` via
//! `mcp_interceptor_tests::oidc`), before any verifier relies on it: the
//! metadata a client discovers, the tokens a real login yields, the hostile
//! tokens it mints and key rotation. Signatures are checked independently of
//! the issuer, with `cryptography` from the repo's `.venv`, against the JWKS
//! the issuer publishes.

use std::time::Duration;

use mcp_interceptor_tests::{
    NetNs, TempDir,
    oidc::{Issuer, jwt_claims, jwt_header},
    proc::run_in,
    require_root,
    s3::venv_bin,
};
use serde_json::{Value, json};

const PORT: u16 = 9400;
const RESOURCE: &str = "http://192.0.2.2:8080/mcp";

fn issuer(tag: &str) -> (NetNs, TempDir, Issuer) {
    require_root();
    let ns = NetNs::new(tag);
    let dir = TempDir::new(tag);
    let issuer = Issuer::start(&ns, PORT, dir.path());
    (ns, dir, issuer)
}

/// What `token` proves against `jwks`: `kid_listed` (its header kid names a
/// JWKS key), `rs256` (an RS256 signature by that key verifies) and
/// `hs256_public_pem` (an HMAC-SHA256 keyed with that key's PEM verifies).
fn check_signature(token: &str, jwks: &Value) -> Value {
    const SCRIPT: &str = r#"
import base64, hashlib, hmac, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

token, jwks = sys.argv[1], json.loads(sys.argv[2])
b64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
num = lambda s: int.from_bytes(b64(s), "big")
h, p, sig = token.split(".")
kid = json.loads(b64(h)).get("kid")
keys = [k for k in jwks["keys"] if k.get("kid") == kid]
out = {"kid_listed": bool(keys), "rs256": False, "hs256_public_pem": False}
if keys:
    pub = RSAPublicNumbers(num(keys[0]["e"]), num(keys[0]["n"])).public_key()
    try:
        pub.verify(b64(sig), f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
        out["rs256"] = True
    except Exception:
        pass
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    mac = hmac.new(pem, f"{h}.{p}".encode(), hashlib.sha256).digest()
    out["hs256_public_pem"] = hmac.compare_digest(mac, b64(sig))
print(json.dumps(out))
"#;
    let out = run_in(
        None,
        &venv_bin("python"),
        &["-c".into(), SCRIPT.into(), token.into(), jwks.to_string()],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "signature check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("signature check prints JSON")
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("JWKS has keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("every key has a kid").to_string())
        .collect()
}

fn audiences(claims: &Value) -> Vec<&str> {
    match &claims["aud"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        other => panic!("aud is neither string nor array: {other}"),
    }
}

#[test]
fn discovery_advertises_what_mcp_oauth_clients_need() {
    let (_ns, _dir, issuer) = issuer("oidcmeta");
    let oidc = issuer.get_json("/.well-known/openid-configuration");
    let url = &issuer.url;
    assert_eq!(oidc["issuer"], json!(url));
    assert_eq!(oidc["jwks_uri"], json!(format!("{url}/jwks")));
    assert_eq!(
        oidc["authorization_endpoint"],
        json!(format!("{url}/oauth2/authorize"))
    );
    assert_eq!(oidc["token_endpoint"], json!(format!("{url}/oauth2/token")));
    assert_eq!(
        oidc["registration_endpoint"],
        json!(format!("{url}/oauth2/clients"))
    );
    assert_eq!(oidc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    // RFC 8414: what the MCP SDK asks for first.
    let oauth = issuer.get_json("/.well-known/oauth-authorization-server");
    assert_eq!(oauth, oidc);
    assert_eq!(kids(&issuer.jwks()), vec![issuer.kid()]);
}

#[test]
fn login_yields_id_token_and_rfc9068_access_token() {
    let (_ns, _dir, issuer) = issuer("oidclogin");
    issuer.set_user("alice", json!({"groups": ["dev"]}));
    let kid = issuer.kid();
    let jwks = issuer.jwks();

    let tokens = issuer.login(
        "alice",
        "mcp-test-client",
        "openid mcp:tools",
        Some(RESOURCE),
    );
    assert_eq!(tokens["token_type"], json!("Bearer"), "{tokens}");
    assert_eq!(tokens["scope"], json!("openid mcp:tools"), "{tokens}");

    let id_token = tokens["id_token"].as_str().expect("id_token");
    let header = jwt_header(id_token);
    assert_eq!(header["alg"], json!("RS256"), "{header}");
    assert_eq!(header["kid"], json!(kid), "{header}");
    let claims = jwt_claims(id_token);
    assert_eq!(claims["iss"], json!(issuer.url), "{claims}");
    assert_eq!(audiences(&claims), vec!["mcp-test-client"], "{claims}");
    assert_eq!(claims["sub"], json!("alice"), "{claims}");
    assert_eq!(claims["groups"], json!(["dev"]), "{claims}");
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64(), "{claims}");
    let sig = check_signature(id_token, &jwks);
    assert_eq!(sig["rs256"], json!(true), "id_token signature: {sig}");

    let access = tokens["access_token"].as_str().expect("access_token");
    let header = jwt_header(access);
    assert_eq!(header["typ"], json!("at+jwt"), "{header}");
    assert_eq!(header["alg"], json!("RS256"), "{header}");
    assert_eq!(header["kid"], json!(kid), "{header}");
    let claims = jwt_claims(access);
    assert_eq!(claims["aud"], json!(RESOURCE), "{claims}");
    assert_eq!(claims["iss"], json!(issuer.url), "{claims}");
    assert_eq!(claims["sub"], json!("alice"), "{claims}");
    assert_eq!(claims["client_id"], json!("mcp-test-client"), "{claims}");
    assert_eq!(claims["scope"], json!("openid mcp:tools"), "{claims}");
    assert_eq!(claims["groups"], json!(["dev"]), "{claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims}"
    );
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 3600, "{claims}");
    let sig = check_signature(access, &jwks);
    assert_eq!(sig["rs256"], json!(true), "access token signature: {sig}");

    // Without a resource indicator the audience is the client; without
    // openid there is no ID token.
    let tokens = issuer.login("alice", "other-client", "mcp:tools", None);
    assert!(tokens.get("id_token").is_none(), "{tokens}");
    let claims = jwt_claims(tokens["access_token"].as_str().expect("access_token"));
    assert_eq!(claims["aud"], json!("other-client"), "{claims}");
    assert_eq!(claims["scope"], json!("mcp:tools"), "{claims}");
}

#[test]
fn minted_tokens_have_the_requested_shapes() {
    let (_ns, _dir, issuer) = issuer("oidcmint");
    let kid = issuer.kid();
    let jwks = issuer.jwks();
    let claims = json!({
        "iss": issuer.url, "aud": RESOURCE, "sub": "mallory",
        "iat": 1_700_000_000, "exp": 4_000_000_000_u64, "groups": ["admin"],
    });

    let good = issuer.mint(claims.clone(), Value::Null, "key");
    assert_eq!(jwt_claims(&good), claims, "claims are used verbatim");
    assert_eq!(
        jwt_header(&good),
        json!({"alg": "RS256", "typ": "JWT", "kid": kid})
    );
    let sig = check_signature(&good, &jwks);
    assert_eq!(
        sig,
        json!({"kid_listed": true, "rs256": true, "hs256_public_pem": false})
    );

    let none = issuer.mint(claims.clone(), Value::Null, "none");
    assert_eq!(jwt_header(&none), json!({"alg": "none", "typ": "JWT"}));
    assert!(
        none.ends_with('.'),
        "alg=none has an empty signature: {none}"
    );
    assert_eq!(jwt_claims(&none), claims);

    let confused = issuer.mint(claims.clone(), Value::Null, "hs256-public");
    assert_eq!(
        jwt_header(&confused),
        json!({"alg": "HS256", "typ": "JWT", "kid": kid})
    );
    let sig = check_signature(&confused, &jwks);
    assert_eq!(
        sig,
        json!({"kid_listed": true, "rs256": false, "hs256_public_pem": true})
    );

    let foreign = issuer.mint(claims.clone(), Value::Null, "other-key");
    let header = jwt_header(&foreign);
    assert_eq!(header["alg"], json!("RS256"), "{header}");
    let foreign_kid = header["kid"].as_str().expect("other-key has a kid");
    assert_ne!(foreign_kid, kid);
    let sig = check_signature(&foreign, &jwks);
    assert_eq!(sig["kid_listed"], json!(false), "{sig}");

    // Header fields are added, replaced, or removed with null.
    let custom = issuer.mint(
        claims.clone(),
        json!({"kid": null, "typ": "at+jwt", "x-test": 1}),
        "key",
    );
    assert_eq!(
        jwt_header(&custom),
        json!({"alg": "RS256", "typ": "at+jwt", "x-test": 1})
    );

    let r = issuer.request(
        "POST",
        "/test/mint",
        Some((
            "application/json",
            json!({"claims": {}, "sign": "rot13"}).into(),
        )),
    );
    assert_eq!(r.status, 400, "unknown sign mode: {}", r.text());
}

#[test]
fn rotation_replaces_the_published_key() {
    let (_ns, _dir, issuer) = issuer("oidcrotate");
    issuer.set_user("bob", json!({"groups": ["ops"]}));
    let old_kid = issuer.kid();
    let claims =
        json!({"iss": issuer.url, "aud": RESOURCE, "sub": "bob", "exp": 4_000_000_000_u64});
    let before = issuer.mint(claims.clone(), Value::Null, "key");
    assert_eq!(jwt_header(&before)["kid"], json!(old_kid));

    let new_kid = issuer.rotate();
    assert!(!new_kid.is_empty());
    assert_ne!(new_kid, old_kid);
    assert_eq!(issuer.kid(), new_kid);
    let jwks = issuer.jwks();
    assert_eq!(
        kids(&jwks),
        vec![new_kid.clone()],
        "only the new key: {jwks}"
    );

    let sig = check_signature(&before, &jwks);
    assert_eq!(
        sig["kid_listed"],
        json!(false),
        "old token after rotation: {sig}"
    );
    let after = issuer.mint(claims, Value::Null, "key");
    assert_eq!(jwt_header(&after)["kid"], json!(new_kid));
    assert_eq!(check_signature(&after, &jwks)["rs256"], json!(true));

    // Real logins sign with the new key too.
    let tokens = issuer.login("bob", "mcp-test-client", "openid", Some(RESOURCE));
    for name in ["id_token", "access_token"] {
        let token = tokens[name].as_str().expect(name);
        assert_eq!(jwt_header(token)["kid"], json!(new_kid), "{name}");
        assert_eq!(
            check_signature(token, &jwks)["rs256"],
            json!(true),
            "{name}"
        );
    }
}
