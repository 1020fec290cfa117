//! DynamoDB's JSON API over HTTP, signed with SigV4 by object_store's AWS
//! credential chain (environment, web identity, ECS, instance metadata:
//! the one the audit upload and `policy.source` use), sent with reqwest.
//!
//! The approvals API is synchronous and its callers often run on tokio's
//! worker threads, where blocking on a runtime is not allowed: requests go
//! to one dedicated thread that owns a current-thread runtime, and the
//! caller waits for the reply on a channel. Every call is bounded by
//! [`CALL_TIMEOUT`].

use std::{sync::Arc, time::Duration};

use object_store::{
    aws::{AmazonS3Builder, AwsAuthorizer, AwsCredentialProvider},
    client::HttpRequestBody,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{DynamoError, Target};

/// The longest one call may take, retries of throttled requests included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Error types after which the request certainly did not take effect, so
/// sending it again is safe (even a conditional write).
const RETRYABLE: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// One request for the thread, and where its answer goes.
struct Job {
    op: &'static str,
    body: Value,
    reply: std::sync::mpsc::SyncSender<Result<Value, DynamoError>>,
}

/// Sends DynamoDB requests from synchronous code; see the module docs.
pub(super) struct Client {
    jobs: mpsc::UnboundedSender<Job>,
}

/// What the request thread needs: credentials, where and how to send.
#[derive(Clone)]
struct Conn {
    http: reqwest::Client,
    creds: AwsCredentialProvider,
    region: Arc<str>,
    url: Arc<str>,
}

impl Client {
    /// Starts the request thread for `t`; it ends when the client is
    /// dropped.
    pub(super) fn start(t: &Target) -> Result<Self, DynamoError> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| DynamoError::Client(format!("{what}: {e}"));
        // The bucket name is required by the builder and never used: only
        // its credential provider is taken.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name("unused")
            .with_region(&t.region);
        if let Some((id, secret)) = &t.key {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let s3 = b.build().map_err(|e| fail("AWS credentials", &e))?;
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| fail("HTTP client", &e))?;
        let conn = Conn {
            http,
            creds: s3.credentials().clone(),
            region: t.region.as_str().into(),
            url: format!("{}/", t.endpoint.trim_end_matches('/')).into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail("runtime", &e))?;
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("approvals-dynamodb".into())
            .spawn(move || {
                rt.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        let conn = conn.clone();
                        // Requests run side by side on this one thread.
                        tokio::spawn(async move {
                            let r =
                                tokio::time::timeout(CALL_TIMEOUT, conn.call(job.op, &job.body))
                                    .await
                                    .unwrap_or_else(|_| Err(DynamoError::Timeout(job.op)));
                            let _ = job.reply.send(r);
                        });
                    }
                });
            })
            .map_err(|e| fail("thread", &e))?;
        Ok(Self { jobs })
    }

    /// Sends `body` as operation `op` (e.g. `GetItem`) and waits for the
    /// answer, at most [`CALL_TIMEOUT`] and a little.
    pub(super) fn call(&self, op: &'static str, body: Value) -> Result<Value, DynamoError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Job { op, body, reply })
            .map_err(|_| DynamoError::Client("the request thread stopped".into()))?;
        answer
            .recv_timeout(CALL_TIMEOUT + Duration::from_secs(1))
            .unwrap_or(Err(DynamoError::Timeout(op)))
    }
}

impl Conn {
    /// One call, with short retries of throttled requests.
    async fn call(&self, op: &'static str, body: &Value) -> Result<Value, DynamoError> {
        let mut wait = Duration::from_millis(50);
        loop {
            match self.once(op, body).await {
                Err(DynamoError::Aws { kind, .. }) if RETRYABLE.contains(&kind.as_str()) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    async fn once(&self, op: &'static str, body: &Value) -> Result<Value, DynamoError> {
        let http = |e: &dyn std::fmt::Display| DynamoError::Http {
            op,
            reason: e.to_string(),
        };
        let cred = self.creds.get_credential().await.map_err(|e| http(&e))?;
        let bytes = serde_json::to_vec(body).map_err(|e| http(&e))?;
        let mut req = http::Request::builder()
            .method("POST")
            .uri(&*self.url)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
            .body(HttpRequestBody::from(bytes.clone()))
            .map_err(|e| http(&e))?;
        AwsAuthorizer::new(&cred, "dynamodb", &self.region)
            .try_authorize(&mut req, None)
            .map_err(|e| http(&e))?;
        let mut send = self.http.post(&*self.url).body(bytes);
        for (k, v) in req.headers() {
            send = send.header(k, v);
        }
        let resp = send.send().await.map_err(|e| http(&e))?;
        let status = resp.status();
        let text = resp.bytes().await.map_err(|e| http(&e))?;
        let v: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        // `__type` is `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException`.
        let kind = v["__type"].as_str().unwrap_or("");
        let kind = kind.rsplit('#').next().unwrap_or(kind);
        let message = (v.get("message").or_else(|| v.get("Message")))
            .and_then(Value::as_str)
            .map_or_else(
                || String::from_utf8_lossy(&text).into_owned(),
                str::to_string,
            );
        Err(DynamoError::Aws {
            op,
            kind: if kind.is_empty() {
                format!("HTTP {status}")
            } else {
                kind.to_string()
            },
            message,
            cancelled: (v["CancellationReasons"].as_array().into_iter().flatten())
                .map(|r| r["Code"].as_str().unwrap_or("").to_string())
                .collect(),
        })
    }
}
