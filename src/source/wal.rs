//! Where WAL files come from: [`WalSource`], and its local implementations.
//!
//! PostgreSQL asks its `restore_command` for a file by name (`%f`: a
//! segment `TTTTTTTTXXXXXXXXYYYYYYYY`, a `TTTTTTTT.history`, a backup
//! history file) and expects its bytes at `%p` (`RestoreArchivedFile()`,
//! `src/backend/access/transam/xlogarchive.c`); a non-zero exit means
//! "not there". A [`WalSource`] answers the same question for pgdrill, so
//! `verify`, `wal-keep`, `drill` and `wal-fetch` read WAL the same way from:
//!
//! - [`DirWal`]: a directory (an archive, a backup's `pg_wal`), each file
//!   stored plain or compressed (`NAME`, `NAME.gz`, `NAME.lz4`, `NAME.zst`;
//!   a partial segment as `NAME.partial`, `NAME.partial.gz` as archive
//!   scripts write it, or `NAME.gz.partial` as pg_receivewal does);
//! - [`CommandWal`]: any tool's fetch command with PostgreSQL's `%f`/`%p`
//!   contract (pgBackRest `archive-get`, WAL-G `wal-fetch`,
//!   `barman-wal-restore`), run into a private directory, fetched ahead in
//!   parallel;
//! - object storage (the `objstore` layer) implements the trait the same way.
//!
//! Every file is recognised by its first bytes ([`super::compress`]) and
//! handed out decompressed, as a stream: nothing is held in memory whole.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::compress::{self, Compression};
use crate::pg::wal::WalFileKind;

/// One WAL file found, opened for reading.
pub struct WalFile {
    /// The name it is stored under (`000000010000000000000003.gz`).
    pub stored: String,
    /// How findings and messages name it (a path, `pg_wal/NAME`, or
    /// `NAME (restore_command)`).
    pub shown: String,
    /// How it was stored.
    pub compression: Compression,
    /// Its decompressed size, when known without reading it (a plain
    /// file's length); `None` for compressed files, whose size shows as
    /// they are read.
    pub size: Option<u64>,
    /// The decompressed contents.
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for WalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalFile")
            .field("stored", &self.stored)
            .field("shown", &self.shown)
            .field("compression", &self.compression)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The answer to "give me this file".
#[derive(Debug)]
pub enum Fetched {
    Found(WalFile),
    /// Not in this source. The text says why when there is more to say
    /// than "absent" (a fetch command's exit status and stderr).
    Absent(Option<String>),
}

/// A WAL file a listable source holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWal {
    /// Its PostgreSQL name, compression suffix removed
    /// (`000000010000000000000003`, `...0003.partial`, `00000002.history`).
    pub name: String,
    /// The name it is stored under.
    pub stored: String,
    /// Stored bytes.
    pub bytes: u64,
}

/// Where WAL files come from.
///
/// Implementations must be cheap to call from several threads at once
/// (verify walks stretches of WAL in parallel) and must never follow a
/// name outside the source: `name` is always one PostgreSQL would ask for
/// (callers pass names built from parsed segment numbers, timelines and
/// the fixed suffixes `.partial`, `.history`, `.backup`), but an
/// implementation should still refuse anything with a `/`.
///
/// Errors: `fetch` returns `Ok(Fetched::Absent(..))` for a file that is
/// not there (including a fetch command that exits non-zero, as
/// PostgreSQL's contract has it), and `Err` only for a source that cannot
/// be read at all (permissions, I/O, a dead connection). Data that is
/// damaged or does not decompress surfaces later, as a read error of
/// [`WalFile::reader`]. When the process was interrupted
/// ([`crate::signals::interrupted`]), a long fetch should give up promptly
/// (within about a second) with any `Err`; callers check the flag.
pub trait WalSource: Send + Sync {
    /// What the source is, for messages: a directory, `restore_command
    /// 'CMD'`, an object store URL.
    fn describe(&self) -> String;

    /// How "not found" messages name it: `the archive`, `pg_wal`, `the
    /// restore_command`.
    fn role(&self) -> &str;

    /// Open the file PostgreSQL calls `name`, stored plain or compressed,
    /// decompressed. A `.partial` name finds `NAME.partial` in any of the
    /// stored spellings.
    fn fetch(&self, name: &str) -> io::Result<Fetched>;

