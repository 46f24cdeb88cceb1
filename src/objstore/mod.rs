//! Object storage (S3 and S3-compatible stores), as a blocking API.
//!
//! The protocol is the `object_store` crate's (signing, retries with
//! backoff, timeouts, multipart uploads); credentials, region and endpoint
//! come from the AWS SDK's chains ([`creds`]). The crate is async: a small
//! tokio runtime lives inside this module and nothing else sees it. Every
//! call blocks its caller, and gives up with [`Error::Interrupted`] within
//! 50 ms of the first SIGINT/SIGTERM.
//!
//! Memory is bounded whatever the size of the objects: a reader
//! ([`ObjectReader`]) fetches ranges of [`CHUNK`] bytes ahead of its
//! consumer, at most [`DEPTH`] at a time, and all readers of the process
//! share a pool of [`POOL`] bytes for that fetch-ahead (each reader may
//! always hold three chunks of its own: the one being read, one queued, one
//! in flight, so no reader waits for another). A writer ([`ObjectWriter`])
//! holds one part being filled and at most [`PART_CONCURRENCY`] parts in
//! flight.

pub mod handoff;

mod creds;
mod read;
mod write;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::sync::Semaphore;

pub use crate::pg::s3url::{is_s3, S3Url, UrlError};
pub use read::ObjectReader;
pub use write::ObjectWriter;

use crate::error::{Error, Result};

/// Bytes fetched by one ranged GET.
pub const CHUNK: usize = 4 << 20;
/// Ranged GETs one reader keeps in flight at most.
pub const DEPTH: usize = 6;
/// Fetch-ahead shared by all readers (beyond their own three chunks).
pub const POOL: usize = 48 << 20;
/// Size of a multipart upload's parts (S3's minimum is 5 MiB).
pub const PART: usize = 6 << 20;
/// Parts one writer uploads at once.
pub const PART_CONCURRENCY: usize = 2;
/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// Retries of one request (connection errors, timeouts, 5xx, 429), with
/// exponential backoff from 200 ms up to 5 s: a transient failure of a few
/// seconds does not fail the command, a store that is gone fails it within
/// about [`RETRY_TIMEOUT`].
const MAX_RETRIES: usize = 6;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte for this long ends a request (it is then retried).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole request may take this long (a 6 MiB part on a slow link).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Where to reach the store; everything else (credentials, region when not
/// given) comes the AWS way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    /// `--s3-endpoint`: an S3-compatible store (path-style addressing).
    /// Without it, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or the
    /// profile's `endpoint_url`, else AWS itself.
    pub endpoint: Option<String>,
    /// `--s3-region`; without it the environment, the profile, the instance.
    pub region: Option<String>,
    /// Keys handed over by another pgdrill process ([`handoff`]), used
    /// instead of the AWS chain until they expire.
    pub keys: Option<handoff::StaticKeys>,
}

impl S3Config {
    /// The settings a credential file carries.
    pub fn from_handoff(h: handoff::Handoff) -> S3Config {
        S3Config { endpoint: h.endpoint, region: Some(h.region), keys: Some(h.keys) }
    }
}

/// One object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key relative to the store's prefix.
    pub name: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
    pub etag: Option<String>,
}

/// A bucket and prefix, opened.
#[derive(Clone)]
pub struct Store {
    url: S3Url,
    inner: Arc<dyn ObjectStore>,
    pool: Arc<Semaphore>,
    access: Arc<Access>,
}

/// How the store is reached: what [`Store::handoff`] passes on.
struct Access {
    endpoint: Option<String>,
    region: String,
    creds: Creds,
}

enum Creds {
    Sdk(Arc<creds::SdkCredentials>),
    Static(handoff::StaticKeys),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// The process's runtime for object storage: a few threads are plenty for
/// network-bound work, and the callers' own threads block on it.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .thread_name("pgdrill-s3")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::ObjectStoreSetup { message: format!("cannot start the I/O runtime: {e}") })
}

