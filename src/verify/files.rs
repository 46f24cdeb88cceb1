//! The files of a backup against its `backup_manifest`, and the pages of
//! relation files, in one read pass.
//!
//! The manifest rules are pg_verifybackup's (`src/bin/pg_verifybackup/
//! pg_verifybackup.c`, PostgreSQL 13–18): every listed file must exist with
//! the listed size and checksum; every file on disk must be listed, except
//! the paths PostgreSQL itself ignores (`backup_manifest`, `pg_wal`,
//! `postgresql.auto.conf`, `recovery.signal`, `standby.signal`), which are
//! not checked at all, in either direction. Symbolic links are followed, so
//! a plain pg_basebackup's `pg_tblspc/<oid>` links are checked through.
//! `Last-Modified` is not compared (neither does PostgreSQL).
//!
//! Memory: the manifest is a packed [`ManifestIndex`]; the walk matches
//! each file on disk against it as it goes (a bit per listed file says it
//! was seen) and keeps 32 bytes per file to read, so the whole check needs
//! less than the manifest's own size.
//!
//! Files are read in parallel (`--jobs`), largest first, each in 64 KiB
//! chunks: small enough to stay in the CPU's cache from the read's copy to
//! the checksums (1 MiB reads cost twice the system time). The manifest
//! checksum (hardware CRC-32C, or SHA-2) and, for relation files, the page
//! checks of [`super::pages`] use the same bytes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::finding::{Finding, FindingKind, Findings};
use super::pages::{ChecksumScan, DeferredScan, PageScan, ASSUMED_BLOCKS_PER_SEGMENT};
use crate::datadir::{Captured, BACKUP_MANIFEST, INCOMPLETE_MARKER};
use crate::error::{Error, Result};
use crate::pg::label::TablespaceEntry;
use crate::pg::manifest::{hex, ChecksumAlgorithm, Checksummer, ManifestIndex};
use crate::pg::relfile;
use crate::pg::Lsn;
use crate::source::{BackupSource, EntryKind, EntryMeta, Visit as SourceVisit};

/// Paths pg_verifybackup never checks (`pg_verifybackup.c`, `main()`), plus
/// pgdrill's own incomplete marker, which gets a finding of its own.
pub const IGNORED: &[&str] =
    &[BACKUP_MANIFEST, "pg_wal", "postgresql.auto.conf", "recovery.signal", "standby.signal", INCOMPLETE_MARKER];

const CHUNK: usize = 1 << 16;

/// Whether a relative path is one of [`IGNORED`] or lies below one.
pub fn is_ignored(rel: &[u8]) -> bool {
    IGNORED.iter().any(|i| {
        let i = i.as_bytes();
        rel == i || (rel.len() > i.len() && rel.starts_with(i) && rel[i.len()] == b'/')
    })
}

/// The data checksum settings of a cluster with data checksums.
#[derive(Clone, Copy, Debug)]
pub struct ChecksumRule {
    /// The backup's start: pages with an LSN at or after it may be torn.
    pub torn_from: Lsn,
    /// `RELSEG_SIZE`: blocks per relation segment file.
    pub blocks_per_segment: u32,
}

/// What the file checks need.
pub struct FileCheck<'a> {
    pub root: &'a Path,
    pub manifest: Option<&'a ManifestIndex>,
    /// Scan relation pages for LSNs above this point.
    pub page_bound: Option<Lsn>,
    /// Check data checksums.
    pub checksums: Option<ChecksumRule>,
    pub block_size: u32,
    pub jobs: usize,
}

/// Counters of the file checks.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FileStats {
    /// Regular files found on disk (ignored paths left out).
    pub files: u64,
    /// Files read (for a checksum, a page scan, or both).
    pub files_read: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Files whose manifest checksum was compared.
    pub checksums: u64,
    /// Relation files whose pages were scanned.
    pub relation_files: u64,
    /// Relation pages scanned.
    pub relation_pages: u64,
    /// Relation pages whose data checksum was verified.
    pub page_checksums: u64,
    /// Pages not checksummed by the torn-page rule.
    pub torn_pages: u64,
}

fn display(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
        v.extend_from_slice(parent);
        v.push(b'/');
        v.extend_from_slice(name);
        v
    }
}

/// Which file a job reads: a manifest entry, or a file the manifest does not
/// list (its path kept in [`Plan::extra_paths`]).
#[derive(Clone, Copy, Debug)]
enum Target {
    Listed(usize),
    Extra(usize),
}

