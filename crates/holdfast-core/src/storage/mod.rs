//! Where repository objects live: a thin synchronous face over Apache OpenDAL, and over a
//! local folder walked without following links ([`local`]).
//!
//! The repository only ever writes whole objects once, reads whole objects or byte ranges,
//! lists a folder, and deletes. That is all object storage offers, so nothing above this layer
//! can come to depend on rename, append or listing order. On the local filesystem, objects are
//! written as temp file + fsync + rename + directory fsync, so a crash never leaves a
//! half-written object under its final name, nor an index naming a pack whose rename was
//! lost. Local operations go straight to the kernel (one exactly sized buffer, no copy
//! through an async runtime: that took a tenth of a first backup's system time), relative to
//! a descriptor of the repository root so that no link inside it is ever followed.

mod local;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opendal::{ErrorKind, Operator};

use crate::error::{Error, Result};
use local::LocalDir;
pub use local::{DIR_MODE, FILE_MODE};

/// Top-level folders of a repository; each object's name in them is a hex id.
pub mod layout {
    pub const CONFIG: &str = "config";
    pub const KEYS: &str = "keys/";
    pub const SNAPSHOTS: &str = "snapshots/";
    pub const INDEX: &str = "index/";
    pub const DATA: &str = "data/";
    pub const LOCKS: &str = "locks/";
    /// Temp files of the local backend before they are renamed into place.
    pub const TMP: &str = "tmp";

    /// `data/ab/abcdef…`: 256 fan-out folders keep directory listings short.
    pub fn pack_path(hex: &str) -> String {
        format!("{DATA}{}/{hex}", &hex[..2])
    }
}

/// Where an S3-compatible repository is, and how to reach it. Without `credentials`, they come
/// from the AWS SDK chain: the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
/// variables, then `profile` (or `AWS_PROFILE`) in the shared files `~/.aws/credentials` and
/// `~/.aws/config`, then the instance's role. Never on a command line, never in a message.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub bucket: String,
    /// Folder inside the bucket ("" for the whole bucket).
    pub prefix: String,
    /// e.g. `http://127.0.0.1:9000` for MinIO or Garage; AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Address buckets as `bucket.host` (AWS default) instead of `host/bucket`.
    pub virtual_host_style: bool,
    /// Requests in flight at once.
    pub max_requests: usize,
    /// Attempts after the first for a request that failed in a way worth retrying (throttled,
    /// 5xx, timeout), with exponential backoff from 200 ms to 20 s and jitter.
    pub max_retries: usize,
    /// A profile of the AWS shared files, instead of `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Keys given explicitly (from holdfast's configuration file).
    pub credentials: Option<S3Credentials>,
}

/// A static access key. `Debug` shows the key id only.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl S3Options {
    /// Parses `s3://bucket/prefix`.
    pub fn from_url(url: &str) -> Result<S3Options> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Invalid(format!("'{url}' is not an s3://bucket/prefix URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Invalid(format!("'{url}' names no bucket")));
        }
        Ok(S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            max_requests: 16,
            max_retries: 8,
            ..Default::default()
        })
    }
}

/// How many reads [`Storage::read_many`] keeps outstanding. On S3 the connection layer caps
/// requests in flight further (`--s3-max-requests`).
pub const READS_IN_FLIGHT: usize = 32;

#[derive(Clone)]
pub struct Storage {
    /// The object store (S3) and the runtime its client runs on; `None` for a local folder,
    /// which needs neither.
    op: Option<Operator>,
    rt: Option<Arc<tokio::runtime::Runtime>>,
    location: String,
    local: Option<Arc<LocalDir>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.location)
    }
}

/// One listed object: its path relative to the repository root, and size when known.
/// What this process asked of storage so far, counted at the repository's level: one read,
/// write, delete or stat is one request; a list is one request per started page of 1,000
/// names, as on S3. Multipart uploads count as one write. `holdfast -v` prints it at the end
/// and `docs/scale.md` is measured with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub reads: u64,
    pub writes: u64,
    pub deletes: u64,
    pub stats: u64,
    pub lists: u64,
    pub list_pages: u64,
    pub listed_names: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl RequestCounts {
    /// Requests an S3 server would bill for.
    pub fn requests(&self) -> u64 {
        self.reads + self.writes + self.deletes + self.stats + self.list_pages
    }
}

