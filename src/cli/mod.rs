//! Command-line definitions (clap) and their conversion into the plain,
//! validated configs the capability modules take. Nothing here does work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backup::{preflight::PreflightConfig, BackupConfig, Method};
use crate::conn::ConnSpec;

/// Turns a conninfo string into a connection spec. Resolving one reads the
/// environment, service files and the password file, so this layer does
/// not do it itself: the binary passes [`ConnSpec::parse`].
pub type ConnResolver<'a> = &'a dyn Fn(&str) -> Result<ConnSpec>;
#[cfg(feature = "demo")]
use crate::drill::demo::DemoConfig;
use crate::drill::history::HistoryConfig;
use crate::drill::walkeep::WalKeepConfig;
use crate::drill::DrillConfig;
use crate::error::{Error, Result};
use crate::gate::{GateConfig, Then};
use crate::objstore::S3Config;
use crate::pg::Lsn;
use crate::recovery::StopAt;
use crate::restore::RestoreConfig;
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
    /// Show no progress and no notes on stderr (errors and warnings still).
    #[arg(short, long, global = true, conflicts_with = "verbose", display_order = 900)]
    pub quiet: bool,
    /// Show more notes on stderr (what each step does).
    #[arg(short, long, global = true, display_order = 901)]
    pub verbose: bool,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Restore a backup into a new data directory, then run the gate.
    Restore(RestoreArgs),
    /// Start a restored data directory with every client shut out, and open
    /// access once replay reaches the backup's end point.
    Gate(GateArgs),
    /// A restore drill in one command: preflight, backup, verify, restore,
    /// gate, checks, report.
    Drill(DrillArgs),
    /// Run the whole job on a throwaway primary and standby: backup, verify,
    /// restore, gate, report.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// List (or remove) archived WAL a verified backup no longer needs.
    WalKeep(WalKeepArgs),
    /// Serve as a restore_command: copy WAL file NAME from an archive
    /// directory (stored plain, .gz, .lz4 or .zst) to PATH, decompressed.
    /// Exit 0 when written, 1 when the archive has no such file.
    WalFetch(WalFetchArgs),
    /// Show the drills `drill --history FILE` recorded: pass/fail, step
    /// times, recovery time and its trend.
    History(HistoryArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write every page with --dir.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A data directory or a backup directory, or a backup in object
    /// storage (s3://BUCKET/PREFIX).
    pub path: PathBuf,
    #[command(flatten)]
    pub s3: S3Args,
    /// Print one JSON object (schema: docs/json.md).
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work directory (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL bin directory (default: pg_config --bindir, then the
    /// newest /usr/lib/postgresql/*/bin).
    #[arg(long, env = "PGDRILL_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Keep the work directory (and leave the restored copy running).
    /// Without it everything the demo created is removed, also from a
    /// --dir given.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "demo")]
impl DemoArgs {
    pub fn to_config(&self) -> DemoConfig {
        DemoConfig { dir: self.dir.clone(), pg_bin: self.pg_bin.clone(), keep: self.keep, quiet: false }
    }
}

/// `--method`: which backup procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// pg_backup_start/stop, pg_control copied last, backup_label written.
    Label,
    /// No backup functions, pg_control copied first, end_location recorded.
    Legacy,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Label => Method::Label,
            MethodArg::Legacy => Method::Legacy,
        }
    }
}

/// `--end-lsn`, `--target-lsn`: an LSN like `0/16B3748`.
fn lsn_arg(s: &str) -> std::result::Result<Lsn, String> {
    s.parse::<Lsn>().map_err(|e| e.to_string())
}

/// `--max-rate`: bytes per second like `50M`.
fn rate_arg(s: &str) -> std::result::Result<u64, String> {
    parse_rate(s)
}

/// Parse a rate like `50M`, `512k`, `1G` or `1048576` (bytes per second).
pub fn parse_rate(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 =
        num.trim().parse().map_err(|_| format!("invalid rate {text:?}: expected bytes per second like 50M"))?;
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("invalid rate {text:?}: must be positive"))
}

/// `--then`: what the restored server does at the end target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ThenArg {
    /// Stop exactly at the end target, paused, open read-only.
    Pause,
    /// End recovery at the end target, promote, open read-write.
    Promote,
    /// Keep following the WAL source, open read-only once past the end.
    Standby,
}

