//! A real S3 API for the tests: moto's server (PyPI, in the repo's
//! `.venv`) on a loopback port, inspected with boto3.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{Proc, proc::run_in};

pub const BUCKET: &str = "audit-e2e";
/// moto accepts any key pair.
pub const KEY_ID: &str = "testing";
pub const SECRET: &str = "testing";

pub fn venv_bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: create the venv with `python3 -m venv .venv && .venv/bin/pip install 'moto[server]' boto3`",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts moto on `port` (≤ 30 s) with an empty `BUCKET`.
pub fn moto(port: u16, dir: &Path, tag: &str) -> Proc {
    moto_in(None, port, dir, tag)
}

/// Starts moto inside network namespace `ns` (or here).
pub fn moto_in(ns: Option<&str>, port: u16, dir: &Path, tag: &str) -> Proc {
    moto_on(ns, "127.0.0.1", port, dir, tag)
}

/// Starts moto in `ns` on `host:port` (`0.0.0.0`: every address; it is
/// always reached on 127.0.0.1 as well) with an empty `BUCKET`, ≤ 30 s.
pub fn moto_on(ns: Option<&str>, host: &str, port: u16, dir: &Path, tag: &str) -> Proc {
    let args = ["-H", host, "-p", &port.to_string()].map(String::from);
    started(
        Proc::spawn(
            &format!("moto-{tag}"),
            ns,
            &venv_bin("moto_server"),
            &args,
            dir,
        ),
        ns,
        port,
    )
}

/// Starts moto on `port` (≤ 30 s), answering one request at a time
/// (tests/peers/moto_serial.py: its own server does not make DynamoDB's
/// conditional writes atomic), with an empty `BUCKET`.
pub fn moto_serial(port: u16, dir: &Path, tag: &str) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/moto_serial.py");
    let args = [
        script.display().to_string(),
        "-H".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    let p = Proc::spawn(
        &format!("moto-{tag}"),
        None,
        &venv_bin("python"),
        &args,
        dir,
    );
    started(p, None, port)
}

/// `p` (a moto server in `ns`) once it listens on `port`, with the test
/// bucket made.
fn started(mut p: Proc, ns: Option<&str>, port: u16) -> Proc {
    p.wait_for_output(
        &format!("Running on http://127.0.0.1:{port}"),
        Duration::from_secs(30),
    );
    boto_in(ns, port, "s3.create_bucket(Bucket=bucket)");
    p
}

/// Runs a boto3 snippet (with `s3` and `bucket` defined); returns stdout.
pub fn boto(port: u16, code: &str) -> String {
    boto_in(None, port, code)
}

/// Like [`boto`], from inside network namespace `ns`.
pub fn boto_in(ns: Option<&str>, port: u16, code: &str) -> String {
    let script = format!(
        "import sys, json, boto3\n\
         s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', region_name='us-east-1',\n\
         \x20   aws_access_key_id='{KEY_ID}', aws_secret_access_key='{SECRET}')\n\
         bucket = '{BUCKET}'\n\
         {code}\n"
    );
    let out = run_in(
        ns,
        &venv_bin("python"),
        &["-c".into(), script],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "boto3 failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every object in the bucket: key -> hex of its bytes.
pub fn bucket_objects(port: u16) -> BTreeMap<String, String> {
    bucket_objects_in(None, port)
}

/// Like [`bucket_objects`], from inside `ns`.
pub fn bucket_objects_in(ns: Option<&str>, port: u16) -> BTreeMap<String, String> {
    let out = boto_in(
        ns,
        port,
        "objs = s3.list_objects_v2(Bucket=bucket).get('Contents', [])\n\
         print(json.dumps({o['Key']: s3.get_object(Bucket=bucket, Key=o['Key'])['Body'].read().hex() for o in objs}))",
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("listing {out:?}: {e}"))
}
