//! `backup --format tar`: the backup as pg_basebackup's tar format writes
//! it (`-Ft`): `base.tar` for the data directory, `<oid>.tar` for each
//! tablespace, compressed as asked (`.gz`, `.lz4`, `.zst`), and
//! `backup_manifest` beside them, uncompressed, its checksums over the
//! files' uncompressed contents (as PostgreSQL's manifests are).
//!
//! Reading stays [`super::walk`]'s: every file is opened through the
//! plan's no-follow handles. A file of a live standby can grow, shrink or
//! vanish while it is read; a tar header carries the size before the data,
//! so, as `sendFile()` in `src/backend/backup/basebackup.c` does, the size
//! at open is written, a file that grew is cut there and one that shrank is
//! padded with zeros (replay rewrites both; the manifest's checksum is
//! over exactly the bytes written). `global/pg_control` is written last,
//! then `backup_label`, `tablespace_map` and `end_location`, so base.tar's
//! order is also the procedure's.
//!
//! One thread reads and writes; Zstandard compresses on `--jobs` worker
//! threads. The archives go to a local staging directory, or straight into
//! object storage as multipart uploads (each appears whole when finished;
//! `dest` writes the manifest after them).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::copy::{Copied, Throttle};
use crate::error::{Error, Result};
use crate::objstore::{ObjectWriter, Store};
use crate::observe::Progress;
use crate::server::OsUser;
use crate::source::compress::{CompressSpec, Encoder};

use super::walk::Plan;

/// The archive file name for `stem` (`base`, an OID) in `spec`'s compression.
pub fn archive_name(stem: &str, spec: CompressSpec) -> String {
    format!("{stem}.tar{}", spec.kind.suffix())
}

/// Where the archives go.
#[derive(Clone, Copy)]
pub enum ArchiveDir<'a> {
    /// A local staging directory.
    Local(&'a Path),
    /// An object-storage prefix.
    S3(&'a Store),
}

/// An archive's bytes on their way out.
enum Sink {
    File(BufWriter<File>),
    Object(Box<ObjectWriter>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Object(o) => o.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Object(o) => o.flush(),
        }
    }
}

/// One archive being written.
struct Archive {
    /// Where it goes, for messages (a path or a URL).
    path: PathBuf,
    builder: tar::Builder<Encoder<Sink>>,
}

impl Archive {
    /// Start the archive `name` in `dir`. `size_hint` bounds what it will
    /// hold, so that a multipart upload picks parts large enough.
    fn create(
        dir: ArchiveDir,
        name: &str,
        spec: CompressSpec,
        owner: Option<&OsUser>,
        size_hint: u64,
    ) -> Result<Archive> {
        let (path, sink) = match dir {
            ArchiveDir::Local(staging) => {
                let path = staging.join(name);
                (path.clone(), Sink::File(BufWriter::with_capacity(1 << 20, Self::create_file(&path, owner)?)))
            }
            ArchiveDir::S3(store) => {
                let w = store.writer(name, Some(size_hint))?;
                (PathBuf::from(w.url()), Sink::Object(Box::new(w)))
            }
        };
        let enc = Encoder::new(spec, sink).map_err(|e| Error::io(&path, "compress", e))?;
        let mut builder = tar::Builder::new(enc);
        builder.mode(tar::HeaderMode::Complete);
        Ok(Archive { path, builder })
    }