/// One file to read: 32 bytes, however many files there are.
#[derive(Clone, Copy, Debug)]
struct Job {
    size: u64,
    target: Target,
    /// Compare the manifest checksum (a listed file of the right size).
    checksum: bool,
    /// Scan the pages: LSNs (not for unlogged relations), data checksums.
    lsn_scan: bool,
    page_checksums: bool,
}

/// What the walk found to read.
#[derive(Default)]
struct Plan {
    jobs: Vec<Job>,
    /// Paths of files the manifest does not list (or of every file, without
    /// a manifest) that need reading, in one byte arena.
    extra_bytes: Vec<u8>,
    extra_paths: Vec<(usize, usize)>,
    /// One bit per manifest entry: seen on disk.
    seen: Vec<u64>,
    files: u64,
}

impl Plan {
    fn extra(&mut self, rel: &[u8]) -> Target {
        self.extra_paths.push((self.extra_bytes.len(), rel.len()));
        self.extra_bytes.extend_from_slice(rel);
        Target::Extra(self.extra_paths.len() - 1)
    }

    fn rel<'a>(&'a self, t: Target, manifest: Option<&'a ManifestIndex>) -> &'a [u8] {
        match (t, manifest) {
            (Target::Listed(i), Some(m)) => m.get(i).path,
            (Target::Extra(i), _) => {
                let (at, len) = self.extra_paths[i];
                &self.extra_bytes[at..at + len]
            }
            (Target::Listed(_), None) => &[],
        }
    }
}

/// A regular file found by the walk.
struct Visit<'a> {
    rel: &'a [u8],
    size: u64,
    /// A relation file, and not a fork of an unlogged relation.
    relation: bool,
    unlogged: bool,
}

/// Compare one file on disk with the manifest, and plan its reading.
fn visit(input: &FileCheck, plan: &mut Plan, v: Visit, findings: &mut Findings) {
    plan.files += 1;
    let lsn_scan = v.relation && !v.unlogged && input.page_bound.is_some();
    let page_checksums = v.relation && input.checksums.is_some();
    let scan = lsn_scan || page_checksums;
    let Some(m) = input.manifest else {
        if scan {
            let target = plan.extra(v.rel);
            plan.jobs.push(Job { size: v.size, target, checksum: false, lsn_scan, page_checksums });
        }
        return;
    };
    let Some(i) = m.find(v.rel) else {
        findings
            .push(Finding::new(FindingKind::FileExtra, "on disk but not listed in the manifest").at(display(v.rel)));
        if scan {
            let target = plan.extra(v.rel);
            plan.jobs.push(Job { size: v.size, target, checksum: false, lsn_scan, page_checksums });
        }
        return;
    };
    plan.seen[i / 64] |= 1 << (i % 64);
    let listed = m.get(i);
    let size_ok = listed.size == v.size;
    if !size_ok {
        findings.push(
            Finding::new(FindingKind::FileSize, format!("size {} on disk but {} in the manifest", v.size, listed.size))
                .at(listed.display_path()),
        );
    }
    let checksum = size_ok && listed.checksum.is_some();
    if checksum || scan {
        plan.jobs.push(Job { size: v.size, target: Target::Listed(i), checksum, lsn_scan, page_checksums });
    }
}

/// The names in a directory, and the relfilenodes of its unlogged
/// relations (those with an `_init` fork).
fn list_dir(dir: &Path) -> std::io::Result<(Vec<OsString>, HashSet<String>)> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir)? {
        names.push(e?.file_name());
    }
    let utf8 = names.iter().filter_map(|n| n.to_str());
    let unlogged = relfile::unlogged_files(utf8.clone())
        .into_iter()
        .filter_map(relfile::RelFileName::parse)
        .map(|r| r.node.to_string())
        .collect();
    Ok((names, unlogged))
}

