//! Restoring a tar-format backup (`base.tar[.gz|.lz4|.zst]`,
//! `<oid>.tar`, as `pg_basebackup -Ft` or `pgdrill backup --format tar`
//! write them).
//!
//! Restore's rule holds: everything is read and checked before anything is
//! written. A tar can only be read in order, so it is read twice:
//!
//! 1. [`list`]: every member's header (contents skipped, except the small
//!    files restore reads: pg_control, the label files, the configuration),
//!    into the same listing a directory gives; a member no backup may hold
//!    (a link, a hard link, a device, `..`, an absolute path) is refused,
//!    and the listing is compared with the manifest before a byte is
//!    written;
//! 2. [`extract`]: the members again, each written through the target's
//!    no-follow directory handles ([`crate::safefs::Dir::create_new`],
//!    never the tar crate's unpacking, which follows links and creates
//!    parents by path), its checksum compared with the manifest as it is
//!    written. An archive that changed between the passes (a member the
//!    listing did not have) is refused.
//!
//! `global/pg_control` is not extracted: restore writes it last, from the
//! bytes the listing read.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{Rel, SourceFile, NOT_RESTORED};
use crate::datadir::{Captured, CONTROL_PATH};
use crate::error::{Error, Result};
use crate::observe::Progress;
use crate::pg::manifest::{Checksummer, ManifestFile};
use crate::safefs::Dir;
use crate::server::OsUser;
use crate::source::{BackupSource, EntryKind, TarBackup, Visit};

/// What the first pass found.
pub(super) struct TarListing {
    pub(super) dirs: Vec<Rel>,
    pub(super) files: Vec<SourceFile>,
    /// Files not restored (still compared with the manifest).
    pub(super) skipped: Vec<SourceFile>,
    /// The tablespaces (`<oid>.tar`).
    pub(super) tablespaces: Vec<u32>,
    /// Members no backup may hold, described.
    pub(super) refused: Vec<String>,
    /// The small files restore reads.
    pub(super) captured: Captured,
}

/// Where a backup path goes: the data directory or a tablespace.
fn rel_of(path: &[u8], tablespaces: &[u32]) -> Rel {
    let text = String::from_utf8_lossy(path).into_owned();
    if let Some(rest) = text.strip_prefix("pg_tblspc/") {
        if let Some((oid, inner)) = rest.split_once('/') {
            if let Ok(oid) = oid.parse::<u32>() {
                if tablespaces.contains(&oid) {
                    return Rel { tablespace: Some(oid), path: PathBuf::from(inner) };
                }
            }
        }
    }
    Rel { tablespace: None, path: PathBuf::from(text) }
}

/// Whether a top-level name is not restored (see [`NOT_RESTORED`]).
fn not_restored(rel: &Rel) -> bool {
    if rel.tablespace.is_some() {
        return false;
    }
    let first = rel.path.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    NOT_RESTORED.contains(&first.as_str()) || crate::recovery::RECOVERY_FILES.contains(&first.as_str())
}

/// The small files a restore reads from the stream.
fn wanted(rel: &str) -> Option<u64> {
    Captured::wants(rel).or(match rel {
        "postgresql.conf" | "postgresql.auto.conf" => Some(1 << 20),
        _ => None,
    })
}