    /// Whether [`WalSource::list`] works (a directory, an object store
    /// prefix; not a fetch command).
    fn can_list(&self) -> bool {
        false
    }

    /// Every WAL file the source holds (segments, partial segments,
    /// history and backup history files; other names left out), each once
    /// under its PostgreSQL name. When the same name is stored in several
    /// compressions, each stored file is listed.
    fn list(&self) -> io::Result<Vec<StoredWal>> {
        Err(io::Error::new(io::ErrorKind::Unsupported, format!("{} cannot be listed", self.describe())))
    }

    /// Remove a stored file (`wal-keep --remove`). A file already gone is
    /// not an error.
    fn remove(&self, file: &StoredWal) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, format!("{} cannot remove {}", self.describe(), file.stored)))
    }

    /// A hint: these files will be fetched soon, in this order. A source
    /// with latency (a command, a network store) starts fetching some of
    /// them in the background, bounded in number and space; the default
    /// does nothing.
    fn prefetch(&self, _names: &[String]) {}
}

/// The fetch-ahead state of a source whose workers produce `T` per file
/// (shared by the restore_command and object-storage WAL sources).
pub(super) struct Ahead<T> {
    pub(super) slots: HashMap<String, Slot<T>>,
    pub(super) queue: VecDeque<String>,
    pub(super) workers: usize,
    pub(super) closed: bool,
}

impl<T> Default for Ahead<T> {
    fn default() -> Self {
        Ahead { slots: HashMap::new(), queue: VecDeque::new(), workers: 0, closed: false }
    }
}

/// Where one file asked for ahead stands.
pub(super) enum Slot<T> {
    Queued,
    Running,
    Done(io::Result<T>),
}

impl<T> Ahead<T> {
    /// Queue `names` to be fetched ahead: plain names not yet known, while
    /// fewer than `limit` are known (queued, running or fetched and unread).
    pub(super) fn queue_names(&mut self, names: &[String], limit: usize) {
        for n in names {
            if self.slots.len() >= limit {
                break;
            }
            if plain_name(n).is_err() || self.slots.contains_key(n) {
                continue;
            }
            self.slots.insert(n.clone(), Slot::Queued);
            self.queue.push_back(n.clone());
        }
    }
}

/// The prefetched result for `name`, waiting on `changed` while a worker
/// runs it: `Ok(Some)` when a worker had it, `Ok(None)` when nobody did (or
/// it was only queued: it is taken out of the queue) and the caller fetches
/// it itself, `Err(interrupted())` on a signal.
pub(super) fn wait_prefetched<T>(
    state: &Mutex<Ahead<T>>,
    changed: &Condvar,
    name: &str,
    interrupted: impl Fn() -> io::Error,
) -> io::Result<Option<io::Result<T>>> {
    let mut st = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !st.slots.contains_key(name) {
        return Ok(None);
    }
    loop {
        if let Some(Slot::Done(_)) = st.slots.get(name) {
            if let Some(Slot::Done(r)) = st.slots.remove(name) {
                return Ok(Some(r));
            }
        }
        if matches!(st.slots.get(name), Some(Slot::Queued)) {
            // Not started: take it out of the queue; the caller runs it.
            st.queue.retain(|n| n != name);
            st.slots.remove(name);
            return Ok(None);
        }
        if crate::signals::interrupted() {
            return Err(interrupted());
        }
        st = match changed.wait_timeout(st, Duration::from_millis(100)) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

/// Start fetch workers (threads named `thread`, each running `work`) until
/// `wanted` run; fewer if the system refuses a thread.
pub(super) fn start_workers<W: Send + Sync + 'static>(
    workers: &mut usize,
    wanted: usize,
    thread: &str,
    shared: &Arc<W>,
    work: fn(Arc<W>),
) {
    while *workers < wanted {
        *workers += 1;
        let w = Arc::clone(shared);
        if std::thread::Builder::new().name(thread.into()).spawn(move || work(w)).is_err() {
            *workers -= 1;
            break;
        }
    }
}

/// Refuse names that are not plain file names.
pub(super) fn plain_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a WAL file name")));
    }
    Ok(())
}

