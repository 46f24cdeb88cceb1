//! Where a backup is written: a local staging directory renamed into place
//! when complete, or an object-storage prefix where the manifest goes last.
//!
//! Object storage has no rename, so a backup there is made visible by
//! order instead: the prefix must be empty; the incomplete marker
//! (`pgdrill_backup_incomplete`) is the first object written; then the
//! directory list ([`DIRECTORIES`]: S3 has no empty directories, and a
//! restore needs `pg_wal`, `pg_notify` and the rest), the files, pg_control,
//! backup_label, tablespace_map and end_location (in the tar format: each
//! tablespace's archive, then `base.tar`, which holds those last files, each
//! archive one multipart upload); then `backup_manifest`,
//! the last object of the backup; then the marker is removed. Readers take
//! a prefix as a backup only with a manifest and without the marker, so an
//! upload interrupted at any point never looks valid: before the manifest
//! there is none, after it the marker still says incomplete. Each object
//! appears whole or not at all (a multipart upload that is not completed
//! leaves nothing). A failed backup removes what it wrote, marker last.

use std::path::{Path, PathBuf};

use crate::datadir::INCOMPLETE_MARKER;
use crate::error::{Error, Result};
use crate::objstore::{S3Config, S3Url, Store};
use crate::observe::{self, Level};
use crate::server::OsUser;

/// The object listing a backup's directories, one `MODE PATH` line each
/// (mode in octal), parents first.
pub const DIRECTORIES: &str = "pgdrill_directories";

/// `backup --dest s3://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Dest {
    pub url: S3Url,
    pub config: S3Config,
}

/// A backup's destination, opened.
pub(super) enum Dest<'a> {
    /// A staging directory (with its marker) renamed to `dest` when done.
    Local { staging: PathBuf, dest: PathBuf, owner: Option<&'a OsUser>, sync: bool },
    /// An object-storage prefix, with the marker written.
    S3(Store),
}

/// The text of [`DIRECTORIES`].
pub fn render_directories(dirs: &[(PathBuf, u32)]) -> String {
    dirs.iter().map(|(d, mode)| format!("{:04o} {}\n", mode & 0o7777, d.display())).collect()
}

impl<'a> Dest<'a> {
    /// Open the prefix and refuse one that holds anything, before the
    /// standby is asked for anything.
    pub(super) fn check_s3(dest: &S3Dest) -> Result<Store> {
        let store = Store::open(&dest.url, &dest.config)?;
        let found = store.list("")?;
        if found.iter().any(|o| o.name == INCOMPLETE_MARKER) {
            return Err(Error::IncompleteBackup { path: PathBuf::from(dest.url.to_string()) });
        }
        if !found.is_empty() {
            return Err(Error::TargetNotEmpty { path: PathBuf::from(dest.url.to_string()) });
        }
        Ok(store)
    }

    /// Write the marker: from now on the prefix is an incomplete backup.
    pub(super) fn prepare_s3(store: Store) -> Result<Dest<'a>> {
        store.put(INCOMPLETE_MARKER, b"this backup is incomplete\n".to_vec())?;
        Ok(Dest::S3(store))
    }

    /// Record the directories (object storage keeps none of its own).
    pub(super) fn create_tree(&self, dirs: &[(PathBuf, u32)]) -> Result<()> {
        match self {
            Dest::Local { staging, owner, .. } => {
                for (d, mode) in dirs {
                    // Group access (0750) is kept; nothing more than the owner's.
                    super::create_dirs(&staging.join(d), (mode & 0o750) | 0o700, *owner)?;
                }
                Ok(())
            }
            Dest::S3(store) => store.put(DIRECTORIES, render_directories(dirs).into_bytes()),
        }
    }

    /// Write one small file of the backup (pg_control, labels, manifest).
    pub(super) fn write_file(&self, rel: &Path, bytes: &[u8]) -> Result<()> {
        match self {
            Dest::Local { staging, owner, .. } => super::write_file(&staging.join(rel), bytes, 0o600, *owner),
            Dest::S3(store) => store.put(&rel_name(rel)?, bytes.to_vec()),
        }
    }

    /// Where the copy of `rel` goes.
    pub(super) fn target(&self, rel: &Path) -> Result<Target<'_>> {
        match self {
            Dest::Local { staging, .. } => Ok(Target::Local(staging.join(rel))),
            Dest::S3(store) => Ok(Target::S3(store, rel_name(rel)?)),
        }
    }

    /// The backup is complete: the manifest is written, drop the marker.
    pub(super) fn complete(&self) -> Result<()> {
        match self {
            Dest::Local { staging, dest, sync, .. } => super::complete(staging, dest, *sync),
            Dest::S3(store) => store.delete(INCOMPLETE_MARKER),
        }
    }

    /// Remove what a failed backup wrote, the marker last (so a cleanup
    /// that is itself cut short still leaves an incomplete backup).
    pub(super) fn abort(&self) {
        match self {
            Dest::Local { staging, .. } => {
                let _ = std::fs::remove_dir_all(staging);
            }
            Dest::S3(store) => {
                if let Err(e) = store.purge_for_cleanup(INCOMPLETE_MARKER) {
                    observe::note(
                        Level::Warn,
                        &format!("{}: could not remove the incomplete backup: {e}", store.url()),
                    );
                }
            }
        }
    }

    /// Where the backup is, for reports.
    pub(super) fn display(&self) -> PathBuf {
        match self {
            Dest::Local { dest, .. } => dest.clone(),
            Dest::S3(store) => PathBuf::from(store.url().to_string()),
        }
    }
}

/// Where one copied file goes.
pub(super) enum Target<'d> {
    Local(PathBuf),
    S3(&'d Store, String),
}

/// A relative path of the backup as an object name.
fn rel_name(rel: &Path) -> Result<String> {
    rel.to_str().map(str::to_string).ok_or_else(|| Error::UnsafeSource {
        path: rel.to_path_buf(),
        reason: "the name is not UTF-8, which an object name must be".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_render_mode_and_path_parents_first() {
        let dirs = vec![(PathBuf::from("base"), 0o40700), (PathBuf::from("base/1"), 0o750)];
        assert_eq!(render_directories(&dirs), "0700 base\n0750 base/1\n");
    }
}
