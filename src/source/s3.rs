//! Object storage as a source: [`S3Wal`] (a WAL archive under an
//! `s3://bucket/prefix`) and [`S3Backup`] (a plain backup written there by
//! `pgdrill backup --dest s3://...`).
//!
//! Both read through [`crate::objstore`]: ranged, parallel, streaming GETs
//! with bounded memory, retries with backoff. What the store answers is
//! told apart the way the checks need it:
//!
//! - an object that is not there is `Absent` (WAL) or missing from the
//!   listing (a backup's file), so it becomes a finding naming it;
//! - a store that cannot be reached after the client's retries, refused
//!   credentials, a missing bucket: the error travels inside the
//!   `io::Error` as a [`crate::error::Error`], and [`super::fatal`] takes it
//!   back out, so the command ends with that error (exit 2 or 3) instead of
//!   calling the backup damaged.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use super::backup::{ArchiveFiles, BackupFormat, BackupSource, EntryKind, EntryMeta, TarBackup, Visit};
use super::compress::{self, Compression};
use super::wal::{
    logical_name, plain_name, start_workers, stored_names, wait_prefetched, Ahead, DirWal, Fetched, Slot, StoredWal,
    WalFile, WalSource,
};
use crate::datadir::{BACKUP_MANIFEST, INCOMPLETE_MARKER};
use crate::error::{Error, Result};
use crate::objstore::{is_s3, ObjectInfo, S3Config, S3Url, Store};

/// How many WAL files an [`S3Wal`] fetches ahead, at most, in parallel.
pub const WAL_AHEAD: usize = 3;
/// How many of a backup's files are being fetched ahead of the one read,
/// at most... Most files of a backup are a page or a few: each costs a
/// round trip, so throughput on them is requests in flight over latency.
/// 128 measured 1.7× faster than 32 against s3s-fs (docs/performance.md);
/// s5cmd's default is 256 workers.
const FILES_AHEAD: usize = 128;
/// ...and how many bytes they may hold between them before they are read
/// (each holds at most two chunks of its own: see `objstore::read`).
const BYTES_AHEAD: u64 = 32 << 20;
/// The object listing a backup's directories (`backup::dest::DIRECTORIES`).
const DIRECTORIES: &str = "pgdrill_directories";

/// The backup `path` names when it is an `s3://` URL.
pub fn s3_backup(path: &Path, s3: &S3Config) -> Result<Option<S3Backup>> {
    let Some(text) = path.to_str().filter(|t| is_s3(t)) else { return Ok(None) };
    let url = S3Url::parse(text).map_err(|source| Error::BadS3Url { url: text.to_string(), source })?;
    S3Backup::open(&url, s3).map(Some)
}

/// A store error carried through `io`.
fn carried(e: Error) -> io::Error {
    io::Error::other(e)
}

/// The WAL archive `--wal-archive` names: a directory, or an `s3://` URL.
pub fn wal_archive(path: &Path, s3: &S3Config) -> Result<Box<dyn WalSource>> {
    match path.to_str().filter(|t| is_s3(t)) {
        Some(text) => {
            let url = S3Url::parse(text).map_err(|source| Error::BadS3Url { url: text.to_string(), source })?;
            Ok(Box::new(S3Wal::open(&url, s3)?))
        }
        None => Ok(Box::new(DirWal::archive(path))),
    }
}

/// A WAL archive in object storage: one object per file, under the
/// prefix, plain or compressed (the same spellings as [`DirWal`]).
///
/// Files are fetched ahead of the walk ([`WalSource::prefetch`]): up to
/// [`WAL_AHEAD`] found and their reads started in parallel, waiting unread;
/// each holds at most two chunks of its own, the rest of its fetch-ahead
/// comes from the store's shared, bounded pool.
pub struct S3Wal {
    store: Store,
    role: String,
    /// Known to hold nothing (a backup's `pg_wal/` with no object): no
    /// request is made.
    empty: bool,
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    ahead: usize,
    state: Mutex<Ahead<Option<WalFile>>>,
    changed: Condvar,
}

impl S3Wal {
    pub fn open(url: &S3Url, config: &S3Config) -> Result<S3Wal> {
        let store = Store::open(url, config)?;
        Ok(S3Wal::new(store, WAL_AHEAD))
    }

    pub fn new(store: Store, ahead: usize) -> S3Wal {
        let shared = Arc::new(Shared {
            store: store.clone(),
            ahead: ahead.max(1),
            state: Mutex::new(Ahead::default()),
            changed: Condvar::new(),
        });
        S3Wal { store, role: "the archive".into(), empty: false, shared }
    }