/// The stored spellings of `name`, in the order they are tried: plain
/// first, then gzip, LZ4, Zstandard; for a partial segment also the
/// compression suffix before `.partial` (pg_receivewal's in-progress file).
pub fn stored_names(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Compression::ALL.iter().map(|c| format!("{name}{}", c.suffix())).collect();
    if let Some(base) = name.strip_suffix(".partial") {
        for c in &Compression::ALL[1..] {
            out.push(format!("{base}{}.partial", c.suffix()));
        }
    }
    out
}

/// The PostgreSQL name of a stored file, if it is a WAL file in any
/// stored spelling.
pub fn logical_name(stored: &str) -> Option<String> {
    let (base, _) = Compression::split_suffix(stored);
    let name = match stored.strip_suffix(".partial") {
        // NAME.gz.partial
        Some(inner) if Compression::split_suffix(inner).1 != Compression::None => {
            format!("{}.partial", Compression::split_suffix(inner).0)
        }
        _ => base.to_string(),
    };
    WalFileKind::classify(&name).map(|_| name)
}

/// A directory of WAL files: an archive, or a backup's `pg_wal`.
#[derive(Clone, Debug)]
pub struct DirWal {
    dir: PathBuf,
    /// `None`: findings name files by their path; `Some(p)`: as `p/NAME`.
    prefix: Option<String>,
    role: String,
}

impl DirWal {
    /// An archive directory: files are named by their full path.
    pub fn archive(dir: &Path) -> DirWal {
        DirWal { dir: dir.to_path_buf(), prefix: None, role: "the archive".into() }
    }

    /// The `pg_wal` of a backup or data directory.
    pub fn pg_wal(datadir: &Path) -> DirWal {
        DirWal { dir: datadir.join("pg_wal"), prefix: Some("pg_wal".into()), role: "pg_wal".into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn shown(&self, stored: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{stored}"),
            None => self.dir.join(stored).display().to_string(),
        }
    }

    /// Open a stored file: a regular file (links are followed, as for the
    /// rest of a directory the user named), its compression recognised.
    fn open_stored(&self, stored: &str) -> io::Result<Option<WalFile>> {
        let path = self.dir.join(stored);
        let Ok(meta) = fs::metadata(&path) else { return Ok(None) };
        if !meta.is_file() {
            return Ok(None);
        }
        let f = File::open(&path)?;
        let (compression, reader) = compress::decoder(f)?;
        let size = (compression == Compression::None).then_some(meta.len());
        Ok(Some(WalFile { stored: stored.to_string(), shown: self.shown(stored), compression, size, reader }))
    }

    /// Whether any WAL file here is stored compressed (by its name, or,
    /// for a plain-named file, by its first bytes).
    pub fn holds_compressed(&self) -> io::Result<bool> {
        for f in self.list()? {
            if f.stored != f.name {
                return Ok(true);
            }
        }
        // Compressed files under plain names (Barman): look at the newest
        // segment.
        let newest = self
            .list()?
            .into_iter()
            .filter(|f| matches!(WalFileKind::classify(&f.name), Some(WalFileKind::Segment(_))))
            .max_by(|a, b| a.name.cmp(&b.name));
        if let Some(f) = newest {
            let mut head = [0u8; 4];
            let mut file = File::open(self.dir.join(&f.stored))?;
            let n = file.read(&mut head)?;
            return Ok(Compression::detect(&head[..n]) != Compression::None);
        }
        Ok(false)
    }
}

impl WalSource for DirWal {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn role(&self) -> &str {
        &self.role
    }

    fn fetch(&self, name: &str) -> io::Result<Fetched> {
        plain_name(name)?;
        for stored in stored_names(name) {
            if let Some(f) = self.open_stored(&stored)? {
                return Ok(Fetched::Found(f));
            }
        }
        Ok(Fetched::Absent(None))
    }

    fn can_list(&self) -> bool {
        true
    }

    fn list(&self) -> io::Result<Vec<StoredWal>> {
        let mut out = Vec::new();
        for (i, e) in fs::read_dir(&self.dir)?.enumerate() {
            if i % 4096 == 0 && crate::signals::interrupted() {
                return Err(io::Error::other("interrupted by signal"));
            }
            let e = e?;
            let stored = e.file_name().to_string_lossy().into_owned();
            let Some(name) = logical_name(&stored) else { continue };
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_file() {
                out.push(StoredWal { name, stored, bytes: meta.len() });
            }
        }
        out.sort_by(|a, b| a.stored.cmp(&b.stored));
        Ok(out)
    }

