//! Copying files in parallel, with a rate limit, a progress bar, and a
//! CRC-32C of exactly the bytes written.
//!
//! Used by `backup` (from a live standby, where files grow, shrink and vanish
//! under us; replay repairs them) and by `restore`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::observe::{self, Progress, Unit};
use crate::pg::manifest::{ChecksumAlgorithm, Checksummer};
use crate::server::OsUser;

const BUF_SIZE: usize = 1 << 20;

/// One file to copy, named by paths (backup: a live data directory the
/// server's OS user controls, so the source is opened without following a
/// link at its last component).
#[derive(Clone, Debug)]
pub struct CopyJob {
    pub src: PathBuf,
    pub dst: PathBuf,
    /// Size when listed; used to order the work and for progress.
    pub size_hint: u64,
}

/// What [`copy_files`] needs of a job: where the bytes come from and go.
pub trait Job: Sync {
    /// Size when listed; orders the work and feeds the progress bar.
    fn size_hint(&self) -> u64;
    /// The source, for messages.
    fn src_display(&self) -> PathBuf;
    /// The destination, for messages.
    fn dst_display(&self) -> PathBuf;
    /// Open the source for reading; `Ok(None)` if it does not exist.
    fn open_src(&self) -> std::io::Result<Option<File>>;
    /// Create the destination (it must not exist) with `mode`, owned by `owner`.
    fn create_dst(&self, mode: u32, owner: Option<&OsUser>) -> std::io::Result<File>;
    /// Also compute this manifest checksum of the bytes copied.
    fn checksum(&self) -> Option<ChecksumAlgorithm> {
        None
    }
    /// The source must be owned by this uid (reading as root from a place
    /// another user controls: root's reach must not leak into the copy).
    fn required_owner(&self) -> Option<u32> {
        None
    }
}

impl Job for CopyJob {
    fn size_hint(&self) -> u64 {
        self.size_hint
    }
    fn src_display(&self) -> PathBuf {
        self.src.clone()
    }
    fn dst_display(&self) -> PathBuf {
        self.dst.clone()
    }
    fn open_src(&self) -> std::io::Result<Option<File>> {
        match OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(&self.src) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn create_dst(&self, mode: u32, owner: Option<&OsUser>) -> std::io::Result<File> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&self.dst)?;
        crate::safefs::set_owner_mode(&f, owner, Some(mode))?;
        Ok(f)
    }
}

/// What was copied.
#[derive(Clone, Debug, Default)]
pub struct Copied {
    pub size: u64,
    pub crc32c: u32,
    /// The job's [`Job::checksum`] of the bytes, when it asked for one.
    pub digest: Option<Vec<u8>>,
    /// Source modification time, seconds since the epoch.
    pub mtime: i64,
    /// The source disappeared before it could be opened.
    pub vanished: bool,
}

/// A byte-rate limit shared by all workers.
pub struct Throttle {
    rate: u64,
    state: Mutex<(Instant, u64)>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle { rate: bytes_per_sec.max(1), state: Mutex::new((Instant::now(), 0)) }
    }

    /// Account for `n` bytes, sleeping until they fit in the rate.
    pub fn take(&self, n: u64) {
        let wait = {
            let mut s = match self.state.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            s.1 += n;
            let due = s.0 + Duration::from_secs_f64(s.1 as f64 / self.rate as f64);
            due.saturating_duration_since(Instant::now())
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Options for [`copy_files`].
pub struct CopyOptions<'a> {
    pub jobs: usize,
    pub throttle: Option<&'a Throttle>,
    pub progress: &'a Progress,
    /// Owner for created files (root only).
    pub owner: Option<&'a OsUser>,
    /// File mode for created files; `None` keeps the source's.
    pub mode: Option<u32>,
    /// A missing source is recorded as vanished instead of an error.
    pub vanish_ok: bool,
    pub cancel: &'a AtomicBool,
}

/// Progress of copying `total` bytes (see [`crate::observe`]); hidden when
/// `quiet`.
pub fn progress_bar(total: u64, what: &str, quiet: bool) -> Progress {
    if quiet {
        return Progress::hidden();
    }
    observe::start(what, Unit::Bytes, total)
}

/// Copy one file. `buf` is scratch space.
pub fn copy_one(job: &impl Job, opts: &CopyOptions, buf: &mut [u8]) -> Result<Copied> {
    let read_err = |e| Error::ReadInput { path: job.src_display(), source: e };
    let mut src = match job.open_src() {
        Ok(Some(f)) => f,
        Ok(None) if opts.vanish_ok => return Ok(Copied { vanished: true, ..Copied::default() }),
        Ok(None) => return Err(read_err(std::io::Error::from(ErrorKind::NotFound))),
        Err(e) => return Err(read_err(e)),
    };
    let meta = src.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::new(ErrorKind::InvalidInput, "not a regular file")));
    }
    if let Some(uid) = job.required_owner().filter(|u| meta.uid() != *u) {
        return Err(Error::BackupDamaged {
            path: job.src_display(),
            detail: format!(
                "owned by uid {}, not by the backup's owner (uid {uid}); as root pgdrill copies nobody else's files",
                meta.uid()
            ),
        });
    }
    let mode = opts.mode.unwrap_or(meta.mode() & 0o777);
    let mut dst = job.create_dst(mode, opts.owner).map_err(|e| Error::io(job.dst_display(), "create file", e))?;
    let mut crc = 0u32;
    let mut sum = job.checksum().map(Checksummer::new);
    let mut size = 0u64;
    loop {
        if opts.cancel.load(Ordering::Relaxed) || crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        let n = match src.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if let Some(t) = opts.throttle {
            t.take(n as u64);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        if let Some(s) = sum.as_mut() {
            s.update(&buf[..n]);
        }
        dst.write_all(&buf[..n]).map_err(|e| Error::io(job.dst_display(), "write", e))?;
        size += n as u64;
        opts.progress.inc(n as u64);
    }
    Ok(Copied { size, crc32c: crc, digest: sum.map(Checksummer::finish), mtime: meta.mtime(), vanished: false })
}

