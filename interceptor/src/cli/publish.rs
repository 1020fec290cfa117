//! `mcp-interceptor policy keygen|publish`: signing keys, and signed
//! policy bundles uploaded for `[policy] source` (see `policy::bundle`).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail, ensure};
use interceptor::{
    agent::bundle_watch,
    config::{BundleSettings, Config, s3_location},
    policy::{
        Policies,
        bundle::{self, Manifest, keys},
        explain,
    },
};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as Key};

use super::{ConfigArg, JsonArg};

/// `policy publish`'s arguments.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The bundle's directory: `*.cedar` policies, an optional
    /// `settings.toml`, and `cases.toml` (the `policy test` table, which
    /// must pass; it is not published).
    dir: PathBuf,
    /// The private key to sign with (`policy keygen`; mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// Where to upload: `s3://bucket/prefix/` (the object `bundle.json`).
    #[arg(long, required_unless_present = "out")]
    to: Option<String>,
    /// The bundle's version; default: the Unix time in seconds. It must
    /// be newer than the bundle already there.
    #[arg(long)]
    version: Option<u64>,
    /// Write the signed bundle to this file too (alone: only there, for
    /// an upload by other means).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The config the cases run against; its `[audit.s3]` region and
    /// endpoint (if set) are used for the upload.
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    json: JsonArg,
}

/// `policy keygen KEY`: writes KEY (0600) and KEY.pub, prints the public key.
pub fn keygen(key: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let public = keys::generate(key)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "public_key": public.to_string(),
                "private_key_file": key,
                "public_key_file": keys::public_path(key),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{public}");
    eprintln!(
        "private key: {} (0600; keep it off the agents)\npublic key:  {} (put it in the agents' [policy] bundle_keys)",
        key.display(),
        keys::public_path(key).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The bundle's files from `dir`: every `*.cedar` and `settings.toml`.
fn files(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = e?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".cedar") || name == bundle::SETTINGS {
            let text =
                std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
            out.push((name.to_string(), text));
        }
    }
    Ok(out)
}

/// Runs DIR's `cases.toml` against the bundle as agents would load it.
fn test(dir: &Path, cfg: &Config, m: &Manifest) -> anyhow::Result<()> {
    let settings = m.settings().map(BundleSettings::parse).transpose()?;
    let cfg = settings.unwrap_or_default().apply(cfg)?;
    let policies = Policies::from_sources(&m.policy_sources())?;
    policies.check_mask_profiles(|name| cfg.mask.has_profile(name))?;
    let cases = dir.join("cases.toml");
    ensure!(
        cases.is_file(),
        "{}: missing; publish runs `policy test` on the bundle first, so write its cases",
        cases.display()
    );
    let results = explain::run_cases(&policies, &cfg, &explain::load_cases(&cases)?)?;
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    for r in &failed {
        eprintln!(
            "FAIL {}: want {}, got {}: {}",
            r.name,
            r.want,
            r.decision.effect.as_str(),
            r.decision.reason
        );
    }
    ensure!(
        failed.is_empty(),
        "{} of {} cases failed: not published",
        failed.len(),
        results.len()
    );
    eprintln!("policy test: {} cases passed", results.len());
    Ok(())
}

/// The version of the bundle at `key`, if one verifies with `pinned`.
async fn published(
    store: &dyn ObjectStore,
    key: &Key,
    pinned: &[ed25519_dalek::VerifyingKey],
) -> anyhow::Result<Option<u64>> {
    match store.get(key).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            match bundle::open(&bytes, pinned) {
                Ok(v) => Ok(Some(v.manifest.version)),
                Err(e) => {
                    eprintln!(
                        "warning: the bundle at the destination does not verify ({e}); replacing it"
                    );
                    Ok(None)
                }
            }
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `policy publish`: test, sign, write and/or upload.
pub fn publish(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&a.config.config)?;
    let signing = keys::read_signing_key(&a.key)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let draft = Manifest::new(a.version.unwrap_or(now), files(&a.dir)?)?;
    test(&a.dir, &cfg, &draft)?;
    let signer = bundle::key_id(&signing.verifying_key());
    let Some(to) = &a.to else {
        let out = a.out.as_deref().context("--to or --out")?;
        std::fs::write(out, bundle::seal(&draft, &signing))
            .with_context(|| out.display().to_string())?;
        report(
            a.json.json,
            draft.version,
            &out.display().to_string(),
            &signer,
        );
        return Ok(ExitCode::SUCCESS);
    };
    let (bucket, prefix) =
        s3_location(to).with_context(|| format!("--to {to:?} is not s3://bucket/prefix/"))?;
    let mut pinned = vec![signing.verifying_key()];
    for k in &cfg.policy.bundle_keys {
        pinned.push(bundle::public_key(k)?);
    }
    let store = bundle_watch::store(&bucket, cfg.audit.s3.as_ref())?;
    let key = Key::from(format!("{prefix}{}", bundle::OBJECT));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Refused here rather than by every agent: a version not newer than
    // the one published would never be taken.
    let version = match (
        a.version,
        rt.block_on(published(store.as_ref(), &key, &pinned))?,
    ) {
        (Some(v), Some(c)) if v <= c => bail!("--version {v} is not newer than the published {c}"),
        (None, Some(c)) if now <= c => c + 1,
        _ => draft.version,
    };
    let m = Manifest { version, ..draft };
    let sealed = bundle::seal(&m, &signing);
    if let Some(out) = &a.out {
        std::fs::write(out, &sealed).with_context(|| out.display().to_string())?;
    }
    rt.block_on(store.put(&key, PutPayload::from(sealed)))?;
    report(
        a.json.json,
        version,
        &format!("s3://{bucket}/{key}"),
        &signer,
    );
    Ok(ExitCode::SUCCESS)
}

/// What `publish` wrote, where, signed by whom: a line, or JSON.
fn report(json: bool, version: u64, to: &str, signer: &str) {
    if json {
        let v = serde_json::json!({"version": version, "to": to, "signer": signer});
        println!("{v}");
    } else {
        println!("published version {version} to {to}, signed by {signer}");
    }
}