impl From<ThenArg> for Then {
    fn from(t: ThenArg) -> Then {
        match t {
            ThenArg::Pause => Then::Pause,
            ThenArg::Promote => Then::Promote,
            ThenArg::Standby => Then::Standby,
        }
    }
}

/// `drill --then`: a drill never follows production, so no `standby`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DrillThen {
    /// Stop exactly at the end target, paused, open read-only.
    Pause,
    /// End recovery at the end target, promote, open read-write (amcheck
    /// can then install itself).
    Promote,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The standby to back up: a conninfo string or URI.
    #[arg(long, env = "PGDRILL_STANDBY", value_name = "CONNINFO")]
    pub standby: String,
    /// The primary (for preflight and to push the end segment to the archive).
    #[arg(long, env = "PGDRILL_PRIMARY", value_name = "CONNINFO")]
    pub primary: Option<String>,
    /// The standby's data directory (default: ask the server).
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// Work directory for the backup and the restored copy (new or empty).
    #[arg(long, value_name = "DIR")]
    pub work: PathBuf,
    /// The WAL archive, a directory or s3://BUCKET/PREFIX: verify checks
    /// the WAL chain in it, and the restored copy replays from it
    /// (restore_command = cp, or pgdrill wal-fetch for compressed files
    /// and object storage) unless --restore-command is given. Required
    /// without --restore-command.
    #[arg(long, value_name = "DIR|URL", required_unless_present = "restore_command")]
    pub wal_archive: Option<PathBuf>,
    /// Back up into object storage (s3://BUCKET/PREFIX, an empty prefix)
    /// instead of the work directory; verify and restore then read the
    /// backup from there, and it is kept.
    #[arg(long, value_name = "URL")]
    pub backup_dest: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
    /// A restore_command of your own for the restored copy (for an archive
    /// that is not a directory). Without --wal-archive, verify then checks
    /// the backup's files but not its WAL chain.
    #[arg(long, value_name = "CMD")]
    pub restore_command: Option<String>,
    /// The backup procedure: label (pg_backup_start/stop, pg_control copied
    /// last) or legacy (no backup functions, pg_control copied first).
    #[arg(long, value_enum, default_value = "label")]
    pub method: MethodArg,
    /// SQL statements that must each return a single true value.
    #[arg(long, value_name = "FILE")]
    pub check_sql: Option<PathBuf>,
    /// The database --check-sql runs in.
    #[arg(long, value_name = "DB", default_value = "postgres")]
    pub check_db: String,
    /// Run amcheck on every btree index (and heap, 14+) where available.
    #[arg(long)]
    pub amcheck: bool,
    /// What the restored copy does at the end target: stay paused
    /// (read-only) or promote (read-write; lets amcheck install itself).
    #[arg(long, value_enum, default_value = "pause")]
    pub then: DrillThen,
    /// Port of the restored copy [default: the standby's port + 10000,
    /// else the next free one up to + 10009; counted down from the port -
    /// 10000 when that passes 65535].
    #[arg(long)]
    pub port: Option<u16>,
    /// Give up on the gate after this many seconds (exit 4).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
    /// Diagnose replay that makes no progress for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stall_secs: u64,
    /// Put tablespace OID of the restored copy at DIR, an absolute path,
    /// new or empty [default: WORK/restore.tblspc/OID]. Repeatable.
    #[arg(long, value_name = "OID=DIR")]
    pub tablespace_map: Vec<String>,
    /// Do not fsync the backup or the restored copy (faster; for tests).
    #[arg(long)]
    pub no_sync: bool,
    /// Fail the drill (exit 1) when the recovery time, copy + replay +
    /// open, is longer than SECS.
    #[arg(long, value_name = "SECS")]
    pub rto_target: Option<u64>,
    /// Append the drill as one JSON line to FILE (`pgdrill history FILE`
    /// shows the trend).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Write the drill's metrics to FILE in the Prometheus text format,
    /// for node_exporter's textfile collector (written to a temporary file
    /// and renamed).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// The `cluster` label of --history and --metrics [default: the
    /// standby's system identifier, else the previous metrics file's
    /// label, else HOST:PORT of --standby].
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Keep the backup and the restored copy (left running).
    #[arg(long)]
    pub keep: bool,
    /// Also write the report as JUnit XML (one test case per step).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// PostgreSQL bin directory of the standby's major.
    #[arg(long, env = "PGDRILL_PG_BIN", value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// OS user to run the restored server as when pgdrill runs as root
    /// [default: the owner of the backup, else postgres; not root: pgdrill's
    /// own user].
    #[arg(long, value_name = "USER")]
    pub os_user: Option<String>,
    /// Database role pgdrill connects as to the restored copy while the
    /// gate is shut, and for the checks [default: PGUSER, the server's OS
    /// user, postgres].
    #[arg(long, value_name = "ROLE")]
    pub db_user: Option<String>,
    /// Parallel copy and checksum workers (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Limit the backup's copy to this many bytes per second (K, M, G).
    #[arg(long, value_name = "RATE", value_parser = rate_arg)]
    pub max_rate: Option<u64>,
    #[command(flatten)]
    pub stop: TargetArgs,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