static COUNTERS: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];
const READS: usize = 0;
const WRITES: usize = 1;
const DELETES: usize = 2;
const STATS: usize = 3;
const LISTS: usize = 4;
const LIST_PAGES: usize = 5;
const LISTED: usize = 6;
const BYTES_READ: usize = 7;
const BYTES_WRITTEN: usize = 8;

fn count(what: usize, n: u64) {
    COUNTERS[what].fetch_add(n, Ordering::Relaxed);
}

/// The requests of every [`Storage`] in this process so far.
pub fn request_counts() -> RequestCounts {
    let c = |i: usize| COUNTERS[i].load(Ordering::Relaxed);
    RequestCounts {
        reads: c(READS),
        writes: c(WRITES),
        deletes: c(DELETES),
        stats: c(STATS),
        lists: c(LISTS),
        list_pages: c(LIST_PAGES),
        listed_names: c(LISTED),
        bytes_read: c(BYTES_READ),
        bytes_written: c(BYTES_WRITTEN),
    }
}

#[derive(Debug, Clone)]
pub struct Listed {
    pub path: String,
    pub name: String,
    /// When the storage says the object was written (its own clock: the local filesystem's,
    /// or the object store's), where the listing tells it.
    pub modified: Option<std::time::SystemTime>,
    pub size: Option<u64>,
}

impl Storage {
    /// A repository on the local filesystem. `create` makes the folder (for `init`); otherwise
    /// a missing folder is [`Error::NoRepository`].
    pub fn local(path: &Path, create: bool) -> Result<Storage> {
        let location = path.display().to_string();
        if !create && !path.is_dir() {
            return Err(Error::NoRepository(location));
        }
        Ok(Storage {
            op: None,
            rt: None,
            location,
            local: Some(Arc::new(LocalDir::open(path, create)?)),
        })
    }

    /// A repository in an S3-compatible bucket. Requests are retried with exponential
    /// backoff and jitter on throttling, 5xx and timeouts, at most `max_requests` run at
    /// once, and objects larger than 8 MiB are uploaded in parts (aborted when they fail).
    pub fn s3(opts: &S3Options) -> Result<Storage> {
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
        Ok(Storage {
            op: Some(op),
            rt: Some(Arc::new(runtime())),
            location,
            local: None,
        })
    }

    /// The repository location as the user named it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The local folder, when the repository is on the local filesystem.
    pub fn local_root(&self) -> Option<&Path> {
        self.local.as_deref().map(LocalDir::root)
    }

    /// The object store; only called on paths where `local` is `None`.
    fn op(&self) -> &Operator {
        self.op
            .as_ref()
            .expect("an object store behind a non-local storage")
    }

