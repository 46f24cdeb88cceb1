//! The files of a backup against its `backup_manifest`, and the LSNs of
//! relation pages, in one read pass.
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
//! Files are read in parallel (`--jobs`), largest first, each in 1 MiB
//! chunks: the manifest checksum (hardware CRC-32C, or SHA-2) and, for
//! relation files, the page LSN scan of [`super::pages`] use the same bytes.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::Serialize;

use super::finding::{Finding, FindingKind};
use super::pages::{self, PageScan};
use crate::datadir::{BACKUP_MANIFEST, INCOMPLETE_MARKER};
use crate::error::{Error, Result};
use crate::pg::label::TablespaceEntry;
use crate::pg::manifest::{hex, ChecksumAlgorithm, Checksummer, Manifest};
use crate::pg::Lsn;

/// Paths pg_verifybackup never checks (`pg_verifybackup.c`, `main()`), plus
/// pgdrill's own incomplete marker, which gets a finding of its own.
pub const IGNORED: &[&str] =
    &[BACKUP_MANIFEST, "pg_wal", "postgresql.auto.conf", "recovery.signal", "standby.signal", INCOMPLETE_MARKER];

const CHUNK: usize = 1 << 20;

/// Whether a relative path is one of [`IGNORED`] or lies below one.
pub fn is_ignored(rel: &[u8]) -> bool {
    IGNORED.iter().any(|i| {
        let i = i.as_bytes();
        rel == i || (rel.len() > i.len() && rel.starts_with(i) && rel[i.len()] == b'/')
    })
}

/// What the file checks need.
pub struct FileCheck<'a> {
    pub root: &'a Path,
    pub manifest: Option<&'a Manifest>,
    /// Scan relation pages for LSNs above this point.
    pub page_bound: Option<Lsn>,
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
    /// Relation files whose page LSNs were scanned.
    pub relation_files: u64,
    /// Relation pages scanned.
    pub relation_pages: u64,
}