/// Walk the regular files under `root`, following symbolic links, skipping
/// ignored paths, and [`visit`] each. Problems (unreadable directories,
/// dangling links) become findings.
fn walk(input: &FileCheck, plan: &mut Plan, findings: &mut Findings) -> Result<()> {
    let root = input.root;
    let mut seen_dirs = HashSet::new();
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        if crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        let unreadable = |what: &str, e: std::io::Error| {
            Finding::new(FindingKind::FileUnreadable, format!("cannot {what} directory: {e}")).at(display(&rel))
        };
        let meta = match fs::metadata(&dir) {
            Ok(m) => m,
            Err(e) if rel.is_empty() => return Err(Error::ReadInput { path: dir, source: e }),
            Err(e) => {
                findings.push(unreadable("read", e));
                continue;
            }
        };
        if !seen_dirs.insert((meta.dev(), meta.ino())) {
            continue; // a link loop
        }
        let (names, unlogged) = match list_dir(&dir) {
            Ok(l) => l,
            Err(e) if rel.is_empty() => return Err(Error::ReadInput { path: dir, source: e }),
            Err(e) => {
                findings.push(unreadable("list", e));
                continue;
            }
        };
        for name in names {
            let child = join_rel(&rel, name.as_bytes());
            if is_ignored(&child) {
                continue;
            }
            let path = dir.join(&name);
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // A dangling symbolic link. In pg_tblspc the tablespace
                    // check reports it.
                    if !child.starts_with(b"pg_tblspc/") || child.iter().filter(|b| **b == b'/').count() != 1 {
                        findings.push(
                            Finding::new(FindingKind::FileUnreadable, "a symbolic link that leads nowhere")
                                .at(display(&child)),
                        );
                    }
                    continue;
                }
                Err(e) => {
                    findings.push(
                        Finding::new(FindingKind::FileUnreadable, format!("cannot stat: {e}")).at(display(&child)),
                    );
                    continue;
                }
            };
            if meta.is_dir() {
                stack.push((path, child));
            } else if meta.is_file() {
                let parsed = std::str::from_utf8(&child).ok().and_then(relfile::relation_path);
                let v = Visit {
                    rel: &child,
                    size: meta.len(),
                    relation: parsed.is_some(),
                    unlogged: parsed.is_some_and(|r| unlogged.contains(r.node)),
                };
                visit(input, plan, v, findings);
            }
            // Sockets, FIFOs and devices are not files a manifest can list.
        }
    }
    Ok(())
}

/// Counters and findings of one worker.
#[derive(Default)]
struct WorkerResult {
    stats: FileStats,
    findings: Findings,
}

/// Fill `buf` from `f` as far as possible; the count is short only at EOF.
pub(crate) fn fill<R: Read + ?Sized>(f: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    crate::source::fill(f, buf)
}

/// Everything a worker needs to read one file.
struct ReadCtx<'a> {
    input: &'a FileCheck<'a>,
    plan: &'a Plan,
    cancel: &'a AtomicBool,
}

/// Read one file: its manifest checksum and its pages, in one pass.
fn run_job(ctx: &ReadCtx, job: &Job, buf: &mut [u8], out: &mut WorkerResult) {
    let input = ctx.input;
    let rel_bytes = ctx.plan.rel(job.target, input.manifest);
    let rel = display(rel_bytes);
    let listed = match job.target {
        Target::Listed(i) => input.manifest.map(|m| m.get(i)),
        Target::Extra(_) => None,
    };
    let mut f = match File::open(input.root.join(std::ffi::OsStr::from_bytes(rel_bytes))) {
        Ok(f) => f,
        Err(e) => {
            out.findings.push(Finding::new(FindingKind::FileUnreadable, format!("cannot open: {e}")).at(rel));
            return;
        }
    };
    let expected = listed.and_then(|l| l.checksum).filter(|_| job.checksum);
    let mut sum = expected.map(|(alg, _)| Checksummer::new(alg));
    let mut scan = (job.lsn_scan || job.page_checksums).then(|| page_scan(input, job, rel_bytes));
    let mut bytes = 0u64;
    loop {
        if ctx.cancel.load(Ordering::Relaxed) || crate::signals::interrupted() {
            ctx.cancel.store(true, Ordering::Relaxed);
            return;
        }
        let n = match fill(&mut f, buf) {
            Ok(n) => n,
            Err(e) => {
                out.findings.push(
                    Finding::new(FindingKind::FileUnreadable, format!("read failed after {bytes} bytes: {e}")).at(rel),
                );
                return;
            }
        };
        bytes += n as u64;
        if let Some(s) = sum.as_mut() {
            s.update(&buf[..n]);
        }
        if let Some(s) = scan.as_mut() {
            s.feed(&buf[..n]);
        }
        if n < buf.len() {
            break;
        }
    }
    out.stats.files_read += 1;
    out.stats.bytes += bytes;
    if let (Some(s), Some((alg, digest))) = (sum, expected) {
        out.stats.checksums += 1;
        compare_checksum(s, alg, digest, &rel, &mut out.findings);
    }
    if let Some(s) = scan {
        report_pages(&s, &rel, &mut out.stats, &mut out.findings);
    }
}