/// Pass 1: list the members, keep the small files. `tablespaces`: the
/// OIDs whose `pg_tblspc/<oid>/...` entries are a tablespace's.
pub(super) fn list(tar: &dyn BackupSource, tablespaces: Vec<u32>, root: &Path) -> Result<TarListing> {
    let mut l = TarListing {
        dirs: Vec::new(),
        files: Vec::new(),
        skipped: Vec::new(),
        tablespaces: tablespaces.clone(),
        refused: Vec::new(),
        captured: Captured { root: root.to_path_buf(), ..Captured::default() },
    };
    let read_err = |e| crate::source::read_error(tar.describe(), e);
    tar.stream(&mut |v| {
        match v {
            Visit::Refused { path, why } => l.refused.push(format!("{path}: {why}")),
            Visit::Entry(meta, reader) => {
                let rel = rel_of(&meta.path, &tablespaces);
                let shown = meta.shown();
                match &meta.kind {
                    EntryKind::Symlink(to) => l.refused.push(format!(
                        "{shown}: a symbolic link (to {}); a tar backup holds its tablespaces as <oid>.tar",
                        String::from_utf8_lossy(to)
                    )),
                    // The tablespace's own directory is made by restore.
                    EntryKind::Dir if rel.tablespace.is_some() && rel.path.as_os_str().is_empty() => {}
                    EntryKind::Dir
                        if shown.starts_with("pg_tblspc/")
                            && rel.tablespace.is_none()
                            && shown.matches('/').count() == 1 => {}
                    EntryKind::Dir => {
                        if !not_restored(&rel) {
                            l.dirs.push(rel);
                        }
                    }
                    EntryKind::File => {
                        if let Some(limit) = wanted(&shown) {
                            let mut kept = Vec::new();
                            reader.take(limit).read_to_end(&mut kept)?;
                            l.captured.files.insert(shown.clone(), (kept, meta.size));
                        }
                        let f = SourceFile { rel, size: meta.size };
                        if not_restored(&f.rel) {
                            l.skipped.push(f);
                        } else {
                            l.files.push(f);
                        }
                    }
                }
            }
        }
        Ok(true)
    })
    .map_err(read_err)?;
    if let Some((mut r, size)) = tar.open_manifest().map_err(read_err)? {
        let mut b = Vec::new();
        r.read_to_end(&mut b).map_err(read_err)?;
        l.captured.files.insert(crate::datadir::BACKUP_MANIFEST.to_string(), (b, size));
    }
    Ok(l)
}

/// Where pass 2 writes.
pub(super) struct Targets<'a> {
    pub(super) data: &'a Dir,
    /// Each tablespace's directory, by OID.
    pub(super) tablespaces: HashMap<u32, &'a Dir>,
    pub(super) owner: Option<&'a OsUser>,
}

/// What pass 2 wrote.
pub(super) struct Extracted {
    pub(super) files: usize,
    pub(super) bytes: u64,
    /// Files whose size and checksum were compared with the manifest.
    pub(super) checked: usize,
    /// Files that did not match the manifest, described.
    pub(super) bad: Vec<String>,
}

/// Create `rel`'s parent directories below `dir` (no links followed).
fn parents(dir: &Dir, rel: &Path, owner: Option<&OsUser>) -> std::io::Result<()> {
    let mut at = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        at.push(c);
        dir.create_dir(&at, 0o700, owner)?;
    }
    Ok(())
}