    fn create_file(path: &Path, owner: Option<&OsUser>) -> Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(path, "create file", e))?;
        if let Some(u) = owner {
            u.chown(path)?;
        }
        Ok(f)
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: i64, owner: (u32, u32)) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(mtime.max(0) as u64);
        h.set_uid(u64::from(owner.0));
        h.set_gid(u64::from(owner.1));
        h
    }

    fn dir(&mut self, rel: &Path, mode: u32, owner: (u32, u32)) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0, mode, now(), owner);
        let mut name = rel.as_os_str().to_os_string();
        name.push("/");
        self.builder.append_data(&mut h, Path::new(&name), io::empty()).map_err(|e| Error::io(&self.path, "write", e))
    }

    fn file(&mut self, rel: &Path, size: u64, mode: u32, mtime: i64, owner: (u32, u32), data: impl Read) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, size, mode, mtime, owner);
        self.builder.append_data(&mut h, rel, data).map_err(|e| Error::io(&self.path, "write", e))
    }

    /// The end-of-archive blocks, the compressed stream's end, and a sync
    /// (or the completed upload). Returns the archive's size.
    fn finish(self, sync: bool) -> Result<u64> {
        let path = self.path;
        let enc = self.builder.into_inner().map_err(|e| Error::io(&path, "write", e))?;
        match enc.finish().map_err(|e| Error::io(&path, "compress", e))? {
            Sink::File(buf) => {
                let f = buf.into_inner().map_err(|e| Error::io(&path, "write", e.into_error()))?;
                if sync {
                    f.sync_all().map_err(|e| Error::io(&path, "fsync", e))?;
                }
                f.metadata().map(|m| m.len()).map_err(|e| Error::io(&path, "stat", e))
            }
            Sink::Object(w) => w.finish(),
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A file's bytes as the archive gets them: exactly `size` of them (cut, or
/// padded with zeros), with their CRC-32C, throttled and counted.
struct Exactly<'a, R: Read> {
    inner: R,
    left: u64,
    eof: bool,
    crc: u32,
    read: u64,
    throttle: Option<&'a Throttle>,
    progress: &'a Progress,
}

impl<R: Read> Read for Exactly<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if crate::signals::interrupted() {
            return Err(io::Error::other("interrupted by signal"));
        }
        let want = buf.len().min(self.left as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = if self.eof {
            buf[..want].fill(0);
            want
        } else {
            match self.inner.read(&mut buf[..want]) {
                Ok(0) => {
                    // The file shrank since it was opened: zeros, as
                    // PostgreSQL pads it.
                    self.eof = true;
                    buf[..want].fill(0);
                    want
                }
                Ok(n) => n,
                Err(e) => return Err(e),
            }
        };
        self.left -= n as u64;
        self.read += n as u64;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        if let Some(t) = self.throttle {
            t.take(n as u64);
        }
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// What writing needs besides the plan.
pub struct TarOptions<'a> {
    pub spec: CompressSpec,
    pub throttle: Option<&'a Throttle>,
    pub progress: &'a Progress,
    pub owner: Option<&'a OsUser>,
    pub sync: bool,
}

/// The archives of a backup being written: base.tar stays open until the
/// end (pg_control and the label files go last).
pub struct TarBackupWriter {
    base: Archive,
    owner_ids: (u32, u32),
    sync: bool,
    /// The finished archives' bytes.
    stored: u64,
}

impl TarBackupWriter {
    /// Write every file of the plan but `skip` (pg_control): the data
    /// directory into base.tar, each tablespace into `<oid>.tar` (finished
    /// at once). Returns the writer (base.tar still open) and what was
    /// written of each file, in the order of `plan.files` without `skip`,
    /// as [`crate::copy::copy_files`] returns it.
    pub fn write_data(
        plan: &Plan,
        dir: ArchiveDir,
        skip: &Path,
        o: &TarOptions,
    ) -> Result<(TarBackupWriter, Vec<Copied>)> {
        let owner_ids = match o.owner {
            Some(u) => (u.uid, u.gid),
            None => (nix::unistd::Uid::effective().as_raw(), nix::unistd::Gid::effective().as_raw()),
        };
        // At most the files, their headers and the label files.
        let hint = plan.total_bytes() + 1024 * (plan.files.len() + plan.dirs.len()) as u64 + (1 << 20);
        let mut base = Archive::create(dir, &archive_name("base", o.spec), o.spec, o.owner, hint)?;
        let mut stored = 0;
        let tablespace_of = |rel: &Path| -> Option<u32> {
            let mut c = rel.components();
            (c.next()?.as_os_str() == "pg_tblspc").then_some(())?;
            c.next()?.as_os_str().to_str()?.parse().ok()
        };
        let in_tablespace = |rel: &Path, oid: u32| -> PathBuf {
            rel.strip_prefix(Path::new("pg_tblspc").join(oid.to_string())).unwrap_or(rel).to_path_buf()
        };
        let mut copied: Vec<Option<Copied>> = Vec::new();
        let order: Vec<usize> = (0..plan.files.len()).filter(|i| plan.files[*i].1 != skip).collect();
        copied.resize(order.len(), None);
        // The data directory.
        for (d, mode) in &plan.dirs {
            if tablespace_of(d).is_none() {
                base.dir(d, (mode & 0o750) | 0o700, owner_ids)?;
            }
        }
        for (k, &i) in order.iter().enumerate() {
            let (src, rel, _) = &plan.files[i];
            if tablespace_of(rel).is_none() {
                copied[k] = Some(write_file(&mut base, plan, src, rel, owner_ids, o)?);
            }
        }
        // Each tablespace, in an archive of its own, paths relative to it.
        for (oid, _) in &plan.tablespaces {
            let mut ts = Archive::create(dir, &archive_name(&oid.to_string(), o.spec), o.spec, o.owner, hint)?;
            for (d, mode) in &plan.dirs {
                if tablespace_of(d) == Some(*oid) {
                    let inner = in_tablespace(d, *oid);
                    if !inner.as_os_str().is_empty() {
                        ts.dir(&inner, (mode & 0o750) | 0o700, owner_ids)?;
                    }
                }
            }
            for (k, &i) in order.iter().enumerate() {
                let (src, rel, _) = &plan.files[i];
                if tablespace_of(rel) == Some(*oid) {
                    copied[k] = Some(write_file(&mut ts, plan, src, &in_tablespace(rel, *oid), owner_ids, o)?);
                }
            }
            stored += ts.finish(o.sync)?;
        }
        let copied = copied.into_iter().map(Option::unwrap_or_default).collect();
        Ok((TarBackupWriter { base, owner_ids, sync: o.sync, stored }, copied))
    }

    /// Add an empty directory to base.tar.
    pub fn dir(&mut self, rel: &str) -> Result<()> {
        self.base.dir(Path::new(rel), 0o700, self.owner_ids)
    }

    /// Add a file the backup made itself (pg_control, the label files) to
    /// base.tar.
    pub fn append(&mut self, rel: &str, bytes: &[u8], mtime: i64) -> Result<()> {
        self.base.file(Path::new(rel), bytes.len() as u64, 0o600, mtime, self.owner_ids, bytes)
    }

    /// Close base.tar. Returns the bytes of all the archives.
    pub fn finish(self) -> Result<u64> {
        Ok(self.stored + self.base.finish(self.sync)?)
    }
}

/// One file into an archive, read through the plan's no-follow handles.
fn write_file(
    a: &mut Archive,
    plan: &Plan,
    src: &Path,
    rel_in_archive: &Path,
    owner: (u32, u32),
    o: &TarOptions,
) -> Result<Copied> {
    let Some(f) = plan.sources.open(src, true)? else {
        // Vanished since it was listed (a dropped table): not in the backup.
        return Ok(Copied { vanished: true, ..Copied::default() });
    };
    let meta = f.metadata().map_err(|e| Error::ReadInput { path: src.to_path_buf(), source: e })?;
    let size = meta.len();
    let mut data =
        Exactly { inner: f, left: size, eof: false, crc: 0, read: 0, throttle: o.throttle, progress: o.progress };
    a.file(rel_in_archive, size, meta.mode() & 0o7777, meta.mtime(), owner, &mut data).map_err(|e| match e {
        Error::Io { source, .. } if crate::signals::interrupted() => {
            let _ = source;
            Error::Interrupted
        }
        other => other,
    })?;
    Ok(Copied { size, crc32c: data.crc, digest: None, mtime: meta.mtime(), vanished: false })
}