    fn remove(&self, file: &StoredWal) -> io::Result<()> {
        plain_name(&file.stored)?;
        match fs::remove_file(self.dir.join(&file.stored)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// How many files a [`CommandWal`] fetches ahead, at most, in parallel.
pub const DEFAULT_FETCH_AHEAD: usize = 4;
/// How much of a failing command's stderr a finding quotes.
const STDERR_TAIL: usize = 2000;

/// WAL fetched by a command with PostgreSQL's `restore_command` contract:
/// `%f` is replaced by the file's name, `%p` by the path to write it to,
/// `%r` by the name asked for (pgdrill has no restartpoint), `%%` by `%`;
/// the command runs in `/bin/sh`, as the current user, and must exit 0
/// having written the file, or non-zero when it has no such file.
///
/// Files are written into a private directory (mode 0700) of the system's
/// temporary directory, opened and unlinked at once when handed out, so a
/// fetched file never outlives its reader; the directory goes when the
/// source is dropped. Up to `ahead` files are fetched in parallel before
/// they are asked for ([`WalSource::prefetch`]), and at most `2 × ahead`
/// fetched files wait unread, so the space used is bounded too.
pub struct CommandWal {
    command: String,
    shared: Arc<Shared>,
}

struct Shared {
    dir: tempfile::TempDir,
    command: String,
    ahead: usize,
    seq: AtomicU64,
    state: Mutex<Ahead<Ran>>,
    changed: Condvar,
}

/// What one run of the command did.
enum Ran {
    /// It wrote this file.
    Wrote(PathBuf),
    /// It failed; why (exit status and stderr).
    Failed(String),
}

impl CommandWal {
    /// A source running `command`, fetching up to `ahead` files ahead.
    pub fn new(command: &str, ahead: usize) -> io::Result<CommandWal> {
        let dir = tempfile::Builder::new().prefix("pgdrill-wal-").tempdir()?;
        let shared = Arc::new(Shared {
            dir,
            command: command.to_string(),
            ahead: ahead.max(1),
            seq: AtomicU64::new(0),
            state: Mutex::new(Ahead::default()),
            changed: Condvar::new(),
        });
        Ok(CommandWal { command: command.to_string(), shared })
    }

    /// The private directory files are fetched into (for tests: it must be
    /// empty once every reader is dropped).
    pub fn scratch_dir(&self) -> &Path {
        self.shared.dir.path()
    }
}

/// PostgreSQL's placeholders in a restore_command
/// (`replace_percent_placeholders()`, `src/common/percentrepl.c`).
pub fn render_command(template: &str, name: &str, path: &Path) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('f') | Some('r') => {
                chars.next();
                out.push_str(name);
            }
            Some('p') => {
                chars.next();
                out.push_str(&path.display().to_string());
            }
            Some('%') => {
                chars.next();
                out.push('%');
            }
            _ => out.push('%'),
        }
    }
    out
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ahead<Ran>> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Run the command once for `name`.
    fn run(&self, name: &str) -> io::Result<Ran> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let dest = self.dir.path().join(format!("{n}.wal"));
        let err_path = self.dir.path().join(format!("{n}.stderr"));
        let stderr = File::create(&err_path)?;
        let line = render_command(&self.command, name, &dest);
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()?;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if crate::signals::interrupted() || self.lock().closed {
                // The whole group: the shell and what it started.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                let _ = fs::remove_file(&dest);
                let _ = fs::remove_file(&err_path);
                return Err(io::Error::other("interrupted by signal"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let text = fs::read(&err_path).unwrap_or_default();
        let _ = fs::remove_file(&err_path);
        let tail = &text[text.len().saturating_sub(STDERR_TAIL)..];
        let said = String::from_utf8_lossy(tail).trim().replace('\n', " | ");
        let said = if said.is_empty() { String::new() } else { format!(": {said}") };
        if !status.success() {
            let _ = fs::remove_file(&dest);
            let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => "failed".to_string(),
            };
            return Ok(Ran::Failed(format!("the restore_command {how}{said}")));
        }
        if !dest.is_file() {
            return Ok(Ran::Failed(format!("the restore_command succeeded but wrote no file at %p{said}")));
        }
        Ok(Ran::Wrote(dest))
    }

    /// A worker fetching queued names until the queue is empty.
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
                        drop(st);
                        self.changed.notify_all();
                        return;
                    }
                }
            };
            let r = self.run(&name);
            let mut st = self.lock();
            if st.closed {
                if let Ok(Ran::Wrote(p)) = &r {
                    let _ = fs::remove_file(p);
                }
            } else {
                st.slots.insert(name, Slot::Done(r));
            }
            drop(st);
            self.changed.notify_all();
        }
    }

    /// The result of `name`: a prefetched one (waiting for it if it is
    /// running), else a run now.
    fn result(&self, name: &str) -> io::Result<Ran> {
        let interrupted = || io::Error::other("interrupted by signal");
        match wait_prefetched(&self.state, &self.changed, name, interrupted)? {
            Some(r) => r,
            None => self.run(name),
        }
    }
}