    /// How "not found" messages name it (`pg_wal` for a backup's own).
    pub fn with_role(mut self, role: &str) -> S3Wal {
        self.role = role.to_string();
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ahead<Option<WalFile>>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Find `name` in any stored spelling and start reading it.
    fn resolve(&self, name: &str) -> io::Result<Option<WalFile>> {
        for stored in stored_names(name) {
            let Some(info) = self.store.head(&stored).map_err(carried)? else { continue };
            let reader = self.store.reader(&info).map_err(carried)?;
            let (compression, reader) = compress::decoder(reader)?;
            let size = (compression == Compression::None).then_some(info.size);
            return Ok(Some(WalFile {
                stored: stored.clone(),
                shown: self.store.url_of(&stored),
                compression,
                size,
                reader,
            }));
        }
        Ok(None)
    }

    fn work(self: Arc<Self>) {
        loop {
            let name = {
                let mut st = self.lock();
                match (st.closed, st.queue.pop_front()) {
                    (false, Some(n)) => {
                        st.slots.insert(n.clone(), Slot::Running);
                        n
                    }
                    _ => {
                        st.workers -= 1;
                        return;
                    }
                }
            };
            let r = self.resolve(&name);
            let mut st = self.lock();
            if !st.closed {
                st.slots.insert(name, Slot::Done(r));
            }
            drop(st);
            self.changed.notify_all();
        }
    }

    /// A prefetched result (waiting for it if it is running), else a
    /// lookup now.
    fn result(&self, name: &str) -> io::Result<Option<WalFile>> {
        match wait_prefetched(&self.state, &self.changed, name, || carried(Error::Interrupted))? {
            Some(r) => r,
            None => self.resolve(name),
        }
    }
}

impl WalSource for S3Wal {
    fn describe(&self) -> String {
        self.store.url().to_string()
    }

    fn role(&self) -> &str {
        &self.role
    }

    fn fetch(&self, name: &str) -> io::Result<Fetched> {
        plain_name(name)?;
        if self.empty {
            return Ok(Fetched::Absent(None));
        }
        Ok(match self.shared.result(name)? {
            Some(f) => Fetched::Found(f),
            None => Fetched::Absent(None),
        })
    }

    fn can_list(&self) -> bool {
        true
    }

    fn list(&self) -> io::Result<Vec<StoredWal>> {
        let mut out: Vec<StoredWal> = self
            .store
            .list("")
            .map_err(carried)?
            .into_iter()
            .filter(|o| !o.name.contains('/'))
            .filter_map(|o| logical_name(&o.name).map(|name| StoredWal { name, stored: o.name, bytes: o.size }))
            .collect();
        out.sort_by(|a, b| a.stored.cmp(&b.stored));
        Ok(out)
    }

    fn remove(&self, file: &StoredWal) -> io::Result<()> {
        plain_name(&file.stored)?;
        // S3 deletes of absent keys succeed.
        self.store.delete(&file.stored).map_err(carried)
    }

    fn prefetch(&self, names: &[String]) {
        let sh = &self.shared;
        let mut st = sh.lock();
        if st.closed || self.empty {
            return;
        }
        // Found and started, or being looked up: at most `ahead` (each
        // started read holds up to two 4 MiB chunks of its own until it is
        // read, besides what it takes from the shared pool).
        st.queue_names(names, sh.ahead);
        if !st.queue.is_empty() {
            start_workers(&mut st.workers, sh.ahead, "pgdrill-s3-wal", sh, Shared::work);
        }
    }
}

impl Drop for S3Wal {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        st.queue.clear();
        // Started reads are aborted as their readers drop.
        st.slots.clear();
        drop(st);
        self.shared.changed.notify_all();
    }
}

/// A plain backup in object storage, as `pgdrill backup --dest s3://...`
/// writes it: one object per file under the prefix, `backup_manifest`,
/// and [`DIRECTORIES`] listing the directories (object storage keeps none).
///
/// Streaming lists the prefix once, then reads the files in name order,
/// each as a parallel ranged stream, with the next [`FILES_AHEAD`] files'
/// reads already started (small files are one round trip each; this keeps
/// several in flight). Memory stays bounded by the store's shared pool.
pub struct S3Backup {
    store: Store,
    objects: Vec<ObjectInfo>,
    dirs: Vec<(String, u32)>,
    /// A tar-format backup (`base.tar*` under the prefix), read through
    /// the same code as a local one.
    tar: Option<TarBackup>,
}