impl DrillArgs {
    pub fn to_config(&self, conn: ConnResolver) -> Result<DrillConfig> {
        let (end_lsn, stop_at) = self.stop.to_targets()?;
        if self.timeout == 0 {
            return Err(Error::usage("--timeout must be at least 1 second", None));
        }
        if self.stall_secs == 0 {
            return Err(Error::usage("--stall-secs must be at least 1 second", None));
        }
        if self.port == Some(0) {
            return Err(Error::usage("--port must be between 1 and 65535", None));
        }
        if self.rto_target == Some(0) {
            return Err(Error::usage("--rto-target must be at least 1 second", None));
        }
        if self.cluster.as_deref().is_some_and(|c| c.is_empty() || c.contains('\n')) {
            return Err(Error::usage("--cluster must be one non-empty line", None));
        }
        Ok(DrillConfig {
            standby: conn(&self.standby)?,
            primary: self.primary.as_deref().map(conn).transpose()?,
            pgdata: self.pgdata.clone(),
            work: self.work.clone(),
            wal_archive: self.wal_archive.clone(),
            backup_dest: match &self.backup_dest {
                Some(d) => Some(s3_location("--backup-dest", d)?.ok_or_else(|| {
                    Error::usage(
                        format!("--backup-dest {}: not an s3:// URL", d.display()),
                        Some("a local backup goes into --work; --backup-dest takes s3://BUCKET/PREFIX".into()),
                    )
                })?),
                None => None,
            },
            s3: self.s3.to_config()?,
            method: self.method.into(),
            check_sql: self.check_sql.clone(),
            check_db: self.check_db.clone(),
            amcheck: self.amcheck,
            then: match self.then {
                DrillThen::Pause => Then::Pause,
                DrillThen::Promote => Then::Promote,
            },
            // Without --port the drill chooses one (drill::port): the CLI
            // does no I/O.
            port: self.port,
            timeout: std::time::Duration::from_secs(self.timeout),
            keep: self.keep,
            pg_bin: self.pg_bin.clone(),
            os_user: self.os_user.clone(),
            db_user: self.db_user.clone(),
            jobs: positive_jobs(self.jobs)?,
            max_rate: self.max_rate,
            junit: self.junit.clone(),
            // -q and -v reach the progress sink main installs.
            quiet: false,
            end_lsn,
            stop_at,
            restore_command: self.restore_command.clone(),
            stall: std::time::Duration::from_secs(self.stall_secs),
            tablespace_map: parse_tablespace_map(&self.tablespace_map)?,
            sync: !self.no_sync,
            rto_target: self.rto_target.map(std::time::Duration::from_secs),
            cluster: self.cluster.clone(),
            history: self.history.clone(),
            metrics: self.metrics.clone(),
        })
    }
}

/// A command option: not empty, one line.
fn non_empty_command(option: &str, cmd: Option<&str>) -> Result<Option<String>> {
    match cmd {
        Some(c) if c.trim().is_empty() || c.contains('\n') => {
            Err(Error::usage(format!("{option} must be one non-empty line"), None))
        }
        other => Ok(other.map(str::to_string)),
    }
}

