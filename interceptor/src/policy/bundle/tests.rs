use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use ed25519_dalek::SigningKey;

use super::{keys, *};

const POLICY: &str = "permit(principal, action, resource);";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn manifest(version: u64) -> Manifest {
    Manifest::new(
        version,
        vec![
            ("b.cedar".into(), POLICY.into()),
            (
                "a.cedar".into(),
                "forbid(principal, action, resource);".into(),
            ),
            (SETTINGS.into(), "[approvals]\nvalid_seconds = 60\n".into()),
        ],
    )
    .expect("manifest")
}

/// Opens an edited envelope with key `n` pinned.
fn open_edited(e: &serde_json::Value, n: u8) -> Result<Verified, BundleError> {
    open(
        &serde_json::to_vec(e).expect("json"),
        &[key(n).verifying_key()],
    )
}

fn envelope(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("json")
}

#[test]
fn a_sealed_bundle_opens_with_its_pinned_key() {
    let m = manifest(7);
    let v = open(
        &seal(&m, &key(1)),
        &[key(2).verifying_key(), key(1).verifying_key()],
    )
    .expect("opens");
    assert_eq!(v.manifest, m);
    assert_eq!(v.signer, key_id(&key(1).verifying_key()));
    assert_eq!(v.origin().version, 7);
    // Name order, settings apart from the policies.
    let names: Vec<_> = v
        .manifest
        .policy_sources()
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(names, ["a.cedar", "b.cedar"]);
    assert_eq!(
        v.manifest.settings(),
        Some("[approvals]\nvalid_seconds = 60\n")
    );
}

#[test]
fn each_changed_byte_of_the_manifest_is_refused() {
    let sealed = seal(&manifest(1), &key(1));
    let env = envelope(&sealed);
    let raw = B64
        .decode(env["manifest"].as_str().expect("str"))
        .expect("b64");
    for i in (0..raw.len()).step_by(7) {
        let mut m = raw.clone();
        m[i] ^= 0x01;
        let mut e = env.clone();
        e["manifest"] = B64.encode(&m).into();
        let r = open_edited(&e, 1);
        assert_eq!(r, Err(BundleError::BadSignature), "byte {i} changed");
    }
}

#[test]
fn another_key_or_no_signature_is_refused() {
    let sealed = seal(&manifest(1), &key(3));
    let r = open(&sealed, &[key(1).verifying_key()]);
    assert_eq!(
        r,
        Err(BundleError::UnknownSigner(key_id(&key(3).verifying_key())))
    );
    // A pinned signer named, but the signature made by another key.
    let mut e = envelope(&sealed);
    e["signer"] = key_id(&key(1).verifying_key()).into();
    let r = open_edited(&e, 1);
    assert_eq!(r, Err(BundleError::BadSignature));
    let mut e = envelope(&sealed);
    e.as_object_mut().expect("object").remove("signature");
    let r = open_edited(&e, 3);
    assert_eq!(r, Err(BundleError::Unsigned));
}

#[test]
fn a_signature_over_other_bytes_does_not_pass_as_a_bundles() {
    // The same key signing the bare manifest (no domain prefix), as a key
    // reused for something else might: refused.
    let m = serde_json::to_vec(&manifest(1)).expect("json");
    let sig = key(1).sign(&m);
    let e = serde_json::json!({
        "format": FORMAT, "manifest": B64.encode(&m),
        "signer": key_id(&key(1).verifying_key()), "signature": B64.encode(sig.to_bytes()),
    });
    let r = open_edited(&e, 1);
    assert_eq!(r, Err(BundleError::BadSignature));
}

#[test]
fn a_signed_manifest_with_a_wrong_digest_or_name_is_refused() {
    let mut m = manifest(1);
    m.files[0].text.push(' ');
    let r = open(&seal(&m, &key(1)), &[key(1).verifying_key()]);
    assert_eq!(r, Err(BundleError::Digest("a.cedar".into())));
    for name in [
        "../x.cedar",
        ".cedar",
        "x.toml",
        "sub/a.cedar",
        ".hidden.cedar",
    ] {
        let r = Manifest::new(1, vec![(name.into(), POLICY.into())]);
        assert!(matches!(r, Err(BundleError::Malformed(_))), "{name}: {r:?}");
    }
    let r = Manifest::new(1, vec![(SETTINGS.into(), String::new())]);
    assert!(
        matches!(r, Err(BundleError::Malformed(_))),
        "no policy: {r:?}"
    );
    let r = Manifest::new(1, vec![("a.cedar".into(), POLICY.into()); 2]);
    assert!(matches!(r, Err(BundleError::Malformed(_))), "twice: {r:?}");
}

#[test]
fn only_a_newer_version_replaces_the_running_one() {
    let v = open(&seal(&manifest(5), &key(1)), &[key(1).verifying_key()]).expect("opens");
    assert_eq!(v.check_newer(None), Ok(()));
    assert_eq!(v.check_newer(Some(4)), Ok(()));
    for running in [5, 6] {
        assert_eq!(
            v.check_newer(Some(running)),
            Err(BundleError::NotNewer { got: 5, running })
        );
    }
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    for bytes in [
        &b""[..],
        b"{}",
        b"[1]",
        b"\xff\xfe",
        br#"{"format":"x","manifest":""}"#,
    ] {
        let r = open(bytes, &[key(1).verifying_key()]);
        assert!(
            matches!(r, Err(BundleError::Malformed(_))),
            "{bytes:?}: {r:?}"
        );
    }
}

#[test]
fn keys_are_made_private_and_refused_when_readable_by_others() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("bundle.key");
    let public = keys::generate(&path).expect("generate");
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let k = keys::read_signing_key(&path).expect("read");
    assert_eq!(key_id(&k.verifying_key()), public);
    assert_eq!(public_key(&public).expect("public"), k.verifying_key());
    let on_disk = std::fs::read_to_string(keys::public_path(&path)).expect("pub");
    assert_eq!(on_disk.trim(), public);
    assert!(
        keys::generate(&path).is_err(),
        "an existing key is never overwritten"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = keys::read_signing_key(&path).expect_err("world-readable");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    assert!(public_key("abcd").is_err());
}

#[test]
fn origins_follow_the_policy_version() {
    let o = Origins::default();
    o.record(
        "v1",
        Origin {
            version: 1,
            signer: "k".into(),
        },
    );
    o.record(
        "v2",
        Origin {
            version: 2,
            signer: "k".into(),
        },
    );
    assert_eq!(o.get("v1").map(|x| x.version), Some(1));
    assert_eq!(o.get("v2").map(|x| x.version), Some(2));
    assert_eq!(o.get("v3"), None);
}