impl WalSource for CommandWal {
    fn describe(&self) -> String {
        format!("restore_command '{}'", self.command)
    }

    fn role(&self) -> &str {
        "the restore_command"
    }

    fn fetch(&self, name: &str) -> io::Result<Fetched> {
        plain_name(name)?;
        match self.shared.result(name)? {
            Ran::Failed(why) => Ok(Fetched::Absent(Some(why))),
            Ran::Wrote(path) => {
                let f = File::open(&path)?;
                // Unlinked now: the open file is all that is left of it.
                fs::remove_file(&path)?;
                let len = f.metadata()?.len();
                let (compression, reader) = compress::decoder(f)?;
                let size = (compression == Compression::None).then_some(len);
                Ok(Fetched::Found(WalFile {
                    stored: name.to_string(),
                    shown: format!("{name} (restore_command)"),
                    compression,
                    size,
                    reader,
                }))
            }
        }
    }

    fn prefetch(&self, names: &[String]) {
        let sh = &self.shared;
        let mut st = sh.lock();
        if st.closed {
            return;
        }
        st.queue_names(names, 2 * sh.ahead);
        if !st.queue.is_empty() {
            start_workers(&mut st.workers, sh.ahead, "pgdrill-wal-fetch", sh, Shared::work);
        }
    }
}

