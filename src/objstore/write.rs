//! Streaming writes: one PUT for a small object, a multipart upload above
//! one part, with a bounded number of parts in flight. The object exists
//! only once the upload is completed; an abandoned writer aborts it.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;
use tokio::io::AsyncWriteExt;

use super::{block_on, block_on_cleanup, PART_CONCURRENCY};
use crate::error::{Error, Result};

/// How long an abort may take when a writer is dropped unfinished.
const ABORT_LIMIT: Duration = Duration::from_secs(10);

/// Writes one object. Implements [`Write`]; call [`ObjectWriter::finish`]
/// to make the object appear.
pub struct ObjectWriter {
    url: String,
    inner: Option<BufWriter>,
    written: u64,
}

impl ObjectWriter {
    pub(super) fn new(store: Arc<dyn ObjectStore>, path: ObjPath, url: String, part: usize) -> ObjectWriter {
        let inner = BufWriter::with_capacity(store, path, part).with_max_concurrency(PART_CONCURRENCY);
        ObjectWriter { url, inner: Some(inner), written: 0 }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn fail(&self, e: io::Error) -> Error {
        match super::take_error(e) {
            Ok(ours) => ours,
            Err(e) => Error::ObjectStore { url: self.url.clone(), action: "writing", source: from_io(e) },
        }
    }

    /// Write `buf` whole.
    pub fn write_bytes(&mut self, buf: &[u8]) -> Result<()> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(Error::ObjectStoreSetup { message: format!("{}: written after it was finished", self.url) });
        };
        match block_on(inner.write_all(buf))? {
            Ok(()) => {
                self.written += buf.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Complete the upload: the object appears, whole, now.
    pub fn finish(mut self) -> Result<u64> {
        let Some(mut inner) = self.inner.take() else { return Ok(self.written) };
        match block_on(inner.shutdown()) {
            Ok(Ok(())) => Ok(self.written),
            Ok(Err(e)) => {
                block_on_cleanup(inner.abort(), ABORT_LIMIT);
                Err(self.fail(e))
            }
            Err(e) => {
                block_on_cleanup(inner.abort(), ABORT_LIMIT);
                Err(e)
            }
        }
    }

    /// Give up: abort the upload (nothing appears).
    pub fn abort(mut self) {
        if let Some(mut inner) = self.inner.take() {
            block_on_cleanup(inner.abort(), ABORT_LIMIT);
        }
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Parts go out as they fill; only finish() completes the object.
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(mut inner) = self.inner.take() {
            block_on_cleanup(inner.abort(), ABORT_LIMIT);
        }
    }
}

/// The object-store error inside an I/O error from the buffered writer.
fn from_io(e: io::Error) -> object_store::Error {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<object_store::Error>() {
            Ok(os) => *os,
            Err(other) => object_store::Error::Generic { store: "S3", source: other },
        },
        None => object_store::Error::Generic { store: "S3", source: "write failed".into() },
    }
}