/// The fetch-ahead pool, shared by every store of the process.
fn pool() -> Arc<Semaphore> {
    static POOL_SEM: OnceLock<Arc<Semaphore>> = OnceLock::new();
    Arc::clone(POOL_SEM.get_or_init(|| Arc::new(Semaphore::new(POOL / CHUNK))))
}

/// Run `f` on the runtime until it is done or a signal arrives.
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = runtime()?;
    rt.block_on(async {
        tokio::select! {
            biased;
            () = until_interrupted() => Err(Error::Interrupted),
            v = f => Ok(v),
        }
    })
}

/// Run `f` to its end, bounded, even after a signal: cleanup (an aborted
/// upload) that the watchdog waits for.
pub(crate) fn block_on_cleanup<F: Future>(f: F, limit: Duration) -> Option<F::Output> {
    let _guard = crate::signals::cleaning();
    runtime().ok()?.block_on(async { tokio::time::timeout(limit, f).await.ok() })
}

async fn until_interrupted() {
    while !crate::signals::interrupted() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Store {
    /// Open `url` with `config`. Makes no request: a wrong endpoint, bucket
    /// or credential shows in the first call.
    pub fn open(url: &S3Url, config: &S3Config) -> Result<Store> {
        let (inner, access) = block_on(build(url.bucket(), config))??;
        Ok(Store { url: url.clone(), inner, pool: pool(), access: Arc::new(access) })
    }

    /// What another OS user's process needs to reach this store with the
    /// credentials in use now (see [`handoff`]).
    pub fn handoff(&self) -> Result<handoff::Handoff> {
        let keys = match &self.access.creds {
            Creds::Static(k) => k.clone(),
            Creds::Sdk(sdk) => {
                let (cred, expiry) = block_on(sdk.current())?.map_err(self.fail("", "resolving credentials for"))?;
                handoff::StaticKeys {
                    key_id: cred.key_id.clone(),
                    secret: cred.secret_key.clone(),
                    token: cred.token.clone(),
                    expires: expiry
                        .and_then(|e| e.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64),
                }
            }
        };
        Ok(handoff::Handoff { endpoint: self.access.endpoint.clone(), region: self.access.region.clone(), keys })
    }

    /// The same bucket at `rel` below this store's prefix.
    pub fn at(&self, rel: &str) -> Result<Store> {
        let url = self.url.join(rel).map_err(|e| bad_url(&self.url, rel, e))?;
        Ok(Store {
            url,
            inner: Arc::clone(&self.inner),
            pool: Arc::clone(&self.pool),
            access: Arc::clone(&self.access),
        })
    }

    pub fn url(&self) -> &S3Url {
        &self.url
    }

    /// The URL of `rel`, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        self.url.join(rel).map(|u| u.to_string()).unwrap_or_else(|_| format!("{}/{rel}", self.url))
    }

    fn path(&self, rel: &str) -> Result<ObjPath> {
        let key = self.url.key(rel).map_err(|e| bad_url(&self.url, rel, e))?;
        ObjPath::parse(&key).map_err(|e| Error::ObjectStore {
            url: self.url_of(rel),
            action: "naming",
            source: object_store::Error::InvalidPath { source: e },
        })
    }

    fn fail(&self, rel: &str, action: &'static str) -> impl FnOnce(object_store::Error) -> Error + '_ {
        let url = self.url_of(rel);
        move |source| {
            if crate::error::store_answered(&source, "NoSuchBucket") {
                return Error::NoSuchBucket { bucket: self.url.bucket().to_string() };
            }
            Error::ObjectStore { url, action, source }
        }
    }

    /// Every object below `rel` (`""`: below the prefix), recursively, with
    /// names relative to the prefix, sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<ObjectInfo>> {
        let prefix = if rel.is_empty() && self.url.prefix().is_empty() { None } else { Some(self.path(rel)?) };
        let found: Vec<object_store::ObjectMeta> = block_on(self.inner.list(prefix.as_ref()).try_collect())
            .and_then(|r| r.map_err(self.fail(rel, "listing")))?;
        let mut out: Vec<ObjectInfo> = found.into_iter().filter_map(|m| self.info(m)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn info(&self, m: object_store::ObjectMeta) -> Option<ObjectInfo> {
        let name = self.url.relative(m.location.as_ref())?.to_string();
        Some(ObjectInfo { name, size: m.size, modified: m.last_modified, etag: m.e_tag })
    }

    /// The object `rel`, or `None` when there is none.
    pub fn head(&self, rel: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(rel)?;
        match block_on(self.inner.head(&path))? {
            Ok(m) => Ok(self.info(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(rel, "reading the metadata of")(e)),
        }
    }

    /// The whole object `rel` if it is at most `limit` bytes (`None` when
    /// there is no such object). For small files: labels, manifests.
    pub fn read_small(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(info) = self.head(rel)? else { return Ok(None) };
        if info.size > limit {
            return Err(Error::ObjectTooLarge { url: self.url_of(rel), size: info.size, limit });
        }
        let mut reader = ObjectReader::start(self, rel, &info)?;
        let mut out = Vec::with_capacity(info.size as usize);
        while let Some(chunk) = reader.next_chunk()? {
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }

    /// A streaming reader of `rel`, or `None` when there is no such object.
    pub fn open_reader(&self, rel: &str) -> Result<Option<ObjectReader>> {
        let Some(info) = self.head(rel)? else { return Ok(None) };
        ObjectReader::start(self, rel, &info).map(Some)
    }

    /// A streaming reader of an object whose size a listing already gave
    /// (no extra request; the listing's ETag pins the version read).
    pub fn reader(&self, info: &ObjectInfo) -> Result<ObjectReader> {
        ObjectReader::start(self, &info.name, info)
    }

    /// Write `rel` at once (small objects).
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(rel)?;
        block_on(self.inner.put(&path, PutPayload::from(bytes)))?.map_err(self.fail(rel, "writing"))?;
        Ok(())
    }

    /// A streaming writer of `rel` (multipart above one part). The object
    /// appears only when [`ObjectWriter::finish`] succeeds; a writer dropped
    /// before that aborts its upload.
    pub fn writer(&self, rel: &str, size_hint: Option<u64>) -> Result<ObjectWriter> {
        let path = self.path(rel)?;
        Ok(ObjectWriter::new(Arc::clone(&self.inner), path, self.url_of(rel), part_size(size_hint)))
    }

    /// Remove `rel` (no error when it is already gone).
    pub fn delete(&self, rel: &str) -> Result<()> {
        let path = self.path(rel)?;
        match block_on(self.inner.delete(&path))? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(rel, "removing")(e)),
        }
    }

    /// Remove many objects (batched where the store can), stopping at the
    /// first failure.
    pub fn delete_many(&self, rels: &[String]) -> Result<()> {
        let paths: Vec<object_store::Result<ObjPath>> =
            rels.iter().map(|r| self.path(r)).collect::<Result<Vec<_>>>()?.into_iter().map(Ok).collect();
        let stream = self.inner.delete_stream(futures::stream::iter(paths).boxed());
        let results: Vec<object_store::Result<ObjPath>> = block_on(stream.collect())?;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.fail("", "removing objects below")(e)),
            }
        }
        Ok(())
    }

    /// Remove every object below the prefix, `last` at the very end. For
    /// cleanup after a failure: it runs to its end after a signal too
    /// (bounded), and the signal watchdog waits for it.
    pub fn purge_for_cleanup(&self, last: &str) -> Result<()> {
        const LIMIT: Duration = Duration::from_secs(60);
        let timed_out = || Error::ObjectStoreSetup { message: format!("{}: cleanup took too long", self.url) };
        let prefix = if self.url.prefix().is_empty() { None } else { Some(self.path("")?) };
        let listed: Vec<object_store::ObjectMeta> =
            block_on_cleanup(self.inner.list(prefix.as_ref()).try_collect(), LIMIT)
                .ok_or_else(timed_out)?
                .map_err(self.fail("", "listing"))?;
        let last_path = self.path(last)?;
        let (lasts, rest): (Vec<ObjPath>, Vec<ObjPath>) =
            listed.into_iter().map(|m| m.location).partition(|p| *p == last_path);
        for batch in [rest, lasts] {
            let stream = self.inner.delete_stream(futures::stream::iter(batch.into_iter().map(Ok)).boxed());
            let results: Vec<object_store::Result<ObjPath>> =
                block_on_cleanup(stream.collect(), LIMIT).ok_or_else(timed_out)?;
            for r in results {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.fail("", "removing objects below")(e)),
                }
            }
        }
        Ok(())
    }

    pub(crate) fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub(crate) fn pool(&self) -> &Arc<Semaphore> {
        &self.pool
    }
}