impl Drop for CommandWal {
    fn drop(&mut self) {
        let sh = &self.shared;
        let mut st = sh.lock();
        st.closed = true;
        st.queue.clear();
        for slot in st.slots.values() {
            if let Slot::Done(Ok(Ran::Wrote(p))) = slot {
                let _ = fs::remove_file(p);
            }
        }
        st.slots.clear();
        sh.changed.notify_all();
        // Running commands see `closed` within 10 ms and are killed. Wait
        // for their workers (briefly, and as registered cleanup, so that an
        // interrupt's watchdog lets it finish), then remove the directory
        // here: the process may exit before a worker's last reference goes.
        let _cleaning = crate::signals::cleaning();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while st.workers > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            st = match sh.changed.wait_timeout(st, left.min(std::time::Duration::from_millis(50))) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(st);
        let _ = fs::remove_dir_all(sh.dir.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::compress::{CompressSpec, Encoder};
    use std::io::Write;

    fn compressed(kind: Compression, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(CompressSpec { kind, level: None, workers: 0 }, Vec::new()).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(f: Fetched) -> (WalFile, Vec<u8>) {
        let Fetched::Found(mut f) = f else { panic!("absent: {f:?}") };
        let mut out = Vec::new();
        f.reader.read_to_end(&mut out).unwrap();
        (f, out)
    }

    #[test]
    fn names_in_every_spelling() {
        assert_eq!(logical_name("000000010000000000000003.gz").as_deref(), Some("000000010000000000000003"));
        assert_eq!(
            logical_name("000000010000000000000003.gz.partial").as_deref(),
            Some("000000010000000000000003.partial")
        );
        assert_eq!(
            logical_name("000000010000000000000003.partial.zst").as_deref(),
            Some("000000010000000000000003.partial")
        );
        assert_eq!(logical_name("00000002.history.lz4").as_deref(), Some("00000002.history"));
        assert_eq!(logical_name("archive_status"), None);
        assert_eq!(logical_name("000000010000000000000003.bz2"), None);
        let s = stored_names("000000010000000000000003.partial");
        assert!(s.contains(&"000000010000000000000003.partial.gz".to_string()));
        assert!(s.contains(&"000000010000000000000003.gz.partial".to_string()));
    }

    #[test]
    fn a_directory_serves_every_compression() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let names = [
            ("000000010000000000000001", Compression::None),
            ("000000010000000000000002.gz", Compression::Gzip),
            ("000000010000000000000003.lz4", Compression::Lz4),
            ("000000010000000000000004.zst", Compression::Zstd),
            // Barman: compressed under the plain name.
            ("000000010000000000000005", Compression::Gzip),
            ("000000010000000000000006.gz.partial", Compression::Gzip),
        ];
        for (n, c) in names {
            fs::write(d.path().join(n), compressed(c, &data)).unwrap();
        }
        fs::create_dir(d.path().join("archive_status")).unwrap();
        let src = DirWal::archive(d.path());
        for (i, (stored, c)) in names.iter().enumerate() {
            let logical = logical_name(stored).unwrap();
            let (f, bytes) = read_all(src.fetch(&logical).unwrap());
            assert_eq!(bytes, data, "{stored}");
            assert_eq!(f.compression, *c);
            assert_eq!(f.stored, *stored);
            assert_eq!(f.size.is_some(), *c == Compression::None, "{i}");
        }
        assert!(matches!(src.fetch("000000010000000000000009").unwrap(), Fetched::Absent(None)));
        assert!(src.fetch("../etc/passwd").is_err());
        let listed = src.list().unwrap();
        assert_eq!(listed.len(), names.len());
        assert!(src.holds_compressed().unwrap());
        let gone = listed.iter().find(|f| f.stored.ends_with(".zst")).unwrap();
        src.remove(gone).unwrap();
        assert!(!d.path().join(&gone.stored).exists());
        src.remove(gone).unwrap();

        let plain = tempfile::tempdir().unwrap();
        fs::write(plain.path().join("000000010000000000000001"), &data).unwrap();
        assert!(!DirWal::archive(plain.path()).holds_compressed().unwrap());
    }

    #[test]
    fn placeholders_as_postgresql_replaces_them() {
        let p = Path::new("/tmp/x/1.wal");
        assert_eq!(render_command("cp /a/%f %p", "N", p), "cp /a/N /tmp/x/1.wal");
        assert_eq!(render_command("x %% %r %q %", "N", p), "x % N %q %");
    }

    #[test]
    fn a_command_fetches_ahead_and_leaves_nothing_behind() {
        let arch = tempfile::tempdir().unwrap();
        let data = vec![42u8; 100_000];
        for i in 1..=6 {
            fs::write(
                arch.path().join(format!("00000001000000000000000{i}.zst")),
                compressed(Compression::Zstd, &data),
            )
            .unwrap();
        }
        // The command decompresses nothing itself: pgdrill recognises zstd.
        let cmd = format!("cp {}/%f.zst %p", arch.path().display());
        let src = CommandWal::new(&cmd, 2).unwrap();
        let names: Vec<String> = (1..=6).map(|i| format!("00000001000000000000000{i}")).collect();
        src.prefetch(&names);
        for n in &names {
            let (f, bytes) = read_all(src.fetch(n).unwrap());
            assert_eq!(bytes, data);
            assert_eq!(f.compression, Compression::Zstd);
        }
        match src.fetch("000000010000000000000009").unwrap() {
            Fetched::Absent(Some(why)) => {
                assert!(why.contains("exited with status 1"), "{why}");
                assert!(why.contains("No such file"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Fetched and read: nothing is left in the scratch directory.
        assert_eq!(fs::read_dir(src.scratch_dir()).unwrap().count(), 0);
        // Prefetched but never read: gone with the source.
        src.prefetch(&names);
        std::thread::sleep(Duration::from_millis(300));
        let scratch = src.scratch_dir().to_path_buf();
        drop(src);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!scratch.exists() || fs::read_dir(&scratch).unwrap().count() == 0);

        let silent = CommandWal::new("true", 1).unwrap();
        assert!(
            matches!(silent.fetch("000000010000000000000001").unwrap(), Fetched::Absent(Some(w)) if w.contains("wrote no file"))
        );
    }
}