fn page_scan(input: &FileCheck, job: &Job, rel: &[u8]) -> PageScan {
    let checksums = input.checksums.filter(|_| job.page_checksums).map(|c| {
        let name = std::str::from_utf8(rel).ok().and_then(relfile::relation_path);
        ChecksumScan { torn_from: c.torn_from, first_block: name.map_or(0, |r| r.first_block(c.blocks_per_segment)) }
    });
    PageScan::new(input.page_bound.filter(|_| job.lsn_scan), checksums, input.block_size)
}

fn compare_checksum(s: Checksummer, alg: ChecksumAlgorithm, expected: &[u8], rel: &str, findings: &mut Findings) {
    let got = s.finish();
    if got != expected {
        findings.push(
            Finding::new(
                FindingKind::FileChecksum,
                format!(
                    "checksum mismatch: {} in the manifest is {}, the file gives {}",
                    alg.name(),
                    hex(expected),
                    hex(&got)
                ),
            )
            .at(rel),
        );
    }
}

pub(crate) fn report_pages(s: &PageScan, rel: &str, stats: &mut FileStats, findings: &mut Findings) {
    stats.relation_files += 1;
    stats.relation_pages += s.pages;
    stats.page_checksums += s.checksummed;
    stats.torn_pages += s.torn;
    if s.beyond > 0 {
        findings.push(
            Finding::new(
                FindingKind::PageLsnBeyondEnd,
                format!(
                    "{}{} of {} pages carry LSNs above the end point (highest {} in block {}): pg_control was \
                     copied before this file, and recovery would call the copy consistent too early",
                    s.beyond,
                    if s.beyond_more { " or more" } else { "" },
                    s.pages,
                    s.max_lsn,
                    s.max_block
                ),
            )
            .at(rel)
            .lsn(s.max_lsn),
        );
    }
    if let Some((block, lsn)) = s.first_bad {
        let more = match s.bad {
            1 => String::new(),
            n => format!(" (and {} more of its blocks)", n - 1),
        };
        findings.push(
            Finding::new(
                FindingKind::PageChecksum,
                format!(
                    "block {block}{more} fails its data checksum, and its LSN {lsn} is before the backup's start, \
                     so replay will not rewrite it: the page is corrupt"
                ),
            )
            .at(rel)
            .lsn(lsn),
        );
    }
}

/// Compare the directory with the manifest and scan relation pages.
/// Findings go to `findings`, sorted by path.
pub fn check(input: &FileCheck, findings: &mut Findings) -> Result<FileStats> {
    let mut found = Findings::new();
    if input.manifest.is_none() && input.page_bound.is_none() && input.checksums.is_none() {
        return Ok(FileStats::default());
    }
    let mut plan = Plan::default();
    if let Some(m) = input.manifest {
        plan.seen = vec![0u64; m.len().div_ceil(64)];
    }
    walk(input, &mut plan, &mut found)?;
    if let Some(m) = input.manifest {
        report_missing(m, &plan.seen, &mut found)?;
    }
    // Largest first keeps the workers busy until the end.
    plan.jobs.sort_unstable_by_key(|j| std::cmp::Reverse(j.size));
    let read = read_all(input, &plan)?;
    let stats = FileStats { files: plan.files, ..read.stats };
    found.append(read.findings);
    found.sort_by_path();
    findings.append(found);
    Ok(stats)
}

/// The listed files never seen on disk.
fn report_missing(m: &ManifestIndex, seen: &[u64], found: &mut Findings) -> Result<()> {
    for i in 0..m.len() {
        if i % 65536 == 0 && crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        let f = m.get(i);
        if seen[i / 64] & (1 << (i % 64)) == 0 && !is_ignored(f.path) {
            found.push(
                Finding::new(FindingKind::FileMissing, "listed in the manifest but not on disk").at(f.display_path()),
            );
        }
    }
    Ok(())
}

/// Read every planned file on `jobs` workers.
fn read_all(input: &FileCheck, plan: &Plan) -> Result<WorkerResult> {
    let next = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let merged = Mutex::new(WorkerResult::default());
    let ctx = ReadCtx { input, plan, cancel: &cancel };
    let workers = input.jobs.clamp(1, plan.jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = vec![0u8; CHUNK];
                let mut out = WorkerResult::default();
                while let Some(job) = plan.jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    run_job(&ctx, job, &mut buf, &mut out);
                }
                if let Ok(mut m) = merged.lock() {
                    m.stats.add(&out.stats);
                    m.findings.append(out.findings);
                }
            });
        }
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    Ok(merged.into_inner().unwrap_or_default())
}

