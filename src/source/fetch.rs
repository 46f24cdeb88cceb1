//! `pgdrill wal-fetch NAME PATH --archive DIR`: pgdrill as a
//! `restore_command`, for archives PostgreSQL cannot read with `cp`
//! (compressed files).
//!
//! The contract is PostgreSQL's (`RestoreArchivedFile()`,
//! `src/backend/access/transam/xlogarchive.c`): write file `%f` to `%p`
//! and exit 0, or exit non-zero when the archive has no such file. The
//! server asks for segments past the archive's end as a matter of course,
//! so "absent" (exit 1) is normal; it must never look like a crash (an
//! exit by signal or above 125 makes recovery abort). Errors (a damaged
//! compressed file, a full disk) exit 3: recovery treats that like
//! "absent" and the server's log keeps the message.
//!
//! The file is streamed: decompressed as it is written, never held in
//! memory or written anywhere but `%p`; a fetch that fails part-way
//! removes what it wrote of `%p`, so nothing is left behind.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::wal::Fetched;
use crate::error::{Error, Result};

/// A validated wal-fetch request.
#[derive(Clone, Debug)]
pub struct WalFetchConfig {
    /// The file PostgreSQL asks for (`%f`).
    pub name: String,
    /// Where to write it (`%p`).
    pub path: PathBuf,
    /// The archive: a directory or an `s3://` URL.
    pub archive: PathBuf,
    /// How to reach object storage for an `s3://` archive.
    pub s3: crate::objstore::S3Config,
    /// A credential file handed over by `pgdrill restore`
    /// ([`crate::objstore::handoff`]): its endpoint, region and keys.
    pub s3_credentials: Option<PathBuf>,
}

/// What was fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalFetched {
    pub stored: String,
    pub bytes: u64,
}

/// Fetch one file; `Err(Error::WalNotArchived)` (exit 1) when absent.
pub fn run(cfg: &WalFetchConfig) -> Result<WalFetched> {
    let s3 = match &cfg.s3_credentials {
        Some(p) => {
            let mut c = crate::objstore::S3Config::from_handoff(crate::objstore::handoff::read(p)?);
            // Keys past their expiry: this user's own chain (a role).
            if c.keys.as_ref().is_some_and(|k| k.expired(chrono::Utc::now().timestamp())) {
                c.keys = None;
            }
            c.endpoint = cfg.s3.endpoint.clone().or(c.endpoint);
            c.region = cfg.s3.region.clone().or(c.region);
            c
        }
        None => cfg.s3.clone(),
    };
    let source = super::wal_archive(&cfg.archive, &s3)?;
    let read_failed = |path: PathBuf, e: io::Error| match super::fatal(e) {
        Ok(e) => Error::ReadInput { path, source: e },
        Err(e) => e,
    };
    let mut file = match source.fetch(&cfg.name) {
        Ok(Fetched::Found(f)) => f,
        Ok(Fetched::Absent(_)) => {
            return Err(Error::WalNotArchived { archive: cfg.archive.clone(), name: cfg.name.clone() })
        }
        Err(e) => return Err(read_failed(cfg.archive.join(&cfg.name), e)),
    };
    let written = write_all_or_nothing(&cfg.path, &mut file.reader).map_err(|(action, e)| match action {
        "read" => read_failed(cfg.archive.join(&file.stored), e),
        _ => Error::io(&cfg.path, action, e),
    })?;
    Ok(WalFetched { stored: file.stored, bytes: written })
}

/// Stream `r` into a new `path`; on any failure `path` is removed.
fn write_all_or_nothing(
    path: &std::path::Path,
    r: &mut dyn Read,
) -> std::result::Result<u64, (&'static str, io::Error)> {
    // PostgreSQL removes a stale file at %p before it calls us; whatever is
    // there is replaced, but a link is not followed.
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| ("create file", e))?;
    let result = (|| {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            if crate::signals::interrupted() {
                return Err(("read", io::Error::other("interrupted by signal")));
            }
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(("read", e)),
            };
            out.write_all(&buf[..n]).map_err(|e| ("write", e))?;
            total += n as u64;
        }
        out.sync_all().map_err(|e| ("fsync", e))?;
        Ok(total)
    })();
    if result.is_err() {
        drop(out);
        let _ = fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::compress::{CompressSpec, Compression, Encoder};

    #[test]
    fn fetches_decompressed_and_leaves_nothing_on_failure() {
        let arch = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..500_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut e =
            Encoder::new(CompressSpec { kind: Compression::Zstd, level: None, workers: 0 }, Vec::new()).unwrap();
        e.write_all(&data).unwrap();
        let packed = e.finish().unwrap();
        fs::write(arch.path().join("000000010000000000000002.zst"), &packed).unwrap();
        let dest = out.path().join("RECOVERYXLOG");
        let cfg = |name: &str| WalFetchConfig {
            name: name.into(),
            path: dest.clone(),
            archive: arch.path().into(),
            s3: Default::default(),
            s3_credentials: None,
        };
        let got = run(&cfg("000000010000000000000002")).unwrap();
        assert_eq!(got.stored, "000000010000000000000002.zst");
        assert_eq!(fs::read(&dest).unwrap(), data);

        let absent = run(&cfg("000000010000000000000003")).unwrap_err();
        assert_eq!(absent.exit_code(), 1);
        // (gate::monitor's tests check that the gate names the segment
        // from this message in the server's log.)
        assert!(absent.to_string().contains("000000010000000000000003"));

        // A damaged file: an error, and no half-written %p.
        fs::remove_file(&dest).unwrap();
        fs::write(arch.path().join("000000010000000000000004.zst"), &packed[..packed.len() / 2]).unwrap();
        let bad = run(&cfg("000000010000000000000004")).unwrap_err();
        assert_eq!(bad.exit_code(), 2);
        assert!(!dest.exists());
    }
}
