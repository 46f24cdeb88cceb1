//! Streaming reads: ranged GETs fetched ahead of the consumer, in parallel,
//! in order, with bounded memory.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{block_on, ObjectInfo, Store, CHUNK, DEPTH};
use crate::error::{Error, Result};

/// Attempts at one range when the body breaks off after the request
/// succeeded (the client's own retries cover the request itself).
const RANGE_ATTEMPTS: u32 = 3;

/// One fetched range, and the share of the pool it holds until read.
struct Chunk {
    bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Reads one object front to back. Implements [`Read`]; errors of ours
/// (an interrupt, a failed request) travel inside the `io::Error` and come
/// back out with [`super::take_error`].
pub struct ObjectReader {
    url: String,
    size: u64,
    rx: mpsc::Receiver<std::result::Result<Chunk, object_store::Error>>,
    current: Option<Chunk>,
    offset: usize,
    task: JoinHandle<()>,
}

impl ObjectReader {
    pub(super) fn start(store: &Store, rel: &str, info: &ObjectInfo) -> Result<ObjectReader> {
        let path = store.path(rel)?;
        let (tx, rx) = mpsc::channel(1);
        let fetch = Fetch {
            store: Arc::clone(store.inner()),
            path,
            size: info.size,
            etag: info.etag.clone(),
            pool: Arc::clone(store.pool()),
        };
        let task = super::runtime()?.spawn(fetch.run(tx));
        Ok(ObjectReader { url: store.url_of(rel), size: info.size, rx, current: None, offset: 0, task })
    }

    /// The object's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The URL read, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next chunk as fetched (no copy), `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if let Some(c) = self.current.take() {
            let rest = c.bytes.slice(self.offset..);
            self.offset = 0;
            if !rest.is_empty() {
                return Ok(Some(rest));
            }
        }
        match block_on(self.rx.recv())? {
            None => Ok(None),
            Some(Ok(c)) => Ok(Some(c.bytes)),
            Some(Err(source)) => Err(Error::ObjectStore { url: self.url.clone(), action: "reading", source }),
        }
    }

    fn fill(&mut self) -> Result<bool> {
        if self.current.as_ref().is_some_and(|c| self.offset < c.bytes.len()) {
            return Ok(true);
        }
        self.current = None;
        self.offset = 0;
        match block_on(self.rx.recv())? {
            None => Ok(false),
            Some(Ok(c)) => {
                self.current = Some(c);
                Ok(true)
            }
            Some(Err(source)) => Err(Error::ObjectStore { url: self.url.clone(), action: "reading", source }),
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.fill().map_err(io::Error::other)? {
            return Ok(0);
        }
        let Some(c) = &self.current else { return Ok(0) };
        let rest = &c.bytes[self.offset..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.offset += n;
        Ok(n)
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A spawned fetch that is aborted when dropped (a reader closed early).
struct Owned<T>(JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for Owned<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

type Fetched = (object_store::Result<Bytes>, Option<OwnedSemaphorePermit>);

/// The fetch-ahead of one reader.
struct Fetch {
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    size: u64,
    etag: Option<String>,
    pool: Arc<Semaphore>,
}

impl Fetch {
    /// Keep up to [`DEPTH`] ranges in flight (the first without a permit,
    /// the others only while the shared pool has room) and hand them over
    /// in order.
    async fn run(self, tx: mpsc::Sender<std::result::Result<Chunk, object_store::Error>>) {
        let me = Arc::new(self);
        let mut next = 0u64;
        let mut inflight: FuturesOrdered<Owned<Fetched>> = FuturesOrdered::new();
        loop {
            while inflight.len() < DEPTH && next < me.size {
                let permit = if inflight.is_empty() {
                    None
                } else {
                    match Arc::clone(&me.pool).try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => break,
                    }
                };
                let range = next..me.size.min(next + CHUNK as u64);
                next = range.end;
                let f = Arc::clone(&me);
                inflight.push_back(Owned(tokio::spawn(async move { (f.range(range).await, permit) })));
            }
            let Some(done) = inflight.next().await else { break };
            let chunk = match done {
                Ok((Ok(bytes), permit)) => Ok(Chunk { bytes, _permit: permit }),
                Ok((Err(e), _)) => Err(e),
                Err(join) => Err(object_store::Error::JoinError { source: join }),
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    }

    /// One range, pinned to the version listed (an object replaced while it
    /// is read fails instead of mixing two versions).
    async fn range(&self, range: Range<u64>) -> object_store::Result<Bytes> {
        let want = range.end - range.start;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                if_match: self.etag.clone(),
                ..Default::default()
            };
            let got = match self.store.get_opts(&self.path, options).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            match got {
                Ok(b) if b.len() as u64 == want => return Ok(b),
                Ok(b) => {
                    return Err(object_store::Error::Generic {
                        store: "S3",
                        source: format!("asked for {want} bytes at offset {}, got {}", range.start, b.len()).into(),
                    })
                }
                Err(e) if attempt < RANGE_ATTEMPTS && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Failures worth another attempt: not an answer about the object itself.
fn retryable(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::NotModified { .. }
    )
}