/// What the streamed file check needs (a tar backup, or any
/// [`BackupSource`] without random access).
pub struct StreamCheck<'a> {
    pub manifest: Option<&'a ManifestIndex>,
    /// Pages before this LSN get their data checksums computed, provisionally
    /// (the manifest's WAL start; replaced by the label's START WAL LOCATION
    /// when `backup_label` comes first, as in PostgreSQL's tar backups).
    pub floor: Lsn,
}

/// A relation file's pages, to be judged once pg_control is known.
#[derive(Debug)]
pub struct DeferredFile {
    pub path: String,
    pub scan: DeferredScan,
}

/// What one pass over a backup's entries found.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    pub stats: FileStats,
    /// The small files [`crate::datadir::DirInfo`] reads.
    pub captured: Captured,
    /// Relation files with pages above the floor or failing checksums; the
    /// others are only counted (below).
    pub deferred: Vec<DeferredFile>,
    /// Pages of the relation files not kept in `deferred`: scanned,
    /// checksummed, and at or after the floor.
    pub plain_pages: (u64, u64, u64),
    /// The relation paths of unlogged relations' forks (an `_init` fork
    /// seen in the same directory), whose page LSNs do not count.
    pub unlogged: HashSet<String>,
    /// `pg_tblspc/<name>` entries: name, is a link, its target.
    pub tablespaces: Vec<(String, bool, String)>,
    /// The floor the scan used.
    pub floor: Lsn,
    pub findings: Findings,
}

/// Read every entry of `source` once: compare each file with the manifest
/// (size and checksum), scan relation pages for later judgement, and keep
/// the small files that say what the backup is.
pub fn check_stream(input: &StreamCheck, source: &dyn BackupSource) -> Result<StreamOutcome> {
    let mut out = StreamOutcome { floor: input.floor, ..StreamOutcome::default() };
    out.captured.root = PathBuf::from(source.describe());
    let mut seen = vec![0u64; input.manifest.map_or(0, |m| m.len().div_ceil(64))];
    let mut buf = vec![0u8; CHUNK];
    let mut init_forks: HashSet<(String, String)> = HashSet::new();
    let mut rel_files: Vec<(String, String, String)> = Vec::new(); // dir, node, path
    let result = source.stream(&mut |v| {
        match v {
            SourceVisit::Refused { path, why } => out
                .findings
                .push(Finding::new(FindingKind::EntryRefused, format!("{why}: no backup may hold this")).at(path)),
            SourceVisit::Entry(meta, reader) => {
                stream_entry(input, &mut out, &mut seen, &mut buf, meta, reader, &mut init_forks, &mut rel_files)?
            }
        }
        Ok(true)
    });
    if let Err(e) = result {
        if crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        // Object storage gone after the client's retries: exit 3, not a
        // damaged backup.
        let e = crate::source::fatal(e)?;
        out.findings.push(
            Finding::new(FindingKind::FileUnreadable, format!("the backup cannot be read past here: {e}"))
                .at(source.describe()),
        );
    }
    for (dir, node, path) in rel_files {
        if init_forks.contains(&(dir, node)) {
            out.unlogged.insert(path);
        }
    }
    if let Some(m) = input.manifest {
        report_missing(m, &seen, &mut out.findings)?;
    }
    out.findings.sort_by_path();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn stream_entry(
    input: &StreamCheck,
    out: &mut StreamOutcome,
    seen: &mut [u64],
    buf: &mut [u8],
    meta: &EntryMeta,
    reader: &mut dyn Read,
    init_forks: &mut HashSet<(String, String)>,
    rel_files: &mut Vec<(String, String, String)>,
) -> std::io::Result<()> {
    let rel = meta.shown();
    if !admit_entry(out, meta, &rel) {
        return Ok(());
    }
    if meta.kind != EntryKind::File {
        if Captured::wants(&rel).is_some() {
            out.captured.seen.insert(rel);
        }
        return Ok(());
    }
    let capture = Captured::wants(&rel);
    if is_ignored(meta.path.as_slice()) && capture.is_none() {
        return Ok(());
    }
    out.stats.files += u64::from(!is_ignored(&meta.path));
    let expected = check_listing(input, out, seen, meta, &rel);
    let parsed = relfile::relation_path(&rel);
    if let Some(r) = &parsed {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", &rel));
        if name.ends_with("_init") {
            init_forks.insert((dir.to_string(), r.node.to_string()));
        }
        rel_files.push((dir.to_string(), r.node.to_string(), rel.clone()));
    }
    let mut pass = EntryPass {
        sum: expected.map(|(alg, _)| Checksummer::new(alg)),
        scan: parsed.as_ref().map(|r| DeferredScan::new(r.first_block(ASSUMED_BLOCKS_PER_SEGMENT), input.floor)),
        kept: capture.map(|limit| (Vec::with_capacity(limit.min(meta.size) as usize), limit as usize)),
        bytes: 0,
    };
    if let Err(e) = pass.read_through(reader, buf) {
        out.findings.push(
            Finding::new(FindingKind::FileUnreadable, format!("read failed after {} bytes: {e}", pass.bytes)).at(rel),
        );
        return Err(e);
    }
    settle_entry(out, rel, pass, expected);
    Ok(())
}

/// Note a tablespace entry, and refuse a link anywhere else (a finding).
/// False when the entry is refused.
fn admit_entry(out: &mut StreamOutcome, meta: &EntryMeta, rel: &str) -> bool {
    let tablespace = rel.strip_prefix("pg_tblspc/").filter(|n| !n.contains('/'));
    if let Some(name) = tablespace {
        let (link, to) = match &meta.kind {
            EntryKind::Symlink(t) => (true, String::from_utf8_lossy(t).into_owned()),
            _ => (false, String::new()),
        };
        out.tablespaces.push((name.to_string(), link, to));
    }
    match &meta.kind {
        EntryKind::Symlink(to) if tablespace.is_none() => {
            out.findings.push(
                Finding::new(
                    FindingKind::EntryRefused,
                    format!(
                        "a symbolic link (to {}); a backup may hold links only as pg_tblspc/<oid>",
                        String::from_utf8_lossy(to)
                    ),
                )
                .at(rel),
            );
            false
        }
        _ => true,
    }
}

/// Compare the entry with its manifest line (listed, size); the checksum
/// to expect when there is one and the size agrees.
fn check_listing<'m>(
    input: &StreamCheck<'m>,
    out: &mut StreamOutcome,
    seen: &mut [u64],
    meta: &EntryMeta,
    rel: &str,
) -> Option<(ChecksumAlgorithm, &'m [u8])> {
    let listed = input.manifest.and_then(|m| m.find(&meta.path).map(|i| (i, m.get(i))));
    if let Some((i, _)) = listed {
        seen[i / 64] |= 1 << (i % 64);
    }
    if input.manifest.is_some() && listed.is_none() && !is_ignored(&meta.path) {
        out.findings.push(Finding::new(FindingKind::FileExtra, "in the backup but not listed in the manifest").at(rel));
    }
    let size_ok = listed.is_none_or(|(_, l)| l.size == meta.size);
    if let Some((_, l)) = listed.filter(|_| !size_ok) {
        out.findings.push(
            Finding::new(
                FindingKind::FileSize,
                format!("size {} in the backup but {} in the manifest", meta.size, l.size),
            )
            .at(l.display_path()),
        );
    }
    listed.and_then(|(_, l)| l.checksum).filter(|_| size_ok)
}

