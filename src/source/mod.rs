//! Where bytes come from: the I/O layer under the capabilities.
//!
//! Two abstractions, so that the checks never know what is underneath:
//!
//! - [`wal::WalSource`]: "give me WAL file NAME" (a segment, a `.partial`,
//!   a `.history`), answered by a directory ([`wal::DirWal`], plain or
//!   compressed files), a fetch command with PostgreSQL's `%f`/`%p`
//!   contract ([`wal::CommandWal`], e.g. pgBackRest's `archive-get`), the
//!   `pg_wal` inside a tar backup, or object storage;
//! - [`backup::BackupSource`]: "every file of this backup, once, with its
//!   path, size and mode", answered by a plain directory
//!   ([`backup::DirBackup`]), a tar-format backup in any compression
//!   ([`backup::TarBackup`]), or object storage.
//!
//! Everything handed out is decompressed ([`compress`]) and streamed:
//! nothing is held in memory whole, so the memory a check needs does not
//! depend on the size of what it reads.
//!
//! A backup is untrusted input (docs/design.md, "Threat model"): a source
//! hands out only plain relative paths, never follows a link it finds in a
//! backup, and refuses tar members that are links (other than
//! `pg_tblspc/<oid>`), devices, `..` or absolute paths, or hard links
//! ([`tar`]).
//!
//! # Adding a source
//!
//! A new source (an object store, say) implements [`wal::WalSource`] for
//! WAL and [`backup::BackupSource`] for backups; `verify`, `inspect`,
//! `wal-keep`, `restore` and `drill` then read from it unchanged. The trait
//! documentation states each method's contract: which errors are findings
//! (`Absent`, read errors) and which abort (`Err`), how interrupts must be
//! honoured (a long operation gives up within about a second of
//! [`crate::signals::interrupted`] turning true), and which methods are
//! optional (listing, removal, prefetching, random access).

pub mod backup;
pub mod compress;
pub mod fetch;
pub mod s3;
pub mod tar;
pub mod wal;

pub use backup::{BackupFormat, BackupSource, DirBackup, EntryKind, EntryMeta, TarBackup, Visit};
pub use compress::{CompressSpec, Compression};
pub use s3::{s3_backup, wal_archive, S3Backup, S3Wal};
pub use wal::{CommandWal, DirWal, Fetched, StoredWal, WalFile, WalSource};

/// A read of `path` that failed: [`crate::error::Error::ReadInput`], or
/// [`crate::error::Error::Interrupted`] when it failed because a signal
/// asked the reader to stop (the readers give up on an interrupt, and that
/// is exit 3, not bad input).
pub fn read_error(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> crate::error::Error {
    if crate::signals::interrupted() {
        return crate::error::Error::Interrupted;
    }
    // A store unreachable after retries is that error (exit 3), not bad input.
    match fatal(source) {
        Ok(source) => crate::error::Error::ReadInput { path: path.into(), source },
        Err(e) => e,
    }
}

/// An error a source handed out inside an `io::Error` that must end the
/// command instead of becoming a finding: object storage unreachable after
/// the client's retries, refused credentials, a missing bucket, an
/// interrupt (`Err`, with that error). An object that is not there is a
/// finding like a missing file, and so is every other error (`Ok`, as it
/// was).
pub fn fatal(e: std::io::Error) -> Result<std::io::Error, crate::error::Error> {
    match crate::objstore::take_error(e) {
        Ok(crate::error::Error::ObjectStore {
            url,
            action,
            source: object_store::Error::NotFound { path, source },
        }) => Ok(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{url}: {action}: not found ({path}: {source})"),
        )),
        Ok(err) => Err(err),
        Err(e) => Ok(e),
    }
}

/// Fill `buf` from `r` as far as possible; the count is short only at the
/// end of the stream.
pub fn fill<R: std::io::Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The small files that say what a backup is ([`crate::datadir::Captured`]),
/// read from any source in one pass, with its manifest (read whole, as
/// `inspect` shows it).
pub fn capture(src: &dyn BackupSource, root: &std::path::Path) -> std::io::Result<crate::datadir::Captured> {
    use std::io::Read;
    let mut c = crate::datadir::Captured { root: root.to_path_buf(), ..Default::default() };
    src.stream(&mut |v| {
        if let Visit::Entry(meta, reader) = v {
            let rel = meta.shown();
            if let Some(limit) = crate::datadir::Captured::wants(&rel) {
                if meta.kind == EntryKind::File {
                    let mut kept = Vec::new();
                    reader.take(limit).read_to_end(&mut kept)?;
                    c.files.insert(rel.clone(), (kept, meta.size));
                }
                c.seen.insert(rel);
            }
        }
        Ok(true)
    })?;
    if let Some((mut r, size)) = src.open_manifest()? {
        let mut b = Vec::new();
        r.read_to_end(&mut b)?;
        c.files.insert(crate::datadir::BACKUP_MANIFEST.to_string(), (b, size));
    }
    Ok(c)
}