/// A regular file found on disk.
#[derive(Debug)]
struct DiskFile {
    rel: Vec<u8>,
    path: PathBuf,
    size: u64,
    /// A relation file whose pages prove something (not an unlogged fork).
    scan: bool,
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

/// List the regular files under `root`, following symbolic links, skipping
/// ignored paths. Problems (unreadable directories, dangling links) become
/// findings.
fn walk(root: &Path, findings: &mut Vec<Finding>) -> Result<Vec<DiskFile>> {
    let mut out = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = stack.pop() {
        if crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        let meta = match fs::metadata(&dir) {
            Ok(m) => m,
            Err(e) => {
                if rel.is_empty() {
                    return Err(Error::ReadInput { path: dir, source: e });
                }
                findings.push(
                    Finding::new(FindingKind::FileUnreadable, format!("cannot read directory: {e}")).at(display(&rel)),
                );
                continue;
            }
        };
        if !seen_dirs.insert((meta.dev(), meta.ino())) {
            continue; // a link loop
        }
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                if rel.is_empty() {
                    return Err(Error::ReadInput { path: dir, source: e });
                }
                findings.push(
                    Finding::new(FindingKind::FileUnreadable, format!("cannot list directory: {e}")).at(display(&rel)),
                );
                continue;
            }
        };
        let mut names: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for e in rd {
            match e {
                Ok(e) => names.push((e.file_name().as_bytes().to_vec(), e.path())),
                Err(e) => {
                    findings.push(
                        Finding::new(FindingKind::FileUnreadable, format!("cannot list directory: {e}"))
                            .at(display(&rel)),
                    );
                }
            }
        }
        names.sort();
        let utf8: Vec<&str> = names.iter().filter_map(|(n, _)| std::str::from_utf8(n).ok()).collect();
        let unlogged: HashSet<&str> = pages::unlogged_files(utf8.iter().copied()).into_iter().collect();
        for (name, path) in &names {
            let child = join_rel(&rel, name);
            if is_ignored(&child) {
                continue;
            }
            let meta = match fs::metadata(path) {
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
                stack.push((path.clone(), child));
            } else if meta.is_file() {
                let rel_str = std::str::from_utf8(&child).ok();
                let name_str = std::str::from_utf8(name).ok();
                let scan =
                    rel_str.is_some_and(pages::is_relation_path) && !name_str.is_some_and(|n| unlogged.contains(n));
                out.push(DiskFile { rel: child, path: path.clone(), size: meta.len(), scan });
            }
            // Sockets, FIFOs and devices are not files a manifest can list.
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// One file to read.
struct Job<'a> {
    file: &'a DiskFile,
    checksum: Option<(ChecksumAlgorithm, &'a [u8])>,
    scan: bool,
}

#[derive(Default)]
struct JobResult {
    findings: Vec<Finding>,
    bytes: u64,
    checksummed: bool,
    pages: u64,
    scanned: bool,
}

/// Fill `buf` from `f` as far as possible; the count is short only at EOF.
pub(crate) fn fill(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn run_job(job: &Job, bound: Lsn, block_size: u32, buf: &mut [u8], cancel: &AtomicBool) -> JobResult {
    let mut r = JobResult::default();
    let rel = display(&job.file.rel);
    let mut f = match File::open(&job.file.path) {
        Ok(f) => f,
        Err(e) => {
            r.findings.push(Finding::new(FindingKind::FileUnreadable, format!("cannot open: {e}")).at(rel));
            return r;
        }
    };
    let mut sum = job.checksum.map(|(alg, _)| Checksummer::new(alg));
    let mut scan = job.scan.then(|| PageScan::new(bound, block_size));
    loop {
        if cancel.load(Ordering::Relaxed) || crate::signals::interrupted() {
            cancel.store(true, Ordering::Relaxed);
            return r;
        }
        let n = match fill(&mut f, buf) {
            Ok(n) => n,
            Err(e) => {
                r.findings.push(
                    Finding::new(FindingKind::FileUnreadable, format!("read failed after {} bytes: {e}", r.bytes))
                        .at(rel),
                );
                return r;
            }
        };
        if n == 0 {
            break;
        }
        r.bytes += n as u64;
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
    if let (Some(s), Some((alg, expected))) = (sum, job.checksum) {
        r.checksummed = true;
        let got = s.finish();
        if got != expected {
            r.findings.push(
                Finding::new(
                    FindingKind::FileChecksum,
                    format!(
                        "checksum mismatch: {} in the manifest is {}, the file gives {}",
                        alg.name(),
                        hex(expected),
                        hex(&got)
                    ),
                )
                .at(rel.clone()),
            );
        }
    }
    if let Some(s) = scan {
        r.scanned = true;
        r.pages = s.pages;
        if s.beyond > 0 {
            r.findings.push(
                Finding::new(
                    FindingKind::PageLsnBeyondEnd,
                    format!(
                        "{} of {} pages carry LSNs above the end point {bound} (highest {} in block {}): \
                         pg_control was copied before this file, and recovery would call the copy consistent too early",
                        s.beyond, s.pages, s.max_lsn, s.max_block
                    ),
                )
                .at(rel)
                .lsn(s.max_lsn),
            );
        }
    }
    r
}

/// Compare the directory with the manifest and scan relation pages.
pub fn check(input: &FileCheck) -> Result<(Vec<Finding>, FileStats)> {
    let mut findings = Vec::new();
    let mut stats = FileStats::default();
    if input.manifest.is_none() && input.page_bound.is_none() {
        return Ok((findings, stats));
    }
    let files = walk(input.root, &mut findings)?;
    stats.files = files.len() as u64;
    let scan_pages = input.page_bound.is_some();

    let mut jobs: Vec<Job> = Vec::new();
    match input.manifest {
        Some(m) => {
            let on_disk: HashMap<&[u8], &DiskFile> = files.iter().map(|f| (f.rel.as_slice(), f)).collect();
            let mut listed: HashSet<&[u8]> = HashSet::with_capacity(m.files.len());
            for mf in &m.files {
                listed.insert(mf.path.as_slice());
                if is_ignored(&mf.path) {
                    continue;
                }
                let Some(df) = on_disk.get(mf.path.as_slice()) else {
                    findings.push(
                        Finding::new(FindingKind::FileMissing, "listed in the manifest but not on disk")
                            .at(mf.display_path()),
                    );
                    continue;
                };
                let scan = scan_pages && df.scan;
                if df.size != mf.size {
                    findings.push(
                        Finding::new(
                            FindingKind::FileSize,
                            format!("size {} on disk but {} in the manifest", df.size, mf.size),
                        )
                        .at(mf.display_path()),
                    );
                    if scan {
                        jobs.push(Job { file: df, checksum: None, scan });
                    }
                    continue;
                }
                let checksum = mf.checksum.as_ref().map(|(a, d)| (*a, d.as_slice()));
                if checksum.is_some() || scan {
                    jobs.push(Job { file: df, checksum, scan });
                }
            }
            for df in &files {
                if !listed.contains(df.rel.as_slice()) {
                    findings.push(
                        Finding::new(FindingKind::FileExtra, "on disk but not listed in the manifest")
                            .at(display(&df.rel)),
                    );
                    if scan_pages && df.scan {
                        jobs.push(Job { file: df, checksum: None, scan: true });
                    }
                }
            }
        }
        None => {
            jobs.extend(files.iter().filter(|f| f.scan).map(|f| Job { file: f, checksum: None, scan: true }));
        }
    }

    // Largest first keeps the workers busy until the end.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.file.size));
    let bound = input.page_bound.unwrap_or(Lsn(u64::MAX));
    let next = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let workers = input.jobs.clamp(1, jobs.len().max(1));
    let results: Vec<Vec<JobResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut buf = vec![0u8; CHUNK];
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        if cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        out.push(run_job(job, bound, input.block_size, &mut buf, &cancel));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    for r in results.into_iter().flatten() {
        stats.files_read += 1;
        stats.bytes += r.bytes;
        stats.checksums += u64::from(r.checksummed);
        if r.scanned {
            stats.relation_files += 1;
            stats.relation_pages += r.pages;
        }
        findings.extend(r.findings);
    }
    findings.sort_by(|a, b| (&a.path, a.kind).cmp(&(&b.path, b.kind)));
    Ok((findings, stats))
}

/// tablespace_map against `pg_tblspc`. With a map, they must agree both
/// ways: recovery makes `pg_tblspc/<oid>` a link for each line
/// (`read_tablespace_map()`), and an entry without a line is left as found.
/// Without one, every `pg_tblspc` link must lead somewhere.
pub fn check_tablespaces(root: &Path, map: Option<&[TablespaceEntry]>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let dir = root.join("pg_tblspc");
    let mut entries: Vec<(String, bool, bool)> = Vec::new(); // name, is link, target exists
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            let is_link = fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false);
            let exists = fs::metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
            entries.push((name, is_link, exists));
        }
    }
    entries.sort();
    for (name, is_link, exists) in &entries {
        let rel = format!("pg_tblspc/{name}");
        if *is_link && !exists {
            let target = fs::read_link(dir.join(name)).map(|t| t.display().to_string()).unwrap_or_default();
            findings.push(
                Finding::new(
                    FindingKind::TablespaceMissing,
                    format!("the tablespace link points to {target}, which is not a directory"),
                )
                .at(rel.clone()),
            );
        }
        if let Some(map) = map {
            let listed = name.parse::<u32>().ok().is_some_and(|oid| map.iter().any(|m| m.oid == oid));
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
            if !entries.iter().any(|(n, _, _)| *n == m.oid.to_string()) {
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
    use crate::pg::manifest::{format_last_modified, ManifestFile, WalRange};

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
        let m = Manifest::parse(text.as_bytes()).unwrap();
        for jobs in [1, 3] {
            let (f, stats) =
                check(&FileCheck { root, manifest: Some(&m), page_bound: Some(Lsn(0x500)), block_size: 8192, jobs })
                    .unwrap();
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
        let (f, _) =
            check(&FileCheck { root, manifest: Some(&m), page_bound: None, block_size: 8192, jobs: 2 }).unwrap();
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
