//! Command-line definitions (clap) and their conversion into the plain,
//! validated configs the capability modules take. Nothing here does work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backup::{preflight::PreflightConfig, BackupConfig, Method};
use crate::conn::ConnSpec;
use crate::error::{Error, Result};
use crate::verify::VerifyConfig;

/// Default parallelism: the number of cores.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

fn positive_jobs(jobs: Option<usize>) -> Result<usize> {
    match jobs {
        Some(0) => Err(Error::usage("--jobs must be at least 1", None)),
        Some(n) => Ok(n),
        None => Ok(default_jobs()),
    }
}

/// Base backups from a PostgreSQL hot standby, restores behind a consistency
/// gate, and offline verification.
#[derive(Debug, Parser)]
#[command(name = "pgdrill", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a data directory or backup holds: pg_control, backup_label,
    /// end point, needed WAL, manifest.
    Inspect(InspectArgs),
    /// Check that a backup can be taken from a standby and restored.
    Preflight(PreflightArgs),
    /// Take a base backup from a hot standby.
    Backup(BackupArgs),
    /// Check a backup (or stopped data directory) and its WAL chain offline.
    Verify(VerifyArgs),
    /// Run the whole job on a throwaway primary and standby: backup, verify,
    /// restore, gate, report.
    Demo(DemoArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A data directory or a backup directory.
    pub path: PathBuf,
    /// Print one JSON object (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work directory (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL bin directory.
    #[arg(long, env = "PGDRILL_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    pub keep: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// The standby: a conninfo string or URI (libpq rules; PG* variables and
    /// .pgpass apply).
    #[arg(long, env = "PGDRILL_STANDBY", value_name = "CONNINFO")]
    pub standby: String,
    /// The primary, to ask it about full_page_writes, WAL and archiving.
    #[arg(long, env = "PGDRILL_PRIMARY", value_name = "CONNINFO")]
    pub primary: Option<String>,
    /// Where the backup will go, to check free space.
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// The standby's data directory (default: ask the server).
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

impl PreflightArgs {
    pub fn to_config(&self) -> Result<PreflightConfig> {
        Ok(PreflightConfig {
            standby: ConnSpec::parse(&self.standby)?,
            primary: self.primary.as_deref().map(ConnSpec::parse).transpose()?,
            dest: self.dest.clone(),
            pgdata: self.pgdata.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The standby to back up: a conninfo string or URI.
    #[arg(long, env = "PGDRILL_STANDBY", value_name = "CONNINFO")]
    pub standby: String,
    /// Where to write the backup (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// The standby's data directory (default: ask the server).
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// The procedure.
    #[arg(long, value_enum, default_value = "label")]
    pub method: Method,
    /// The backup label.
    #[arg(long, default_value = "pgdrill")]
    pub label: String,
    /// Ask for an immediate restartpoint at the start instead of waiting for
    /// a spread one.
    #[arg(long)]
    pub fast: bool,
    /// Parallel copy workers (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Limit the copy to this many bytes per second (K, M, G suffixes).
    #[arg(long, value_name = "RATE")]
    pub max_rate: Option<String>,
    /// The primary: if the archive lacks the end segment, ask it for one WAL
    /// switch and wait for the archiver.
    #[arg(long, env = "PGDRILL_PRIMARY", value_name = "CONNINFO")]
    pub primary: Option<String>,
    /// The WAL archive directory, to check for the end segment directly.
    #[arg(long, value_name = "DIR")]
    pub wal_archive: Option<PathBuf>,
    /// Do not fsync the backup.
    #[arg(long)]
    pub no_sync: bool,
    #[arg(long)]
    pub json: bool,
}

impl BackupArgs {
    pub fn to_config(&self) -> Result<BackupConfig> {
        if self.label.len() > 1023 {
            return Err(Error::usage("--label is longer than 1023 bytes", None));
        }
        if self.label.contains('\n') {
            return Err(Error::usage("--label must be one line", None));
        }
        Ok(BackupConfig {
            standby: ConnSpec::parse(&self.standby)?,
            primary: self.primary.as_deref().map(ConnSpec::parse).transpose()?,
            dest: self.dest.clone(),
            pgdata: self.pgdata.clone(),
            method: self.method,
            label: self.label.clone(),
            fast: self.fast,
            jobs: positive_jobs(self.jobs)?,
            max_rate: self
                .max_rate
                .as_deref()
                .map(crate::copy::parse_rate)
                .transpose()
                .map_err(|m| Error::usage(m, Some("for example --max-rate 50M".into())))?,
            wal_archive: self.wal_archive.clone(),
            sync: !self.no_sync,
            quiet: self.json,
            allow_primary: false,
        })
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A pgdrill backup, a plain-format pg_basebackup backup, or a stopped
    /// data directory.
    pub path: PathBuf,
    /// Where to find WAL segments besides the backup's pg_wal.
    #[arg(long, value_name = "DIR")]
    pub wal_archive: Option<PathBuf>,
    /// Skip the WAL checks.
    #[arg(long)]
    pub no_wal: bool,
    /// Parallel checksum workers (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    pub fn to_config(&self) -> Result<VerifyConfig> {
        Ok(VerifyConfig {
            path: self.path.clone(),
            wal_archive: self.wal_archive.clone(),
            no_wal: self.no_wal,
            jobs: positive_jobs(self.jobs)?,
        })
    }
}
