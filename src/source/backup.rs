//! Where a backup's files come from: [`BackupSource`], for a plain
//! directory ([`DirBackup`]) and a tar-format backup ([`TarBackup`]).
//!
//! A tar-format backup is what `pg_basebackup -Ft` writes
//! (`src/bin/pg_basebackup/pg_basebackup.c`, `bbstreamer_tar.c`) and what
//! `pgdrill backup --format tar` writes: in one directory,
//!
//! - `base.tar` (or `base.tar.gz`, `.lz4`, `.zst`): the data directory.
//!   PostgreSQL sends `backup_label` (and `tablespace_map`) first and
//!   `global/pg_control` last (`perform_base_backup()`,
//!   `src/backend/backup/basebackup.c`); `pg_tblspc` is empty, the map
//!   says where each tablespace goes;
//! - `<oid>.tar[...]`: tablespace `<oid>`'s directory, whose files the
//!   manifest names `pg_tblspc/<oid>/...`;
//! - `pg_wal.tar[...]` with `-X stream`: the WAL (with `-X fetch` it is in
//!   `base.tar`'s `pg_wal/`);
//! - `backup_manifest`, beside the archives, uncompressed.
//!
//! Each archive's compression is recognised by its first bytes, whatever
//! its name says, and read as a stream: a source never extracts anything
//! to disk and holds one archive member's buffer at a time. The archives
//! are opened through [`ArchiveFiles`], so the same reading serves a local
//! directory and a prefix in object storage (`source::s3`).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use super::compress::{self, Compression};
use super::tar::{self as t, MemberKind, Step};
use super::wal::{logical_name, Fetched, StoredWal, WalFile, WalSource};
use crate::safefs::{Dir, Kind};

/// How a backup is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupFormat {
    /// A directory holding the data directory's files.
    Plain,
    /// `base.tar` and friends.
    Tar,
}

/// What an entry is. Sources never hand out devices, FIFOs or sockets:
/// those are refused ([`Visit::Refused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link, not followed, with its target as stored. Only
    /// `pg_tblspc/<oid>` may be one in a backup; the caller judges.
    Symlink(Vec<u8>),
}

/// One entry of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// Relative to the data directory, `/`-separated, as the manifest names
    /// it: a tablespace's files as `pg_tblspc/<oid>/...`. Never empty,
    /// absolute or holding `..`.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Bytes of a file's contents (decompressed); 0 for others.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
}

impl EntryMeta {
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// What [`BackupSource::stream`] hands to its visitor.
pub enum Visit<'a> {
    /// An entry and, for a file, its contents (read them or not: the source
    /// skips what is left).
    Entry(&'a EntryMeta, &'a mut dyn Read),
    /// Something no backup may hold, with why: a link outside
    /// `pg_tblspc/<oid>`, a device, FIFO or socket, a hard link, `..` or an
    /// absolute path. Never unpacked or followed.
    Refused { path: String, why: String },
}

/// Where a backup's files come from.
///
/// Contract for implementations (a local directory, a tar backup, object
/// storage):
///
/// - [`BackupSource::stream`] visits every entry exactly once (files,
///   directories, and links as links), tablespaces under
///   `pg_tblspc/<oid>/`, in the source's own order (a tar's member order:
///   a consumer must not assume `global/pg_control` comes first; in
///   PostgreSQL's tar backups it comes last). A file's reader yields
///   exactly `size` bytes, decompressed; a read error is the file's
///   problem and the visitor decides what to do with it. The visitor
///   returning `Ok(false)` stops the stream early, `Err` aborts it.
/// - Entries a backup may not hold are reported as [`Visit::Refused`] and
///   never followed or unpacked.
/// - The backup's `backup_manifest` is read with
///   [`BackupSource::open_manifest`] before streaming, so the stream can be
///   checked against it in one pass.
/// - `Err` from `stream` is for a source that cannot be read at all (or
///   an archive that is not a valid tar past some point); it comes after
///   the entries visited so far.
/// - Long operations poll [`crate::signals::interrupted`] and stop within
///   about a second with any `Err`; callers check the flag.
pub trait BackupSource: Send + Sync {
    /// The source as messages name it (its path or URL).
    fn describe(&self) -> String;