/// `--tablespace-map OID=DIR` values.
fn parse_tablespace_map(values: &[String]) -> Result<Vec<(u32, PathBuf)>> {
    let mut map = Vec::new();
    for m in values {
        let (oid, dir) =
            m.split_once('=').ok_or_else(|| Error::usage(format!("--tablespace-map {m:?}: expected OID=DIR"), None))?;
        let oid: u32 = oid
            .trim()
            .parse()
            .map_err(|_| Error::usage(format!("--tablespace-map {m:?}: {oid:?} is not an OID"), None))?;
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(Error::usage(format!("--tablespace-map {m:?}: the directory must be an absolute path"), None));
        }
        map.push((oid, dir));
    }
    Ok(map)
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The history file `drill --history FILE` appends to.
    pub file: PathBuf,
    /// How many of the newest drills to show.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
    pub last: usize,
    /// Compare each passing drill's recovery time with the median of up to
    /// N passing drills before it.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub baseline: usize,
    /// A recovery time more than PCT percent over that median is a
    /// regression.
    #[arg(long, value_name = "PCT", default_value_t = 25.0)]
    pub threshold: f64,
    /// Exit 1 when the newest drill is a regression.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Only the drills with this cluster label.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

/// The most rows `history` shows, and drills it compares with: memory
/// stays bounded whatever the file holds.
pub const HISTORY_MAX_ROWS: usize = 10_000;