/// What one pass over an entry's bytes computes.
struct EntryPass {
    sum: Option<Checksummer>,
    scan: Option<DeferredScan>,
    /// The bytes kept of a small file pgdrill reads (label, pg_control…),
    /// up to the limit.
    kept: Option<(Vec<u8>, usize)>,
    bytes: u64,
}

impl EntryPass {
    fn read_through(&mut self, reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<()> {
        loop {
            if crate::signals::interrupted() {
                return Err(std::io::Error::other("interrupted by signal"));
            }
            let n = fill(reader, buf)?;
            self.bytes += n as u64;
            if let Some(s) = self.sum.as_mut() {
                s.update(&buf[..n]);
            }
            if let Some(s) = self.scan.as_mut() {
                s.feed(&buf[..n]);
            }
            if let Some((k, limit)) = self.kept.as_mut() {
                let room = limit.saturating_sub(k.len());
                k.extend_from_slice(&buf[..n.min(room)]);
            }
            if n < buf.len() {
                return Ok(());
            }
        }
    }
}

/// Count the entry, keep what was captured, judge its checksum, and keep
/// or count its page scan.
fn settle_entry(out: &mut StreamOutcome, rel: String, pass: EntryPass, expected: Option<(ChecksumAlgorithm, &[u8])>) {
    out.stats.files_read += 1;
    out.stats.bytes += pass.bytes;
    if let Some((k, _)) = pass.kept {
        if rel == crate::datadir::BACKUP_LABEL {
            // PostgreSQL's tar backups send the label first: from here on,
            // the torn-page floor is the backup's real start.
            if let Ok((_, f)) = crate::pg::label::BackupLabel::parse(&String::from_utf8_lossy(&k)) {
                out.floor = f.start_wal_location;
            }
        }
        out.captured.files.insert(rel.clone(), (k, pass.bytes));
    }
    if let (Some(s), Some((alg, digest))) = (pass.sum, expected) {
        out.stats.checksums += 1;
        compare_checksum(s, alg, digest, &rel, &mut out.findings);
    }
    if let Some(s) = pass.scan {
        out.stats.relation_files += 1;
        if s.worth_keeping() {
            out.deferred.push(DeferredFile { path: rel, scan: s });
        } else {
            let (pages, checksummed, torn) = s.counts();
            out.plain_pages.0 += pages;
            out.plain_pages.1 += checksummed;
            out.plain_pages.2 += torn;
        }
    }
}

impl FileStats {
    fn add(&mut self, o: &FileStats) {
        self.files += o.files;
        self.files_read += o.files_read;
        self.bytes += o.bytes;
        self.checksums += o.checksums;
        self.relation_files += o.relation_files;
        self.relation_pages += o.relation_pages;
        self.page_checksums += o.page_checksums;
        self.torn_pages += o.torn_pages;
    }
}

/// An entry of `pg_tblspc`, as a backup holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TablespaceEntryOnDisk {
    pub name: String,
    pub is_link: bool,
    /// For a link: whether it leads to a directory.
    pub exists: bool,
    pub target: String,
}

