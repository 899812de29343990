//! Object stores through Apache OpenDAL (S3 and S3-compatible servers), driven from
//! synchronous code by a small runtime of its own.
//!
//! Requests are retried with exponential backoff and jitter on throttling, 5xx and timeouts
//! by OpenDAL's layers; objects larger than a part are uploaded in parts, aborted when they
//! fail, and started again whole when the server forgot its upload.

use std::sync::Arc;

use opendal::{ErrorKind, Operator};

use super::backend::{Backend, Properties};
use super::{Listed, S3Options, READS_IN_FLIGHT};
use crate::error::{Error, Result};

/// Objects above this are uploaded in parts of this size.
const PART: usize = 8 << 20;

pub struct ObjectStore {
    op: Operator,
    rt: Arc<tokio::runtime::Runtime>,
    location: String,
}

impl ObjectStore {
    /// A bucket (and prefix) of an S3-compatible server. Returns the store and its location
    /// as users write it (`s3://bucket/prefix`).
    pub fn s3(opts: &S3Options) -> Result<ObjectStore> {
        use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
        // The HTTP client (reqwest with rustls); idempotent, first call wins.
        opendal::install_default();
        let location = if opts.prefix.is_empty() {
            format!("s3://{}", opts.bucket)
        } else {
            format!("s3://{}/{}", opts.bucket, opts.prefix)
        };
        let region = opts
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        let mut builder = opendal::services::S3::default()
            .bucket(&opts.bucket)
            .root(&format!("/{}", opts.prefix))
            .region(&region);
        if let Some(e) = &opts.endpoint {
            builder = builder.endpoint(e);
        }
        if opts.virtual_host_style {
            builder = builder.enable_virtual_host_style();
        }
        if let Some(p) = &opts.profile {
            builder = builder.profile(p);
        }
        if let Some(c) = &opts.credentials {
            builder = builder
                .access_key_id(&c.access_key_id)
                .secret_access_key(&c.secret_access_key);
        }
        let op = Operator::new(builder)
            .map_err(|e| storage_err("open", &location, e))?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(std::time::Duration::from_secs(120))
                    .with_io_timeout(std::time::Duration::from_secs(60)),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(opts.max_retries)
                    .with_min_delay(std::time::Duration::from_millis(200))
                    .with_max_delay(std::time::Duration::from_secs(20))
                    .with_jitter(),
            )
            .layer(ConcurrentLimitLayer::new(opts.max_requests.max(1)));
        Ok(ObjectStore {
            op,
            rt: Arc::new(runtime()),
            location,
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A storage error; refused credentials become one plain line naming the repository.
    fn err(&self, op: &'static str, path: &str, source: opendal::Error) -> Error {
        let text = source.to_string();
        let why = if ["InvalidAccessKeyId", "SignatureDoesNotMatch"]
            .iter()
            .any(|code| text.contains(code))
        {
            "the server refused the S3 credentials (unknown access key id, or wrong secret)"
        } else if text.contains("signing credential") {
            "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
             AWS_PROFILE, or access_key_id in [s3] of the configuration"
        } else {
            return storage_err(op, path, source);
        };
        tracing::debug!("{op} {path}: {source}");
        Error::Access {
            location: self.location.clone(),
            why: why.into(),
        }
    }
}

impl Backend for ObjectStore {
    fn properties(&self) -> Properties {
        Properties {
            high_latency: true,
            has_folders: false,
            temp_files: false,
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.block_on(self.op.read(path))
            .map(|b| b.to_vec())
            .map_err(|e| self.err("read", path, e))
    }

    /// Snapshots and index files are one object per backup, so a repository that a thousand
    /// hosts back up into holds thousands of them; fetched one at a time at 10-50 ms a
    /// request, a cold start would take minutes.
    fn read_many(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        use futures::stream::{self, StreamExt};
        self.block_on(
            stream::iter(paths)
                .map(|path| async move {
                    self.op
                        .read(path)
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| self.err("read", path, e))
                })
                .buffered(READS_IN_FLIGHT)
                .collect(),
        )
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let buf = self
            .block_on(async { self.op.read_with(path).range(offset..offset + len).await })
            .map_err(|e| self.err("read", path, e))?;
        if buf.len() as u64 != len {
            return Err(Error::corrupt(
                path,
                format!(
                    "short read: wanted {len} bytes at {offset}, got {}",
                    buf.len()
                ),
            ));
        }
        Ok(buf.to_vec())
    }

    fn write(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let big = bytes.len() > PART;
        let buf = opendal::Buffer::from(bytes);
        let mut attempt = 0;
        loop {
            let result = self.block_on(async {
                if big {
                    // Parts go one after the other: packs already upload in parallel.
                    let mut w = self.op.writer_with(path).chunk(PART).await?;
                    let mut done = w.write(buf.clone()).await;
                    if done.is_ok() {
                        done = w.close().await.map(drop);
                    }
                    if done.is_err() {
                        abort_upload(path, &mut w).await;
                    }
                    done
                } else {
                    self.op.write(path, buf.clone()).await.map(drop)
                }
            });
            match result {
                Ok(_) => return Ok(None),
                // Requests are retried one by one below us; but a multipart upload the server
                // forgot (it restarted, or a lifecycle rule aborted it) fails for good at its
                // next part. Every name is written once with the same content, so the whole
                // object can start again.
                Err(e) if big && attempt < 2 && lost_multipart_upload(&e) => {
                    attempt += 1;
                    tracing::warn!("{path}: the server lost its multipart upload; starting again");
                    tracing::debug!("{path}: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(attempt));
                }
                Err(e) => return Err(self.err("write", path, e)),
            }
        }
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.block_on(self.op.delete(path))
            .map_err(|e| self.err("delete", path, e))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.block_on(self.op.exists(path))
            .map_err(|e| self.err("stat", path, e))
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        let entries = match self.block_on(async { self.op.list_with(dir).recursive(true).await }) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", dir, e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .map(|e| {
                let path = e.path().trim_start_matches('/').to_string();
                let name = path.rsplit('/').next().unwrap_or("").to_string();
                let meta = e.metadata();
                Listed {
                    path,
                    name,
                    modified: meta.last_modified().map(std::time::SystemTime::from),
                    size: Some(meta.content_length()).filter(|_| meta.is_file()),
                }
            })
            .collect())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("holdfast-io")
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Aborts a failed multipart upload: its parts would otherwise stay on the server, invisible to
/// listings and billed, until a lifecycle rule removes them. Bounded in time: a server that is
/// gone refuses the abort too, and the upload's own error is the one to report.
async fn abort_upload(path: &str, w: &mut opendal::Writer) {
    match tokio::time::timeout(std::time::Duration::from_secs(30), w.abort()).await {
        Ok(Ok(())) => tracing::debug!("{path}: aborted the failed multipart upload"),
        Ok(Err(e)) => tracing::warn!("{path}: could not abort the failed multipart upload: {e}"),
        Err(_) => tracing::warn!("{path}: aborting the failed multipart upload timed out"),
    }
}

/// A multipart upload failed in a way that starting it over can fix: the server no longer
/// knows the upload (S3 says NoSuchUpload; s3s-fs after a restart says AccessDenied). A real
/// missing permission also says AccessDenied: that costs two bounded extra attempts.
fn lost_multipart_upload(e: &opendal::Error) -> bool {
    let text = e.to_string();
    let in_multipart = ["MultipartUpload", "UploadPart"]
        .iter()
        .any(|op| text.contains(op));
    in_multipart
        && ["NoSuchUpload", "AccessDenied", "InvalidPart"]
            .iter()
            .any(|code| text.contains(code))
}

pub(super) fn storage_err(op: &'static str, path: &str, source: opendal::Error) -> Error {
    if source.kind() == ErrorKind::NotFound {
        return Error::NotFound(path.to_string());
    }
    Error::Storage {
        op,
        path: path.to_string(),
        source: Box::new(source),
    }
}