    /// Runs an object-store request to completion; only called where `local` is `None`.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt
            .as_ref()
            .expect("a runtime behind a non-local storage")
            .block_on(f)
    }

    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        count(READS, 1);
        if let Some(local) = &self.local {
            let bytes = local.read(path)?;
            count(BYTES_READ, bytes.len() as u64);
            return Ok(bytes);
        }
        let bytes = self
            .block_on(self.op().read(path))
            .map(|b| b.to_vec())
            .map_err(|e| self.err("read", path, e))?;
        count(BYTES_READ, bytes.len() as u64);
        Ok(bytes)
    }

    /// Reads many small objects with up to [`READS_IN_FLIGHT`] requests outstanding, results
    /// in the order of `paths`. Snapshots and index files are one object per backup, so a
    /// repository that a thousand hosts back up into holds thousands of them; fetched one at
    /// a time over S3 at 10-50 ms a request, a cold start would take minutes.
    pub fn read_many(&self, paths: &[String]) -> Vec<Result<Vec<u8>>> {
        use futures::stream::{self, StreamExt};
        if self.local.is_some() {
            return paths.iter().map(|path| self.read(path)).collect();
        }
        self.block_on(
            stream::iter(paths)
                .map(|path| async move {
                    count(READS, 1);
                    let bytes = self
                        .op()
                        .read(path)
                        .await
                        .map(|b| b.to_vec())
                        .map_err(|e| self.err("read", path, e))?;
                    count(BYTES_READ, bytes.len() as u64);
                    Ok(bytes)
                })
                .buffered(READS_IN_FLIGHT)
                .collect(),
        )
    }

    pub fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        count(READS, 1);
        if let Some(local) = &self.local {
            let buf = local.read_range(path, offset, len)?;
            count(BYTES_READ, len);
            return Ok(buf);
        }
        let buf = self
            .block_on(async { self.op().read_with(path).range(offset..offset + len).await })
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
        count(BYTES_READ, len);
        Ok(buf.to_vec())
    }

    /// Like [`Storage::write`], and gives the buffer back when the backend did not keep it
    /// (local files), so that the caller can fill it again instead of allocating and zeroing
    /// another one.
    pub fn write_reusing(&self, path: &str, bytes: Vec<u8>) -> Result<Option<Vec<u8>>> {
        count(WRITES, 1);
        count(BYTES_WRITTEN, bytes.len() as u64);
        match &self.local {
            Some(local) => local.write(path, &bytes).map(|()| Some(bytes)),
            None => self.write_remote(path, bytes).map(|()| None),
        }
    }

    pub fn write(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.write_reusing(path, bytes).map(drop)
    }

    /// An object store's write: multipart above 8 MiB, started again whole when the server
    /// lost its multipart upload.
    fn write_remote(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        const PART: usize = 8 << 20;
        let big = bytes.len() > PART;
        let buf = opendal::Buffer::from(bytes);
        let mut attempt = 0;
        loop {
            let result = self.block_on(async {
                if big {
                    // Parts go one after the other: packs already upload in parallel.
                    let mut w = self.op().writer_with(path).chunk(PART).await?;
                    let mut done = w.write(buf.clone()).await;
                    if done.is_ok() {
                        done = w.close().await.map(drop);
                    }
                    if done.is_err() {
                        abort_upload(path, &mut w).await;
                    }
                    done
                } else {
                    self.op().write(path, buf.clone()).await.map(drop)
                }
            });
            match result {
                Ok(_) => return Ok(()),
                // Requests are retried one by one below us; but a multipart upload the server
                // forgot (it restarted, or a lifecycle rule aborted it) fails for good at its
                // next part. Every name is written once with the same content, so the whole
                // object can start again.
                Err(e) if big && attempt < 2 && lost_multipart_upload(&e) => {
                    attempt += 1;
                    count(WRITES, 1);
                    tracing::warn!("{path}: the server lost its multipart upload; starting again");
                    tracing::debug!("{path}: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(attempt));
                }
                Err(e) => return Err(self.err("write", path, e)),
            }
        }
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        count(DELETES, 1);
        if let Some(local) = &self.local {
            return local.delete(path);
        }
        self.block_on(self.op().delete(path))
            .map_err(|e| self.err("delete", path, e))
    }

    pub fn exists(&self, path: &str) -> Result<bool> {
        count(STATS, 1);
        if let Some(local) = &self.local {
            return local.exists(path);
        }
        self.block_on(self.op().exists(path))
            .map_err(|e| self.err("stat", path, e))
    }

    /// Every object below `dir` (which ends in `/`), in no particular order.
    pub fn list(&self, dir: &str) -> Result<Vec<Listed>> {
        count(LISTS, 1);
        if let Some(local) = &self.local {
            let entries = local.list(dir)?;
            count(LIST_PAGES, (entries.len() as u64).div_ceil(1000).max(1));
            count(LISTED, entries.len() as u64);
            return Ok(entries
                .into_iter()
                .map(|e| Listed {
                    path: e.path,
                    name: e.name,
                    modified: e.modified,
                    size: Some(e.size),
                })
                .collect());
        }
        let entries = match self.block_on(async { self.op().list_with(dir).recursive(true).await })
        {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                count(LIST_PAGES, 1);
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err("list", dir, e)),
        };
        count(LIST_PAGES, (entries.len() as u64).div_ceil(1000).max(1));
        count(LISTED, entries.len() as u64);
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

impl Storage {
    /// A storage error; refused credentials become one plain line naming the repository.
    fn err(&self, op: &'static str, path: &str, source: opendal::Error) -> Error {
        if self.local.is_some() {
            return storage_err(op, path, source);
        }
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

fn storage_err(op: &'static str, path: &str, source: opendal::Error) -> Error {
    if source.kind() == ErrorKind::NotFound {
        return Error::NotFound(path.to_string());
    }
    Error::Storage {
        op,
        path: path.to_string(),
        source: Box::new(source),
    }
}