/// Pass 2: write every listed member into the target, but pg_control.
pub(super) fn extract(
    tar: &dyn BackupSource,
    files: &[SourceFile],
    tablespaces: &[u32],
    to: &Targets,
    manifest: &HashMap<Vec<u8>, &ManifestFile>,
    progress: &Progress,
) -> Result<Extracted> {
    let listed: HashSet<(Option<u32>, PathBuf)> =
        files.iter().map(|f| (f.rel.tablespace, f.rel.path.clone())).collect();
    let mut out = Extracted { files: 0, bytes: 0, checked: 0, bad: Vec::new() };
    let control = Rel { tablespace: None, path: PathBuf::from(CONTROL_PATH) };
    let mut buf = vec![0u8; 1 << 16];
    let mut failure: Option<Error> = None;
    let r = tar.stream(&mut |v| {
        let Visit::Entry(meta, reader) = v else {
            failure = Some(changed(tar));
            return Ok(false);
        };
        let rel = rel_of(&meta.path, tablespaces);
        let dst = match rel.tablespace {
            Some(oid) => to.tablespaces.get(&oid).copied(),
            None => Some(to.data),
        };
        let Some(dst) = dst else { return Ok(true) };
        match meta.kind {
            EntryKind::Dir if !not_restored(&rel) && !rel.path.as_os_str().is_empty() => {
                if let Err(e) = parents(dst, &rel.path, to.owner)
                    .and_then(|()| dst.create_dir(&rel.path, 0o700, to.owner).map(|_| ()))
                {
                    failure = Some(Error::io(dst.path().join(&rel.path), "create directory", e));
                    return Ok(false);
                }
            }
            EntryKind::File if rel != control && !not_restored(&rel) => {
                if !listed.contains(&(rel.tablespace, rel.path.clone())) {
                    failure = Some(changed(tar));
                    return Ok(false);
                }
                match write_one(dst, &rel, meta.mode & 0o777, reader, manifest, to.owner, &mut buf, progress) {
                    Ok((n, verdict)) => {
                        out.files += 1;
                        out.bytes += n;
                        match verdict {
                            Verdict::Unlisted => {}
                            Verdict::Matches => out.checked += 1,
                            Verdict::Differs => {
                                out.checked += 1;
                                out.bad.push(format!(
                                    "{}: the extracted file's size or checksum differs from the backup manifest",
                                    String::from_utf8_lossy(&rel.manifest_key())
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        failure = Some(e);
                        return Ok(false);
                    }
                }
            }
            _ => {}
        }
        Ok(true)
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if crate::signals::interrupted() {
        return Err(Error::Interrupted);
    }
    r.map_err(|e| crate::source::read_error(tar.describe(), e))?;
    Ok(out)
}

/// Extract `pg_wal.tar` (pg_basebackup `-X stream`) into the target's
/// `pg_wal`: the backup's own WAL, as PostgreSQL's documentation says to
/// restore a tar backup. Only WAL file names are written; anything else in
/// that archive is left out.
pub(super) fn extract_wal(tar: &TarBackup, data: &Dir, owner: Option<&OsUser>) -> Result<usize> {
    let mut n = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut failure = None;
    let r = tar.stream_wal(&mut |v| {
        let Visit::Entry(meta, reader) = v else { return Ok(true) };
        let shown = meta.shown();
        let Some(name) = shown.strip_prefix("pg_wal/") else { return Ok(true) };
        let is_wal = crate::pg::wal::WalFileKind::classify(name).is_some();
        if meta.kind != EntryKind::File || !is_wal || name.contains('/') {
            return Ok(true);
        }
        let rel = Rel { tablespace: None, path: PathBuf::from(&shown) };
        match write_one(data, &rel, 0o600, reader, &HashMap::new(), owner, &mut buf, &Progress::hidden()) {
            Ok(_) => n += 1,
            Err(e) => {
                failure = Some(e);
                return Ok(false);
            }
        }
        Ok(true)
    });
    if let Some(e) = failure {
        return Err(e);
    }
    r.map_err(|e| crate::source::read_error(tar.describe(), e))?;
    Ok(n)
}

fn changed(tar: &dyn BackupSource) -> Error {
    Error::BackupDamaged {
        path: PathBuf::from(tar.describe()),
        detail: "the archive changed while it was restored (a member the first reading did not have)".into(),
    }
}

enum Verdict {
    Unlisted,
    Matches,
    Differs,
}

/// Write one member through `dst`'s no-follow handles, with its manifest
/// checksum.
#[allow(clippy::too_many_arguments)]
fn write_one(
    dst: &Dir,
    rel: &Rel,
    mode: u32,
    reader: &mut dyn Read,
    manifest: &HashMap<Vec<u8>, &ManifestFile>,
    owner: Option<&OsUser>,
    buf: &mut [u8],
    progress: &Progress,
) -> Result<(u64, Verdict)> {
    let shown = dst.path().join(&rel.path);
    parents(dst, &rel.path, owner).map_err(|e| Error::io(&shown, "create directory", e))?;
    let mut f = dst.create_new(&rel.path, mode | 0o600, owner).map_err(|e| Error::io(&shown, "create file", e))?;
    let entry = manifest.get(&rel.manifest_key());
    let mut sum = entry.and_then(|e| e.checksum.as_ref()).map(|(alg, _)| Checksummer::new(*alg));
    let mut n = 0u64;
    loop {
        if crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        let k = crate::source::fill(reader, buf).map_err(|e| crate::source::read_error(&shown, e))?;
        if let Some(s) = sum.as_mut() {
            s.update(&buf[..k]);
        }
        f.write_all(&buf[..k]).map_err(|e| Error::io(&shown, "write", e))?;
        n += k as u64;
        progress.inc(k as u64);
        if k < buf.len() {
            break;
        }
    }
    let verdict = match entry {
        None => Verdict::Unlisted,
        Some(e) => {
            let digest_ok = match (&e.checksum, sum) {
                (Some((_, want)), Some(s)) => *want == s.finish(),
                _ => true,
            };
            if e.size == n && digest_ok {
                Verdict::Matches
            } else {
                Verdict::Differs
            }
        }
    };
    Ok((n, verdict))
}