impl HistoryArgs {
    pub fn to_config(&self) -> Result<HistoryConfig> {
        if self.last == 0 || self.last > HISTORY_MAX_ROWS {
            return Err(Error::usage(format!("--last must be between 1 and {HISTORY_MAX_ROWS}"), None));
        }
        if self.baseline == 0 || self.baseline > HISTORY_MAX_ROWS {
            return Err(Error::usage(format!("--baseline must be between 1 and {HISTORY_MAX_ROWS}"), None));
        }
        if !self.threshold.is_finite() || self.threshold < 0.0 {
            return Err(Error::usage("--threshold must be a percentage of 0 or more", None));
        }
        Ok(HistoryConfig {
            file: self.file.clone(),
            last: self.last,
            baseline: self.baseline,
            threshold_pct: self.threshold,
            fail_on_regression: self.fail_on_regression,
            cluster: self.cluster.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct WalKeepArgs {
    /// A backup (it must verify).
    pub backup: PathBuf,
    /// The WAL archive to list (files plain, .gz, .lz4 or .zst): a
    /// directory, or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "DIR|URL")]
    pub archive: Option<PathBuf>,
    /// Fetch WAL for the backup's verification with this command
    /// (PostgreSQL's restore_command contract), e.g. when the archive is
    /// kept by pgBackRest. Listing and removal still need --archive.
    #[arg(long, value_name = "CMD")]
    pub restore_command: Option<String>,
    /// Delete the listed files (default: a dry run). Requires --archive.
    #[arg(long, requires = "archive")]
    pub remove: bool,
    #[command(flatten)]
    pub s3: S3Args,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

impl WalKeepArgs {
    pub fn to_config(&self) -> Result<WalKeepConfig> {
        if let Some(a) = &self.archive {
            s3_location("--archive", a)?;
        }
        Ok(WalKeepConfig {
            s3: self.s3.to_config()?,
            backup: self.backup.clone(),
            archive: self.archive.clone(),
            restore_command: non_empty_command("--restore-command", self.restore_command.as_deref())?,
            remove: self.remove,
            jobs: default_jobs(),
        })
    }
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// The file PostgreSQL asks for (restore_command's %f).
    pub name: String,
    /// Where to write it (restore_command's %p).
    pub path: PathBuf,
    /// The archive: a directory, or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "DIR|URL")]
    pub archive: PathBuf,
    /// With an s3:// archive: a credential file pgdrill restore wrote for
    /// this OS user (mode 0600, owned by it; docs/design.md, "Credentials
    /// for a restored server"). Without it, the AWS chain.
    #[arg(long, value_name = "FILE")]
    pub s3_credentials: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Args,
}

impl WalFetchArgs {
    pub fn to_config(&self) -> Result<crate::source::fetch::WalFetchConfig> {
        if self.name.is_empty() || self.name.contains('/') || self.name.starts_with('.') {
            return Err(Error::usage(format!("{:?} is not a WAL file name", self.name), None));
        }
        s3_location("--archive", &self.archive)?;
        Ok(crate::source::fetch::WalFetchConfig {
            s3: self.s3.to_config()?,
            s3_credentials: self.s3_credentials.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
            archive: self.archive.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write pgdrill.1 and one page per command (pgdrill-backup.1, ...) here.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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
    /// The backup method you will use (it decides which functions the
    /// role must be allowed to call).
    #[arg(long, value_enum, default_value = "label")]
    pub method: MethodArg,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

impl PreflightArgs {
    pub fn to_config(&self, conn: ConnResolver) -> Result<PreflightConfig> {
        Ok(PreflightConfig {
            standby: conn(&self.standby)?,
            primary: self.primary.as_deref().map(conn).transpose()?,
            dest: self.dest.clone(),
            pgdata: self.pgdata.clone(),
            method: self.method.into(),
            copies: 1,
        })
    }
}

/// Where object storage is, for the commands that take `s3://` URLs.
/// Credentials never go here: they come from the environment, the AWS
/// profile, or the instance or container role.
#[derive(Clone, Debug, Default, Args)]
pub struct S3Args {
    /// An S3-compatible store (MinIO, Ceph RGW, ...), addressed path-style
    /// [default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's
    /// endpoint_url, else AWS].
    #[arg(long, value_name = "URL", help_heading = "Object storage")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region [default: AWS_REGION, AWS_DEFAULT_REGION, the
    /// profile, the instance's; us-east-1 with a custom endpoint].
    #[arg(long, value_name = "REGION", help_heading = "Object storage")]
    pub s3_region: Option<String>,
}

impl S3Args {
    pub fn to_config(&self) -> Result<S3Config> {
        if let Some(e) = &self.s3_endpoint {
            crate::pg::s3url::check_endpoint(e).map_err(|err| {
                Error::usage(
                    format!("--s3-endpoint: {err}"),
                    Some("for example --s3-endpoint http://127.0.0.1:9000".into()),
                )
            })?;
        }
        if let Some(r) = &self.s3_region {
            if r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(Error::usage(
                    format!("--s3-region {r:?} is not a region name"),
                    Some("for example --s3-region eu-west-1".into()),
                ));
            }
        }
        Ok(S3Config { endpoint: self.s3_endpoint.clone(), region: self.s3_region.clone(), keys: None })
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The standby to back up: a conninfo string or URI.
    #[arg(long, env = "PGDRILL_STANDBY", value_name = "CONNINFO")]
    pub standby: String,
    /// Where to write the backup (must not exist, or be empty): a
    /// directory, or s3://BUCKET/PREFIX (an empty prefix; the manifest is
    /// written last).
    #[arg(long, value_name = "DIR|URL")]
    pub dest: PathBuf,
    /// The standby's data directory (default: ask the server).
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// The procedure.
    #[arg(long, value_enum, default_value = "label")]
    pub method: MethodArg,
    /// The backup label.
    #[arg(long, default_value = "pgdrill")]
    pub label: String,
    /// Ask for an immediate restartpoint at the start instead of waiting for
    /// a spread one.
    #[arg(long)]
    pub fast: bool,
    /// Parallel copy workers (default: the number of cores; at least 4
    /// to object storage).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Limit the copy to this many bytes per second (K, M, G suffixes).
    #[arg(long, value_name = "RATE", value_parser = rate_arg)]
    pub max_rate: Option<u64>,
    /// The primary: if the archive lacks the end segment, ask it for one WAL
    /// switch and wait for the archiver.
    #[arg(long, env = "PGDRILL_PRIMARY", value_name = "CONNINFO")]
    pub primary: Option<String>,
    /// The WAL archive, a directory or s3://BUCKET/PREFIX: with --primary,
    /// the end segment must also be there, complete, before the backup
    /// reports it archived.
    #[arg(long, value_name = "DIR|URL")]
    pub wal_archive: Option<PathBuf>,
    /// With --primary: how long to wait for the end segment to reach the
    /// archive before exiting 4.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub archive_timeout: u64,
    /// Do not fsync the backup.
    #[arg(long)]
    pub no_sync: bool,
    #[command(flatten)]
    pub s3: S3Args,
    /// plain: a directory like the data directory; tar: base.tar,
    /// <oid>.tar per tablespace and backup_manifest, as pg_basebackup -Ft.
    #[arg(long, value_enum, default_value = "plain")]
    pub format: FormatArg,
    /// With --format tar: gzip, lz4 or zstd, with an optional :LEVEL
    /// (gzip 1-9, zstd 1-19); zstd compresses on --jobs threads.
    #[arg(long, value_name = "METHOD[:LEVEL]")]
    pub compress: Option<String>,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

/// `backup --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Plain,
    Tar,
}

/// An `s3://` URL given where a path may be, parsed; `None` for a path.
fn s3_location(option: &str, path: &std::path::Path) -> Result<Option<crate::objstore::S3Url>> {
    let Some(text) = path.to_str().filter(|t| crate::objstore::is_s3(t)) else { return Ok(None) };
    crate::objstore::S3Url::parse(text).map(Some).map_err(|e| {
        Error::usage(
            format!("{option} {text}: {e}"),
            Some("write s3://BUCKET/PREFIX; credentials come from the environment, the AWS profile or the role".into()),
        )
    })
}

impl BackupArgs {
    pub fn to_config(&self, conn: ConnResolver) -> Result<BackupConfig> {
        if self.label.len() > 1023 {
            return Err(Error::usage("--label is longer than 1023 bytes", None));
        }
        if self.label.contains('\n') {
            return Err(Error::usage("--label must be one line", None));
        }
        if self.archive_timeout == 0 {
            return Err(Error::usage("--archive-timeout must be at least 1 second", None));
        }
        let s3 = s3_location("--dest", &self.dest)?
            .map(|url| -> Result<_> { Ok(crate::backup::S3Dest { url, config: self.s3.to_config()? }) })
            .transpose()?;
        let format = match (self.format, &self.compress) {
            (FormatArg::Plain, None) => crate::backup::OutputFormat::Plain,
            (FormatArg::Plain, Some(_)) => {
                return Err(Error::usage(
                    "--compress needs --format tar",
                    Some("pass --format tar --compress zstd".into()),
                ))
            }
            (FormatArg::Tar, c) => crate::backup::OutputFormat::Tar(
                crate::source::CompressSpec::parse(c.as_deref().unwrap_or("none")).map_err(|m| {
                    Error::usage(format!("--compress: {m}"), Some("for example --compress zstd:3".into()))
                })?,
            ),
        };
        if let Some(a) = &self.wal_archive {
            s3_location("--wal-archive", a)?;
        }
        Ok(BackupConfig {
            s3_config: self.s3.to_config()?,
            standby: conn(&self.standby)?,
            primary: self.primary.as_deref().map(conn).transpose()?,
            dest: self.dest.clone(),
            s3: s3.clone(),
            pgdata: self.pgdata.clone(),
            method: self.method.into(),
            label: self.label.clone(),
            fast: self.fast,
            // Uploads wait on the network, not the CPU: at least 4 at once
            // (18 MiB of buffers each, docs/design.md).
            jobs: match (self.jobs, &s3) {
                (None, Some(_)) => default_jobs().max(4),
                _ => positive_jobs(self.jobs)?,
            },
            max_rate: self.max_rate,
            wal_archive: self.wal_archive.clone(),
            archive_timeout: std::time::Duration::from_secs(self.archive_timeout),
            sync: !self.no_sync,
            // -q and -v reach the progress sink main installs.
            quiet: false,
            allow_primary: false,
            format,
        })
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A pgdrill backup, a plain-format pg_basebackup backup, or a stopped
    /// data directory.
    pub path: PathBuf,
    /// Where to find WAL segments besides the backup's pg_wal: a directory
    /// of files stored plain, .gz, .lz4 or .zst, or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "DIR|URL")]
    pub wal_archive: Option<PathBuf>,
    /// Fetch WAL with this command, as PostgreSQL's restore_command does
    /// (%f the file name, %p the path to write it to; non-zero when
    /// absent), e.g. 'pgbackrest --stanza=main archive-get %f %p'. Asked
    /// after --wal-archive and before the backup's pg_wal.
    #[arg(long, value_name = "CMD")]
    pub restore_command: Option<String>,
    /// Skip the WAL checks.
    #[arg(long)]
    pub no_wal: bool,
    #[command(flatten)]
    pub s3: S3Args,
    /// Accept a backup without a backup_manifest (pgdrill and pg_basebackup
    /// 13+ write one; without this option its absence is an error).
    #[arg(long)]
    pub allow_missing_manifest: bool,
    /// Parallel checksum workers (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    pub fn to_config(&self) -> Result<VerifyConfig> {
        s3_location("the backup", &self.path)?;
        if let Some(a) = &self.wal_archive {
            s3_location("--wal-archive", a)?;
        }
        Ok(VerifyConfig {
            s3: self.s3.to_config()?,
            path: self.path.clone(),
            wal_archive: self.wal_archive.clone(),
            restore_command: non_empty_command("--restore-command", self.restore_command.as_deref())?,
            no_wal: self.no_wal,
            jobs: positive_jobs(self.jobs)?,
            allow_missing_manifest: self.allow_missing_manifest,
        })
    }
}

/// A recovery target: where replay stops and the gate opens. Never below
/// the backup's own end point (exit 2).
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct TargetArgs {
    /// Stop replay at this LSN and open there.
    #[arg(long, value_name = "LSN", value_parser = lsn_arg)]
    pub target_lsn: Option<Lsn>,
    /// Stop replay at the first commit after this time (a zone is required:
    /// `2026-11-29 14:04:05+00`, `2026-11-29T14:04:05Z`) and open there.
    #[arg(long, value_name = "TIMESTAMP")]
    pub target_time: Option<String>,
    /// Stop replay after the commit of this transaction and open there.
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<u64>,
    /// Stop replay at this restore point (pg_create_restore_point) and open there.
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,
}

impl TargetArgs {
    /// An LSN target, or a target by time, xid or name.
    pub fn to_targets(&self) -> Result<(Option<Lsn>, Option<StopAt>)> {
        if let Some(lsn) = self.target_lsn {
            return Ok((Some(lsn), None));
        }
        if let Some(t) = &self.target_time {
            let ts = crate::pg::timestamp::parse(t).ok_or_else(|| {
                Error::usage(
                    format!("--target-time {t:?}: not a timestamp with a time zone"),
                    Some("for example --target-time '2026-11-29 14:04:05+00'".into()),
                )
            })?;
            return Ok((None, Some(StopAt::Time(crate::pg::timestamp::render(&ts)))));
        }
        if let Some(x) = self.target_xid {
            return Ok((None, Some(StopAt::Xid(x))));
        }
        if let Some(n) = &self.target_name {
            // MAXFNAMELEN: a restore point's name is shorter than 64 bytes.
            if n.is_empty() || n.len() >= 64 {
                return Err(Error::usage(format!("--target-name {n:?}: a restore point name has 1 to 63 bytes"), None));
            }
            return Ok((None, Some(StopAt::Name(n.clone()))));
        }
        Ok((None, None))
    }
}

/// Options the gate shares with restore.
#[derive(Debug, Args)]
pub struct GateOptions {
    /// Give up after this many seconds: exit 4, server stopped, access
    /// never opened.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
    /// Diagnose replay that makes no progress for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stall_secs: u64,
    /// PostgreSQL bin directory of the backup's major.
    #[arg(long, env = "PGDRILL_PG_BIN", value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    /// OS user to run the server as when pgdrill runs as root [default: the
    /// owner of the backup or data directory, else postgres; not root:
    /// pgdrill's own user].
    #[arg(long, value_name = "USER")]
    pub os_user: Option<String>,
    /// Database role pgdrill connects as while the gate is shut [default:
    /// PGUSER, the server's OS user, postgres].
    #[arg(long, value_name = "ROLE")]
    pub db_user: Option<String>,
}

impl GateOptions {
    fn check(&self) -> Result<()> {
        if self.timeout == 0 {
            return Err(Error::usage("--timeout must be at least 1 second", None));
        }
        if self.stall_secs == 0 {
            return Err(Error::usage("--stall-secs must be at least 1 second", None));
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A pgdrill backup or a plain-format pg_basebackup backup of a standby
    /// (a directory, or s3://BUCKET/PREFIX).
    pub backup: PathBuf,
    /// The new data directory (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// A WAL archive to restore from: a directory (restore_command = cp,
    /// or pgdrill wal-fetch for compressed files), or s3://BUCKET/PREFIX
    /// (pgdrill wal-fetch with credentials handed to the server's OS user
    /// in a 0600 file beside the target). Conflicts with --restore-command.
    #[arg(long, value_name = "DIR|URL", conflicts_with = "restore_command")]
    pub wal_archive: Option<PathBuf>,
    /// A restore_command of your own. Conflicts with --wal-archive.
    #[arg(long, value_name = "CMD")]
    pub restore_command: Option<String>,
    /// Stream WAL from this server (by default the copy never streams from
    /// production). Its password is not written anywhere: give the server's
    /// OS user a .pgpass.
    #[arg(long, value_name = "CONNINFO")]
    pub primary_conninfo: Option<String>,
    /// The restored server's port [default: the backup's own `port`
    /// setting, else 5432; it must be free].
    #[arg(long)]
    pub port: Option<u16>,
    /// What the restored server does at the end target.
    #[arg(long, value_enum, default_value = "pause")]
    pub then: ThenArg,
    /// Copy and lock only; `pgdrill gate --pgdata DIR` starts it later.
    #[arg(long)]
    pub no_start: bool,
    /// Parallel copy workers (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Put tablespace OID at DIR (default: <target>.tblspc/OID).
    #[arg(long, value_name = "OID=DIR")]
    pub tablespace_map: Vec<String>,
    /// Do not fsync the copy.
    #[arg(long)]
    pub no_sync: bool,
    /// Restore without comparing the backup with its backup_manifest (file
    /// list, sizes, checksums, the manifest's own checksum). By default a
    /// backup that does not match is refused with exit 1.
    #[arg(long)]
    pub skip_manifest_check: bool,
    #[command(flatten)]
    pub stop: TargetArgs,
    #[command(flatten)]
    pub gate: GateOptions,
    #[command(flatten)]
    pub s3: S3Args,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

impl RestoreArgs {
    pub fn to_config(&self, conn: ConnResolver) -> Result<RestoreConfig> {
        self.gate.check()?;
        let (end_lsn, stop_at) = self.stop.to_targets()?;
        let map = parse_tablespace_map(&self.tablespace_map)?;
        if self.port == Some(0) {
            return Err(Error::usage("--port must be between 1 and 65535", None));
        }
        s3_location("the backup", &self.backup)?;
        if let Some(a) = &self.wal_archive {
            s3_location("--wal-archive", a)?;
        }
        Ok(RestoreConfig {
            s3: self.s3.to_config()?,
            backup: self.backup.clone(),
            target: self.target.clone(),
            wal_archive: self.wal_archive.clone(),
            restore_command: self.restore_command.clone(),
            primary_conninfo: self.primary_conninfo.as_deref().map(conn).transpose()?,
            then: self.then.into(),
            port: self.port,
            timeout: std::time::Duration::from_secs(self.gate.timeout),
            stall: std::time::Duration::from_secs(self.gate.stall_secs),
            no_start: self.no_start,
            os_user: self.gate.os_user.clone(),
            pg_bin: self.gate.pg_bin.clone(),
            db_user: self.gate.db_user.clone(),
            jobs: positive_jobs(self.jobs)?,
            tablespace_map: map,
            sync: !self.no_sync,
            skip_manifest_check: self.skip_manifest_check,
            end_lsn,
            stop_at,
            // -q and -v reach the progress sink main installs.
            quiet: false,
        })
    }
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The restored data directory.
    #[arg(long, value_name = "DIR")]
    pub pgdata: PathBuf,
    /// The end target [default: what an unfinished gate on the directory
    /// saved, else end_location, else derived from backup_label]. The same
    /// as --target-lsn.
    #[arg(
        long,
        value_name = "LSN",
        value_parser = lsn_arg,
        conflicts_with_all = ["target_lsn", "target_time", "target_xid", "target_name"]
    )]
    pub end_lsn: Option<Lsn>,
    #[command(flatten)]
    pub stop: TargetArgs,
    /// The WAL archive the copy restores from, to name missing segments.
    #[arg(long, value_name = "DIR")]
    pub wal_archive: Option<PathBuf>,
    /// What the server does at the end target [default: what an unfinished
    /// gate on the directory saved, else pause].
    #[arg(long, value_enum)]
    pub then: Option<ThenArg>,
    #[command(flatten)]
    pub gate: GateOptions,
    /// Print one JSON object on stdout instead of tables (schema:
    /// docs/json.md); errors too.
    #[arg(long)]
    pub json: bool,
}

impl GateArgs {
    pub fn to_config(&self) -> Result<GateConfig> {
        self.gate.check()?;
        let (target_lsn, stop_at) = self.stop.to_targets()?;
        Ok(GateConfig {
            pgdata: self.pgdata.clone(),
            end_lsn: self.end_lsn.or(target_lsn),
            stop_at,
            then: self.then.map(Then::from),
            timeout: std::time::Duration::from_secs(self.gate.timeout),
            stall: std::time::Duration::from_secs(self.gate.stall_secs),
            pg_bin: self.gate.pg_bin.clone(),
            os_user: self.gate.os_user.clone(),
            db_user: self.gate.db_user.clone(),
            wal_archive: self.wal_archive.clone(),
            // -q and -v reach the progress sink main installs.
            quiet: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50M"), Ok(50 << 20));
        assert_eq!(parse_rate("512k"), Ok(512 << 10));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        assert_eq!(parse_rate("4096"), Ok(4096));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("").is_err());
    }
}