    fn format(&self) -> BackupFormat;

    /// The compression of the backup's archives (`None` for plain).
    fn compression(&self) -> Compression {
        Compression::None
    }

    /// A plain directory on the local file system, when the backup is one:
    /// callers with a faster path for it (parallel reads) take it.
    fn local_dir(&self) -> Option<&Path> {
        None
    }

    /// The backup's `backup_manifest` and its size, if it has one.
    fn open_manifest(&self) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;

    /// Visit every entry once; see the trait's contract.
    fn stream(&self, visit: &mut dyn FnMut(Visit<'_>) -> io::Result<bool>) -> io::Result<()>;

    /// The WAL the backup carries (a tar backup's `pg_wal.tar`, or the
    /// `pg_wal/` inside its `base.tar`; a plain backup's `pg_wal`), as a
    /// WAL source.
    fn wal(&self) -> Option<Box<dyn WalSource>>;
}

/// A plain-format backup (or data directory) on the local file system.
/// Streaming walks it through [`safefs`] handles: links are reported as
/// links, never followed.
#[derive(Clone, Debug)]
pub struct DirBackup {
    root: PathBuf,
}

impl DirBackup {
    pub fn new(root: &Path) -> DirBackup {
        DirBackup { root: root.to_path_buf() }
    }

    fn walk(&self, dir: &Dir, rel: &[u8], visit: &mut dyn FnMut(Visit<'_>) -> io::Result<bool>) -> io::Result<bool> {
        use std::os::unix::ffi::OsStrExt;
        for (name, kind) in dir.entries()? {
            if crate::signals::interrupted() {
                return Err(io::Error::other("interrupted by signal"));
            }
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
            let p = Path::new(&name);
            let go_on = match kind {
                Kind::File => {
                    let mut f = dir.open_file(p)?;
                    let m = f.metadata()?;
                    use std::os::unix::fs::MetadataExt;
                    let meta = EntryMeta {
                        path,
                        kind: EntryKind::File,
                        size: m.len(),
                        mode: m.mode() & 0o7777,
                        mtime: m.mtime(),
                    };
                    visit(Visit::Entry(&meta, &mut f))?
                }
                Kind::Dir => {
                    let sub = dir.dir(p)?;
                    let m = sub.self_meta()?;
                    let meta =
                        EntryMeta { path: path.clone(), kind: EntryKind::Dir, size: 0, mode: m.mode, mtime: m.mtime };
                    visit(Visit::Entry(&meta, &mut io::empty()))? && self.walk(&sub, &path, visit)?
                }
                Kind::Symlink => {
                    let to = dir.read_link(p)?;
                    let meta = EntryMeta {
                        path,
                        kind: EntryKind::Symlink(to.as_os_str().as_bytes().to_vec()),
                        size: 0,
                        mode: 0o777,
                        mtime: 0,
                    };
                    visit(Visit::Entry(&meta, &mut io::empty()))?
                }
                Kind::Special => visit(Visit::Refused {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    why: "a FIFO, socket or device".into(),
                })?,
            };
            if !go_on {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl BackupSource for DirBackup {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn format(&self) -> BackupFormat {
        BackupFormat::Plain
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn open_manifest(&self) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let dir = Dir::open(&self.root)?;
        opened_with_size(dir.open_file(Path::new(crate::datadir::BACKUP_MANIFEST)))
    }

    fn stream(&self, visit: &mut dyn FnMut(Visit<'_>) -> io::Result<bool>) -> io::Result<()> {
        let dir = Dir::open(&self.root)?;
        self.walk(&dir, b"", visit).map(|_| ())
    }

    fn wal(&self) -> Option<Box<dyn WalSource>> {
        Some(Box::new(super::wal::DirWal::pg_wal(&self.root)))
    }
}

/// Where a tar backup's archives and manifest are kept: a directory, or
/// object storage.
pub trait ArchiveFiles: Send + Sync + std::fmt::Debug {
    /// The file `name` and its size; `None` when there is no such file.
    fn open(&self, name: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;
    /// How messages name the file `name`.
    fn shown(&self, name: &str) -> String;
}

/// The archives in a local directory.
#[derive(Debug)]
struct LocalArchives(PathBuf);

impl ArchiveFiles for LocalArchives {
    fn open(&self, name: &str) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        opened_with_size(File::open(self.0.join(name)))
    }
    fn shown(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

/// Open `name`, which the listing said is there.
fn open_listed(files: &dyn ArchiveFiles, name: &str) -> io::Result<Box<dyn Read + Send>> {
    match files.open(name)? {
        Some((r, _)) => Ok(r),
        None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is gone", files.shown(name)))),
    }
}

/// One archive of a tar backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarFile {
    /// Its name beside the manifest (`base.tar.zst`).
    pub name: String,
    /// How its members' paths are prefixed in the backup: none for
    /// base.tar, `pg_tblspc/<oid>/` for a tablespace, `pg_wal/` for
    /// pg_wal.tar.
    pub prefix: String,
}

/// A tar-format backup: a directory (or prefix in object storage) with
/// `base.tar[.gz|.lz4|.zst]`.
#[derive(Clone, Debug)]
pub struct TarBackup {
    files: Arc<dyn ArchiveFiles>,
    base: TarFile,
    tablespaces: Vec<(u32, TarFile)>,
    wal: Option<TarFile>,
    compression: Compression,
}

/// The archive named `stem.tar` in any compression suffix, in `names`.
fn find_tar<'a>(names: &'a [String], stem: &str) -> Option<&'a String> {
    Compression::ALL.iter().find_map(|c| {
        let want = format!("{stem}.tar{}", c.suffix());
        names.iter().find(|n| **n == want)
    })
}

/// The compression of a file, by its first bytes.
fn file_compression(files: &dyn ArchiveFiles, name: &str) -> io::Result<Compression> {
    let mut head = [0u8; 4];
    let mut f = open_listed(files, name)?;
    let mut n = 0;
    while n < 4 {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(Compression::detect(&head[..n]))
}

impl TarBackup {
    /// The tar backup in `dir`, or `None` when it holds no `base.tar*`.
    pub fn detect(dir: &Path) -> io::Result<Option<TarBackup>> {
        let Ok(rd) = fs::read_dir(dir) else { return Ok(None) };
        let names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        TarBackup::from_names(Arc::new(LocalArchives(dir.to_path_buf())), names)
    }

    /// The tar backup among `names` (the files beside the manifest), or
    /// `None` when there is no `base.tar*`.
    pub fn from_names(files: Arc<dyn ArchiveFiles>, mut names: Vec<String>) -> io::Result<Option<TarBackup>> {
        names.sort();
        let Some(base) = find_tar(&names, "base") else { return Ok(None) };
        let base = TarFile { name: base.clone(), prefix: String::new() };
        let compression = file_compression(files.as_ref(), &base.name)?;
        let mut tablespaces = Vec::new();
        for n in &names {
            let stem = n.split(".tar").next().unwrap_or("");
            if let Ok(oid) = stem.parse::<u32>() {
                if find_tar(&names, stem) == Some(n) && oid > 0 {
                    tablespaces.push((oid, TarFile { name: n.clone(), prefix: format!("pg_tblspc/{oid}/") }));
                }
            }
        }
        let wal = find_tar(&names, "pg_wal").map(|n| TarFile { name: n.clone(), prefix: "pg_wal/".into() });
        Ok(Some(TarBackup { files, base, tablespaces, wal, compression }))
    }

    /// The archives holding the data directory, base.tar first.
    pub fn archives(&self) -> Vec<&TarFile> {
        std::iter::once(&self.base).chain(self.tablespaces.iter().map(|(_, t)| t)).collect()
    }

    pub fn tablespace_oids(&self) -> Vec<u32> {
        self.tablespaces.iter().map(|(o, _)| *o).collect()
    }

    /// Visit the members of `pg_wal.tar` (paths prefixed `pg_wal/`), if the
    /// backup has one.
    pub fn stream_wal(&self, visit: &mut dyn FnMut(Visit<'_>) -> io::Result<bool>) -> io::Result<()> {
        match &self.wal {
            Some(w) => self.stream_one(w, visit).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Visit the members of one archive, prefixed.
    fn stream_one(&self, tar: &TarFile, visit: &mut dyn FnMut(Visit<'_>) -> io::Result<bool>) -> io::Result<bool> {
        let (compression, reader) = compress::decoder(open_listed(self.files.as_ref(), &tar.name)?)?;
        // Decompression on a thread of its own, the checks on this one.
        let reader: Box<dyn Read + Send> =
            if compression == Compression::None { reader } else { Box::new(decompress_ahead(reader)?) };
        let mut go_on = true;
        t::for_each(reader, |step| {
            go_on = match step {
                Step::Refused(r) => visit(Visit::Refused { path: format!("{}{}", tar.prefix, r.path), why: r.why })?,
                Step::Member(m, mut e) => {
                    if m.path.is_empty() {
                        return Ok(true); // "./": the archive's root
                    }
                    let mut path = tar.prefix.as_bytes().to_vec();
                    path.extend_from_slice(&m.path);
                    let kind = match m.kind {
                        MemberKind::File => EntryKind::File,
                        MemberKind::Dir => EntryKind::Dir,
                        MemberKind::Symlink(to) => EntryKind::Symlink(to),
                    };
                    let meta = EntryMeta { path, kind, size: m.size, mode: m.mode & 0o7777, mtime: m.mtime };
                    visit(Visit::Entry(&meta, &mut e))?
                }
            };
            Ok(go_on)
        })?;
        Ok(go_on)
    }
}

impl BackupSource for TarBackup {
    fn describe(&self) -> String {
        self.files.shown(&self.base.name)
    }

    fn format(&self) -> BackupFormat {
        BackupFormat::Tar
    }

    fn compression(&self) -> Compression {
        self.compression
    }

    fn open_manifest(&self) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        self.files.open(crate::datadir::BACKUP_MANIFEST)
    }

    fn stream(&self, visit: &mut dyn FnMut(Visit<'_>) -> io::Result<bool>) -> io::Result<()> {
        if !self.stream_one(&self.base, visit)? {
            return Ok(());
        }
        for (oid, tar) in &self.tablespaces {
            // The tablespace's directory itself: pg_tblspc/<oid>.
            let meta = EntryMeta {
                path: format!("pg_tblspc/{oid}").into_bytes(),
                kind: EntryKind::Dir,
                size: 0,
                mode: 0o700,
                mtime: 0,
            };
            if !visit(Visit::Entry(&meta, &mut io::empty()))? || !self.stream_one(tar, visit)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn wal(&self) -> Option<Box<dyn WalSource>> {
        // -X stream: pg_wal.tar; -X fetch (or none): base.tar's pg_wal/.
        let (file, prefix) = match &self.wal {
            Some(w) => (w.name.clone(), String::new()),
            None => (self.base.name.clone(), "pg_wal/".to_string()),
        };
        Some(Box::new(TarWal { files: Arc::clone(&self.files), file, prefix }))
    }
}

/// The WAL inside a tar archive. Each fetch reads the archive from its
/// start to the member (a compressed archive cannot seek); a backup's own
/// WAL is a handful of segments, and the member is streamed to the reader
/// through a bounded channel, never held whole.
#[derive(Clone, Debug)]
pub struct TarWal {
    files: Arc<dyn ArchiveFiles>,
    /// The archive's name.
    file: String,
    /// The members' directory in the archive (`pg_wal/` in base.tar).
    prefix: String,
}

/// Chunks in flight from the scanning thread to the reader.
const PIPE_CHUNKS: usize = 4;

/// A reader fed by another thread's chunks.
struct PipeReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.buf = b;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Read `r` on another thread, `PIPE_CHUNKS` chunks ahead. Dropping the
/// returned reader stops the thread at its next chunk.
fn decompress_ahead(mut r: Box<dyn Read + Send>) -> io::Result<PipeReader> {
    let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPE_CHUNKS);
    std::thread::Builder::new().name("pgdrill-decompress".into()).spawn(move || loop {
        let mut chunk = vec![0u8; 1 << 18];
        match super::fill(&mut r, &mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                if tx.send(Ok(chunk)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    })?;
    Ok(PipeReader { rx, buf: Vec::new(), at: 0 })
}

impl TarWal {
    fn shown(&self, name: &str) -> String {
        format!("{}:{}{name}", self.files.shown(&self.file), self.prefix)
    }
}

impl WalSource for TarWal {
    fn describe(&self) -> String {
        self.files.shown(&self.file)
    }

    fn role(&self) -> &str {
        "pg_wal"
    }

    fn fetch(&self, name: &str) -> io::Result<Fetched> {
        if name.contains('/') || name.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a WAL file name")));
        }
        let want = format!("{}{name}", self.prefix).into_bytes();
        let file = open_listed(self.files.as_ref(), &self.file)?;
        let (found_tx, found_rx) = mpsc::sync_channel::<Option<u64>>(1);
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPE_CHUNKS);
        std::thread::Builder::new().name("pgdrill-tar-wal".into()).spawn(move || {
            let mut sent = false;
            let r = compress::decoder(file).and_then(|(_, reader)| {
                t::for_each(reader, |step| {
                    let Step::Member(m, mut e) = step else { return Ok(true) };
                    if m.path != want || m.kind != MemberKind::File {
                        return Ok(true);
                    }
                    sent = true;
                    let _ = found_tx.send(Some(m.size));
                    loop {
                        let mut chunk = vec![0u8; 1 << 16];
                        match super::fill(&mut e, &mut chunk) {
                            Ok(0) => return Ok(false),
                            Ok(n) => {
                                chunk.truncate(n);
                                if tx.send(Ok(chunk)).is_err() {
                                    return Ok(false);
                                }
                            }
                            Err(err) => {
                                let _ = tx.send(Err(err));
                                return Ok(false);
                            }
                        }
                    }
                })
            });
            if !sent {
                let _ = found_tx.send(None);
            }
            if let Err(e) = r {
                let _ = tx.send(Err(e));
            }
        })?;
        match found_rx.recv() {
            Ok(Some(size)) => Ok(Fetched::Found(WalFile {
                stored: name.to_string(),
                shown: self.shown(name),
                compression: Compression::None,
                size: Some(size),
                reader: Box::new(PipeReader { rx, buf: Vec::new(), at: 0 }),
            })),
            // Not there, or the archive broke before it (the error goes
            // with the channel; a missing member reads as absent).
            _ => match rx.try_recv() {
                Ok(Err(e)) => Err(e),
                _ => Ok(Fetched::Absent(None)),
            },
        }
    }

    fn can_list(&self) -> bool {
        true
    }

    fn list(&self) -> io::Result<Vec<StoredWal>> {
        let (_, reader) = compress::decoder(open_listed(self.files.as_ref(), &self.file)?)?;
        let mut out = Vec::new();
        let prefix = self.prefix.as_bytes();
        t::for_each(reader, |step| {
            if let Step::Member(m, _) = step {
                if let Some(rest) = m.path.strip_prefix(prefix) {
                    let stored = String::from_utf8_lossy(rest).into_owned();
                    if let (MemberKind::File, Some(name)) = (&m.kind, logical_name(&stored)) {
                        out.push(StoredWal { name, stored, bytes: m.size });
                    }
                }
            }
            Ok(true)
        })?;
        Ok(out)
    }
}

/// The backup at `path`, plain or tar.
pub fn open(path: &Path) -> io::Result<Box<dyn BackupSource>> {
    Ok(match TarBackup::detect(path)? {
        Some(t) => Box::new(t),
        None => Box::new(DirBackup::new(path)),
    })
}

/// A file just opened (a manifest, an archive), with its size; none when
/// there is no such file.
fn opened_with_size(opened: io::Result<File>) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
    match opened {
        Ok(f) => {
            let len = f.metadata()?.len();
            Ok(Some((Box::new(f), len)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