/// Copy all jobs with `opts.jobs` workers, largest first. Results are in the
/// order of `jobs`. The first error stops the other workers.
pub fn copy_files<J: Job>(jobs: &[J], opts: &CopyOptions) -> Result<Vec<Copied>> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].size_hint()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Copied>>> = Mutex::new(vec![None; jobs.len()]);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let workers = opts.jobs.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = vec![0u8; BUF_SIZE];
                loop {
                    if opts.cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { return };
                    match copy_one(&jobs[i], opts, &mut buf) {
                        Ok(c) => {
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(c);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut fe) = first_error.lock() {
                                if fe.is_none() {
                                    *fe = Some(e);
                                }
                            }
                            opts.cancel.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if opts.cancel.load(Ordering::Relaxed) || crate::signals::interrupted() {
        return Err(Error::Interrupted);
    }
    let results = results.into_inner().unwrap_or_default();
    Ok(results.into_iter().map(Option::unwrap_or_default).collect())
}

/// Create a directory (and missing parents) with mode 0700, owned by
/// `owner` when given (root only).
pub fn create_dir(path: &Path, owner: Option<&OsUser>) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .map_err(|e| Error::io(path, "create directory", e))?;
    if let Some(u) = owner {
        u.chown(path)?;
    }
    Ok(())
}

/// Flush everything written to the file system holding `path` to disk.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io(path, "open for sync", e))?;
    nix::unistd::syncfs(&f).map_err(|e| Error::io(path, "sync", std::io::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_parallel_with_crc() {
        let dir = tempfile::tempdir().unwrap();
        let mut jobs = Vec::new();
        for i in 0..20 {
            let src = dir.path().join(format!("s{i}"));
            std::fs::write(&src, vec![i as u8; i * 100_000]).unwrap();
            jobs.push(CopyJob { src, dst: dir.path().join(format!("d{i}")), size_hint: (i * 100_000) as u64 });
        }
        jobs.push(CopyJob { src: dir.path().join("gone"), dst: dir.path().join("dgone"), size_hint: 0 });
        let cancel = AtomicBool::new(false);
        let pb = Progress::hidden();
        let opts = CopyOptions {
            jobs: 3,
            throttle: None,
            progress: &pb,
            owner: None,
            mode: None,
            vanish_ok: true,
            cancel: &cancel,
        };
        let out = copy_files(&jobs, &opts).unwrap();
        for (i, c) in out.iter().enumerate().take(20) {
            let data = std::fs::read(dir.path().join(format!("d{i}"))).unwrap();
            assert_eq!(c.size as usize, data.len());
            assert_eq!(c.crc32c, crc32c::crc32c(&data));
        }
        assert!(out[20].vanished);
        // Without vanish_ok a missing file is an error, and nothing is left half-done silently.
        let opts = CopyOptions { vanish_ok: false, ..opts };
        let err = copy_files(&jobs[20..], &opts).unwrap_err();
        assert!(matches!(err, Error::ReadInput { .. }));
    }

    #[test]
    fn throttle_limits_the_rate() {
        let t = Throttle::new(1 << 20);
        let start = Instant::now();
        for _ in 0..4 {
            t.take(128 << 10);
        }
        // 512 KiB at 1 MiB/s takes about half a second; allow slack upward only.
        assert!(start.elapsed() >= Duration::from_millis(400), "{:?}", start.elapsed());
    }
}