/// A tar backup's archives and manifest, as objects under the prefix.
struct S3Archives {
    store: Store,
    objects: Vec<ObjectInfo>,
}

impl std::fmt::Debug for S3Archives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.store.url())
    }
}

impl ArchiveFiles for S3Archives {
    fn open(&self, name: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some(info) = self.objects.iter().find(|o| o.name == name) else { return Ok(None) };
        let reader = self.store.reader(info).map_err(carried)?;
        Ok(Some((Box::new(reader), info.size)))
    }

    fn shown(&self, name: &str) -> String {
        self.store.url_of(name)
    }
}

/// Whether `name` is a plain relative path: no empty, `.` or `..`
/// segment, no control character.
fn plain_path(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(char::is_control)
        && name.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

impl S3Backup {
    /// List the prefix. A prefix holding nothing is no backup (exit 2); one
    /// still marked incomplete is refused as a local one is (exit 2).
    pub fn open(url: &S3Url, config: &S3Config) -> Result<S3Backup> {
        let store = Store::open(url, config)?;
        let objects = store.list("")?;
        if objects.is_empty() {
            return Err(Error::usage(
                format!("{url}: no backup there (nothing under the prefix)"),
                Some("check the bucket and prefix (`aws s3 ls` with the same endpoint lists them)".into()),
            ));
        }
        if objects.iter().any(|o| o.name == INCOMPLETE_MARKER) {
            return Err(Error::IncompleteBackup { path: url.to_string().into() });
        }
        let mut dirs = Vec::new();
        if let Some(text) = store.read_small(DIRECTORIES, 16 << 20)? {
            for line in String::from_utf8_lossy(&text).lines() {
                let Some((mode, path)) = line.split_once(' ') else { continue };
                let Ok(mode) = u32::from_str_radix(mode, 8) else { continue };
                dirs.push((path.to_string(), mode & 0o7777));
            }
        }
        // The archives sit beside the manifest: top-level objects only.
        let top: Vec<ObjectInfo> = objects.iter().filter(|o| !o.name.contains('/')).cloned().collect();
        let names = top.iter().map(|o| o.name.clone()).collect();
        let archives = Arc::new(S3Archives { store: store.clone(), objects: top });
        let tar = TarBackup::from_names(archives, names).map_err(|e| match super::fatal(e) {
            Ok(e) => super::read_error(url.to_string(), e),
            Err(e) => e,
        })?;
        Ok(S3Backup { store, objects, dirs, tar })
    }

    /// The backup as a tar-format one, when it is.
    pub fn tar(&self) -> Option<&TarBackup> {
        self.tar.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tablespaces: the OIDs of `pg_tblspc/<oid>` directories and of
    /// `pg_tblspc/<oid>/...` objects.
    pub fn tablespace_oids(&self) -> Vec<u32> {
        if let Some(t) = &self.tar {
            return t.tablespace_oids();
        }
        let oid = |name: &str| -> Option<u32> {
            let rest = name.strip_prefix("pg_tblspc/")?;
            rest.split('/').next()?.parse().ok().filter(|o| *o > 0)
        };
        let mut oids: Vec<u32> =
            self.files().filter_map(|o| oid(&o.name)).chain(self.dirs.iter().filter_map(|(d, _)| oid(d))).collect();
        oids.sort_unstable();
        oids.dedup();
        oids
    }

    /// The backup's files: every object but the manifest and pgdrill's own.
    fn files(&self) -> impl Iterator<Item = &ObjectInfo> {
        self.objects.iter().filter(|o| ![BACKUP_MANIFEST, DIRECTORIES, INCOMPLETE_MARKER].contains(&o.name.as_str()))
    }

    /// The small files that say what the backup is, read by name (not a
    /// pass over every file), with its manifest.
    pub fn capture(&self) -> io::Result<crate::datadir::Captured> {
        if let Some(t) = &self.tar {
            // One pass over the archives: pg_control comes last in them.
            return super::capture(t, Path::new(&self.describe()));
        }
        let mut c = crate::datadir::Captured { root: self.describe().into(), ..Default::default() };
        for (d, _) in &self.dirs {
            if crate::datadir::Captured::wants(d).is_some() {
                c.seen.insert(d.clone());
            }
        }
        for o in self.files().filter(|o| plain_path(&o.name)) {
            let Some(limit) = crate::datadir::Captured::wants(&o.name) else { continue };
            let mut kept = Vec::new();
            self.store.reader(o).map_err(carried)?.take(limit).read_to_end(&mut kept)?;
            c.files.insert(o.name.clone(), (kept, o.size));
            c.seen.insert(o.name.clone());
        }
        if let Some((mut r, size)) = self.open_manifest()? {
            let mut b = Vec::new();
            r.read_to_end(&mut b)?;
            c.files.insert(BACKUP_MANIFEST.to_string(), (b, size));
        }
        Ok(c)
    }
}

impl BackupSource for S3Backup {
    fn describe(&self) -> String {
        self.store.url().to_string()
    }

    fn format(&self) -> BackupFormat {
        self.tar.as_ref().map_or(BackupFormat::Plain, |t| t.format())
    }

    fn compression(&self) -> Compression {
        self.tar.as_ref().map_or(Compression::None, |t| t.compression())
    }

    fn open_manifest(&self) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let Some(info) = self.objects.iter().find(|o| o.name == BACKUP_MANIFEST) else { return Ok(None) };
        let r = self.store.reader(info).map_err(carried)?;
        Ok(Some((Box::new(r), info.size)))
    }

    fn stream(&self, visit: &mut dyn FnMut(Visit<'_>) -> io::Result<bool>) -> io::Result<()> {
        if let Some(t) = &self.tar {
            return t.stream(visit);
        }
        for (d, mode) in &self.dirs {
            if !plain_path(d) {
                if !visit(Visit::Refused { path: d.clone(), why: "not a plain relative path".into() })? {
                    return Ok(());
                }
                continue;
            }
            let meta = EntryMeta { path: d.clone().into_bytes(), kind: EntryKind::Dir, size: 0, mode: *mode, mtime: 0 };
            if !visit(Visit::Entry(&meta, &mut io::empty()))? {
                return Ok(());
            }
        }
        let files: Vec<&ObjectInfo> = self.files().collect();
        let mut ahead: VecDeque<(usize, Result<crate::objstore::ObjectReader>)> = VecDeque::new();
        let held = |o: &ObjectInfo| o.size.min(2 * crate::objstore::CHUNK as u64);
        let mut next = 0;
        let mut holding = 0u64;
        for (i, o) in files.iter().enumerate() {
            if crate::signals::interrupted() {
                return Err(carried(Error::Interrupted));
            }
            // Small files are one round trip each: keep many in flight,
            // within a byte budget (the one to read next always starts).
            while next < files.len()
                && next <= i + FILES_AHEAD
                && (next == i || holding + held(files[next]) <= BYTES_AHEAD)
            {
                if plain_path(&files[next].name) {
                    holding += held(files[next]);
                    ahead.push_back((next, self.store.reader(files[next])));
                }
                next += 1;
            }
            if !plain_path(&o.name) {
                if !visit(Visit::Refused { path: o.name.clone(), why: "not a plain relative path".into() })? {
                    return Ok(());
                }
                continue;
            }
            let Some((at, reader)) = ahead.pop_front() else { break };
            debug_assert_eq!(at, i);
            holding -= held(o);
            let mut reader = reader.map_err(carried)?;
            let meta = EntryMeta {
                path: o.name.clone().into_bytes(),
                kind: EntryKind::File,
                size: o.size,
                mode: 0o600,
                mtime: o.modified.timestamp(),
            };
            if !visit(Visit::Entry(&meta, &mut reader))? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn wal(&self) -> Option<Box<dyn WalSource>> {
        if let Some(t) = &self.tar {
            return t.wal();
        }
        let store = self.store.at("pg_wal").ok()?;
        let mut wal = S3Wal::new(store, WAL_AHEAD).with_role("pg_wal");
        // The listing says whether there is anything to ask for.
        wal.empty = !self.objects.iter().any(|o| o.name.starts_with("pg_wal/"));
        Some(Box::new(wal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_must_be_plain_relative_paths() {
        for ok in ["base/1/1259", "global/pg_control", "PG_VERSION", "pg_tblspc/16384/PG_15_202209061/5/16385"] {
            assert!(plain_path(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "base//1", "base/../../etc", "./x", "x/", "a\nb", "..", "base/1/\u{7f}"] {
            assert!(!plain_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn wal_names_are_plain() {
        assert!(plain_name("000000010000000000000003").is_ok());
        assert!(plain_name("00000002.history").is_ok());
        for bad in ["", ".", "..", "a/b", "x\0"] {
            assert!(plain_name(bad).is_err(), "{bad:?}");
        }
    }
}