/// A part size that fits an object of `size_hint` bytes into S3's 10,000
/// parts.
fn part_size(size_hint: Option<u64>) -> usize {
    let needed = size_hint.map(|s| s.div_ceil(MAX_PARTS - 100)).unwrap_or(0);
    usize::try_from(needed).unwrap_or(usize::MAX).max(PART)
}

fn bad_url(base: &S3Url, rel: &str, e: UrlError) -> Error {
    Error::BadS3Url { url: format!("{base}/{rel}"), source: e }
}

/// The client for `bucket`: endpoint, region and credentials the AWS way,
/// retries and timeouts as above.
async fn build(bucket: &str, config: &S3Config) -> Result<(Arc<dyn ObjectStore>, Access)> {
    let endpoint = match &config.endpoint {
        Some(e) => Some(e.clone()),
        None => creds::endpoint().await,
    };
    let region = match &config.region {
        Some(r) => r.clone(),
        None => creds::region(endpoint.is_some()).await,
    };
    let now = chrono::Utc::now().timestamp();
    let (provider, creds): (object_store::aws::AwsCredentialProvider, Creds) =
        match config.keys.as_ref().filter(|k| !k.expired(now)) {
            Some(k) => {
                let cred = object_store::aws::AwsCredential {
                    key_id: k.key_id.clone(),
                    secret_key: k.secret.clone(),
                    token: k.token.clone(),
                };
                (Arc::new(object_store::StaticCredentialProvider::new(cred)), Creds::Static(k.clone()))
            }
            None => {
                let sdk = Arc::new(creds::SdkCredentials::new(&region).await);
                (Arc::clone(&sdk) as object_store::aws::AwsCredentialProvider, Creds::Sdk(sdk))
            }
        };
    let options = ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_read_timeout(READ_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_allow_http(endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&region)
        .with_credentials(provider)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(e) = &endpoint {
        builder = builder.with_endpoint(e).with_virtual_hosted_style_request(false);
    }
    let store = builder.build().map_err(|e| Error::ObjectStoreSetup { message: e.to_string() })?;
    Ok((Arc::new(store), Access { endpoint, region, creds }))
}

/// Whether an I/O error from a reader or writer carries an error of ours
/// (an interrupt, an object-store failure) that should be returned as is.
pub fn take_error(e: std::io::Error) -> std::result::Result<Error, std::io::Error> {
    if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Err(e);
    }
    let kind = e.kind();
    match e.into_inner() {
        Some(inner) => inner.downcast::<Error>().map(|b| *b).map_err(|b| std::io::Error::new(kind, b)),
        None => Err(std::io::Error::from(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_fit_s3s_part_limit() {
        assert_eq!(part_size(None), PART);
        assert_eq!(part_size(Some(1 << 30)), PART);
        let huge = 200u64 << 30;
        let p = part_size(Some(huge)) as u64;
        assert!(huge.div_ceil(p) <= MAX_PARTS, "{p}");
    }

    #[test]
    fn io_errors_give_back_our_errors() {
        let e = std::io::Error::other(Error::Interrupted);
        assert!(matches!(take_error(e), Ok(Error::Interrupted)));
        let e = std::io::Error::other("plain");
        assert!(take_error(e).is_err());
    }
}