/// tablespace_map against `pg_tblspc`. With a map, they must agree both
/// ways: recovery makes `pg_tblspc/<oid>` a link for each line
/// (`read_tablespace_map()`), and an entry without a line is left as found.
/// Without one, every `pg_tblspc` link must lead somewhere.
pub fn check_tablespaces(root: &Path, map: Option<&[TablespaceEntry]>) -> Vec<Finding> {
    let dir = root.join("pg_tblspc");
    let mut entries = Vec::new();
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            let is_link = fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false);
            let exists = fs::metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
            let target = fs::read_link(&p).map(|t| t.display().to_string()).unwrap_or_default();
            entries.push(TablespaceEntryOnDisk { name, is_link, exists, target });
        }
    }
    tablespaces_against_map(&entries, map)
}

/// [`check_tablespaces`] over entries however they were found (a
/// directory, a tar backup's stream).
pub fn tablespaces_against_map(entries: &[TablespaceEntryOnDisk], map: Option<&[TablespaceEntry]>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut entries = entries.to_vec();
    entries.sort();
    for e in &entries {
        let rel = format!("pg_tblspc/{}", e.name);
        if e.is_link && !e.exists {
            findings.push(
                Finding::new(
                    FindingKind::TablespaceMissing,
                    format!("the tablespace link points to {}, which is not a directory", e.target),
                )
                .at(rel.clone()),
            );
        }
        if let Some(map) = map {
            let listed = e.name.parse::<u32>().ok().is_some_and(|oid| map.iter().any(|m| m.oid == oid));
            if !listed {
                findings.push(
                    Finding::new(
                        FindingKind::TablespaceMapMismatch,
                        "in pg_tblspc but not in tablespace_map: recovery will not link it to its location",
                    )
                    .at(rel),
                );
            }
        }
    }
    if let Some(map) = map {
        for m in map {
            if !entries.iter().any(|e| e.name == m.oid.to_string()) {
                findings.push(
                    Finding::new(
                        FindingKind::TablespaceMapMismatch,
                        format!(
                            "tablespace_map lists tablespace {} ({}), but pg_tblspc/{} is missing: its files are not in the backup",
                            m.oid, m.path, m.oid
                        ),
                    )
                    .at(format!("pg_tblspc/{}", m.oid)),
                );
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::manifest::{format_last_modified, Manifest, ManifestFile, WalRange};

    #[test]
    fn ignore_list_matches_whole_components() {
        for p in [
            "backup_manifest",
            "pg_wal",
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status/x.done",
            "postgresql.auto.conf",
            "standby.signal",
            "recovery.signal",
            "pgdrill_backup_incomplete",
        ] {
            assert!(is_ignored(p.as_bytes()), "{p}");
        }
        for p in ["pg_wal2", "base/1/pg_wal", "postgresql.conf", "backup_manifest.old", "pg_walx/1"] {
            assert!(!is_ignored(p.as_bytes()), "{p}");
        }
    }

    fn crc(b: &[u8]) -> Vec<u8> {
        crc32c::crc32c(b).to_le_bytes().to_vec()
    }

    fn mf(path: &str, bytes: &[u8]) -> ManifestFile {
        ManifestFile {
            path: path.as_bytes().to_vec(),
            size: bytes.len() as u64,
            last_modified: format_last_modified(0),
            checksum: Some((ChecksumAlgorithm::Crc32c, crc(bytes))),
        }
    }

    fn page(lsn: u64) -> Vec<u8> {
        let mut p = vec![0u8; 8192];
        p[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        p[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        p
    }

    #[test]
    fn compares_a_directory_with_its_manifest() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for dir in ["base/5", "global", "pg_wal", "pg_tblspc"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let rel: Vec<u8> = [page(0x100), page(0x900), page(0)].concat();
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("PG_VERSION", b"15\n".to_vec()),
            ("base/5/16384", rel.clone()),
            ("base/5/16385", b"abcdef".to_vec()),
            ("base/5/16386", b"same size".to_vec()),
            ("global/pg_control", vec![1u8; 8192]),
        ];
        for (p, b) in &files {
            fs::write(root.join(p), b).unwrap();
        }
        let mut m_files: Vec<ManifestFile> = files.iter().map(|(p, b)| mf(p, b)).collect();
        m_files.push(mf("base/5/gone", b"x"));
        m_files.push(mf("pg_wal/000000010000000000000001", b"not checked"));
        m_files.push(mf("postgresql.auto.conf", b"not checked"));
        // Tamper: truncate one, change the bytes of another, add an extra.
        fs::write(root.join("base/5/16385"), b"abc").unwrap();
        fs::write(root.join("base/5/16386"), b"SAME SIZE").unwrap();
        fs::write(root.join("base/5/extra"), b"?").unwrap();
        fs::write(root.join("backup_manifest"), b"ignored").unwrap();
        fs::write(root.join("standby.signal"), b"").unwrap();
        let text = Manifest::render(
            1,
            0,
            &m_files,
            &[WalRange { timeline: crate::pg::TimelineId(1), start: Lsn(1), end: Lsn(2) }],
        );
        let (_, m) = ManifestIndex::read(text.as_bytes(), 0, &|| false).unwrap();
        let run = |page_bound, jobs| {
            let mut fs = Findings::new();
            let input = FileCheck { root, manifest: Some(&m), page_bound, checksums: None, block_size: 8192, jobs };
            let stats = check(&input, &mut fs).unwrap();
            (fs.finish().0, stats)
        };
        for jobs in [1, 3] {
            let (f, stats) = run(Some(Lsn(0x500)), jobs);
            let got: Vec<(FindingKind, &str)> = f.iter().map(|x| (x.kind, x.path.as_deref().unwrap_or(""))).collect();
            assert_eq!(
                got,
                vec![
                    (FindingKind::PageLsnBeyondEnd, "base/5/16384"),
                    (FindingKind::FileSize, "base/5/16385"),
                    (FindingKind::FileChecksum, "base/5/16386"),
                    (FindingKind::FileExtra, "base/5/extra"),
                    (FindingKind::FileMissing, "base/5/gone"),
                ],
                "jobs {jobs}"
            );
            assert_eq!(f[0].lsn, Some(Lsn(0x900)));
            assert_eq!(stats.files, 6);
            // 16385 (truncated to 3 bytes) and 16386 (9 bytes) have no whole page.
            assert_eq!(stats.relation_pages, 3);
            // Not the truncated file: a size mismatch skips the checksum.
            assert_eq!(stats.checksums, 4);
        }
        // Without a bound, no page scan.
        let (f, _) = run(None, 2);
        assert!(!f.iter().any(|x| x.kind == FindingKind::PageLsnBeyondEnd));
    }

    #[test]
    fn tablespaces_must_match_the_map() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("pg_tblspc/16400")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/pgdrill", root.join("pg_tblspc/16500")).unwrap();
        let map = vec![
            TablespaceEntry { oid: 16400, path: "/srv/ts1".into() },
            TablespaceEntry { oid: 16600, path: "/srv/ts3".into() },
        ];
        let f = check_tablespaces(root, Some(&map));
        let got: Vec<(FindingKind, &str)> = f.iter().map(|x| (x.kind, x.path.as_deref().unwrap_or(""))).collect();
        assert_eq!(
            got,
            vec![
                (FindingKind::TablespaceMissing, "pg_tblspc/16500"),
                (FindingKind::TablespaceMapMismatch, "pg_tblspc/16500"),
                (FindingKind::TablespaceMapMismatch, "pg_tblspc/16600"),
            ]
        );
        let f = check_tablespaces(root, None);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, FindingKind::TablespaceMissing);
    }
}
