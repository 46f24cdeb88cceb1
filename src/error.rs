//! Errors and exit codes.
//!
//! Every failure is a variant with structured fields. The message says what
//! failed and where (lowercase, no trailing period); the cause is the
//! `#[source]`; [`Error::hint`] says what to do. [`Error::exit_code`] maps the
//! variant to the documented exit codes (docs/exit-codes.md):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | verification or consistency failure |
//! | 2 | usage or bad input |
//! | 3 | environment or runtime failure |
//! | 4 | timed out |

use std::path::PathBuf;

use crate::pg::conninfo::ConninfoError;
use crate::pg::control::ControlError;
use crate::pg::history::HistoryError;
use crate::pg::label::LabelError;
use crate::pg::manifest::ManifestError;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_RUNTIME: u8 = 3;
pub const EXIT_TIMEOUT: u8 = 4;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Usage { message: String, hint: Option<String> },

    #[error("{path}: not a PostgreSQL data directory or backup: {reason}")]
    NotADataDir { path: PathBuf, reason: String },

    #[error("cannot read {path}")]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {action} failed")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: invalid pg_control")]
    Control {
        path: PathBuf,
        #[source]
        source: ControlError,
    },

    #[error("{}: invalid {}", .path.display(), backup_file_kind(.path))]
    Label {
        path: PathBuf,
        #[source]
        source: LabelError,
    },

    #[error("{path}: invalid backup manifest")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },

    #[error("{path}: invalid timeline history file")]
    History {
        path: PathBuf,
        #[source]
        source: HistoryError,
    },

    #[error("{path}: the target is not empty")]
    TargetNotEmpty { path: PathBuf },

    #[error("{path}: a postmaster (pid {pid}) is running on this data directory")]
    PostmasterRunning { path: PathBuf, pid: i32 },

    #[error("PostgreSQL {major} binaries not found")]
    BinariesNotFound { major: u32, searched: Vec<PathBuf> },

    #[error("{bindir}: these are PostgreSQL {found} binaries, but the data is from PostgreSQL {wanted}")]
    WrongBinaries { bindir: PathBuf, found: u32, wanted: u32 },

    #[error("OS user {user:?} not found")]
    NoSuchUser { user: String },

    #[error("PostgreSQL cannot run as root, and no other OS user owns {path}")]
    NeedOsUser { path: PathBuf },

    /// Connection settings that are malformed, or ask for what pgdrill
    /// cannot do (the message names the keyword).
    #[error(transparent)]
    Conninfo(#[from] ConninfoError),

    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: ConnectFailure,
    },

    #[error("{what} failed on {target}")]
    Sql {
        target: String,
        what: String,
        #[source]
        source: postgres::Error,
    },

    #[error("{message}")]
    Precondition { message: String, hint: String },

    #[error("the standby was promoted during the backup; the backup must not be used")]
    StandbyPromoted { detail: String },

    #[error("{program} failed: {message}")]
    Program { program: String, message: String, log: Option<PathBuf> },

    #[error("the server stopped: {message}")]
    ServerDied { message: String, log: PathBuf, consistency: bool },

    #[error("{path}: the backup is damaged: {detail}")]
    BackupDamaged { path: PathBuf, detail: String },

    #[error("{message}")]
    NotConsistent { message: String, hint: String },

    #[error("timed out after {secs} s: {message}")]
    Timeout { secs: u64, message: String, hint: String },

    #[error("interrupted by signal")]
    Interrupted,

    #[error("interrupted by signal; the server of {} was stopped and access never opened", pgdata.display())]
    GateInterrupted { pgdata: PathBuf },

    #[error("{}: another pgdrill gate is running on this data directory", pgdata.display())]
    GateBusy { pgdata: PathBuf },

    #[error("{}: unreadable gate state: {message}", path.display())]
    GateState { path: PathBuf, message: String },
    /// Replay on a hot standby cancelled a statement, and retrying did not
    /// help.
    #[error("{step} on {target} was cancelled by a conflict with recovery: {detail}")]
    RecoveryConflict {
        target: String,
        step: String,
        detail: String,
        /// `max_standby_streaming_delay` and `max_standby_archive_delay`,
        /// as the standby reports them.
        delays: String,
        hot_standby_feedback: String,
    },

    #[error("{path} is not the data directory of the server at {target}: {reason}")]
    WrongDataDirectory { path: PathBuf, target: String, reason: String },

    #[error("{path}: the backup is incomplete: it was interrupted")]
    IncompleteBackup { path: PathBuf },

    /// Something in a data directory pgdrill refuses to read (as root it
    /// would leak what the owner cannot read).
    #[error("refusing to copy {path}: {reason}")]
    UnsafeSource { path: PathBuf, reason: String },

    #[error("the role {role} on {target} lacks privileges the backup needs: {missing}")]
    MissingPrivileges { target: String, role: String, missing: String, grants: Vec<String> },

    #[error("{target} accepts no connections: {message}")]
    NotAcceptingConnections { target: String, message: String },

    #[error("{url}: not a valid object storage URL")]
    BadS3Url {
        url: String,
        #[source]
        source: crate::pg::s3url::UrlError,
    },

    /// A request to object storage failed after the client's retries.
    #[error("{url}: {action} failed")]
    ObjectStore {
        url: String,
        action: &'static str,
        #[source]
        source: object_store::Error,
    },

    #[error("object storage: {message}")]
    ObjectStoreSetup { message: String },

    #[error("s3://{bucket}: no such bucket")]
    NoSuchBucket { bucket: String },

    /// A credential file handed over for object storage that this user
    /// must not trust or cannot use.
    #[error("{path}: refusing the credential file: {reason}")]
    CredentialFile { path: PathBuf, reason: String },

    #[error("{url}: the object is {size} bytes, more than the {limit} this file may have")]
    ObjectTooLarge { url: String, size: u64, limit: u64 },

    /// `wal-fetch`: the archive has no such file (restore_command's
    /// "absent", exit 1; PostgreSQL asks past the archive's end as a
    /// matter of course).
    #[error("no such file in the archive {}: {name}", archive.display())]
    WalNotArchived { archive: PathBuf, name: String },
}

/// Which of the backup's own files a path names, for messages.
fn backup_file_kind(path: &std::path::Path) -> &'static str {
    match path.file_name().and_then(|n| n.to_str()) {
        Some("backup_label") => "backup_label",
        Some("end_location") => "end_location",
        Some("tablespace_map") => "tablespace_map",
        Some(n) if n.ends_with(".backup") => "backup history file",
        _ => "backup label",
    }
}

/// Why a connection could not be made: what happened at each server
/// tried, in order.
#[derive(Debug)]
pub struct ConnectFailure {
    pub attempts: Vec<ConnectAttempt>,
    /// What to do, when the failure says more than "unreachable".
    pub hint: Option<String>,
}

/// One server tried (`host:port`), and why it was not used.
#[derive(Debug)]
pub struct ConnectAttempt {
    pub server: String,
    pub reason: String,
    /// The SQLSTATE when the server itself refused (`57P03` for a standby
    /// that takes no connections, `28P01` for a wrong password, ...).
    pub sqlstate: Option<String>,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for ConnectFailure {
    /// One server: `server: reason` (the details follow as the cause).
    /// Several: each with its details, separated by `; `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let [one] = self.attempts.as_slice() {
            return write!(f, "{}: {}", one.server, one.reason);
        }
        let parts: Vec<String> = self
            .attempts
            .iter()
            .map(|a| match &a.source {
                Some(s) => format!("{}: {}: {s}", a.server, a.reason),
                None => format!("{}: {}", a.server, a.reason),
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for ConnectFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.attempts.as_slice() {
            [one] => one.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

impl Error {
    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Error {
        Error::Usage { message: message.into(), hint: hint.into() }
    }

    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), action, source }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            // An input this user may not read is the environment (run as
            // root or as its owner), not bad input.
            Error::ReadInput { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => EXIT_RUNTIME,
            Error::Usage { .. }
            | Error::NotADataDir { .. }
            | Error::ReadInput { .. }
            | Error::Control { .. }
            | Error::Label { .. }
            | Error::Manifest { .. }
            | Error::History { .. }
            | Error::TargetNotEmpty { .. }
            | Error::PostmasterRunning { .. }
            | Error::WrongBinaries { .. }
            | Error::NoSuchUser { .. }
            | Error::NeedOsUser { .. }
            | Error::Conninfo(_)
            | Error::WrongDataDirectory { .. }
            | Error::IncompleteBackup { .. }
            | Error::BadS3Url { .. }
            | Error::NoSuchBucket { .. }
            | Error::ObjectTooLarge { .. }
            | Error::ObjectStore { source: object_store::Error::NotFound { .. }, .. } => EXIT_USAGE,
            Error::NotConsistent { .. } | Error::BackupDamaged { .. } | Error::WalNotArchived { .. } => EXIT_FAILED,
            Error::ServerDied { consistency: true, .. } => EXIT_FAILED,
            Error::Timeout { .. } => EXIT_TIMEOUT,
            Error::Io { .. }
            | Error::BinariesNotFound { .. }
            | Error::Connect { .. }
            | Error::Sql { .. }
            | Error::Precondition { .. }
            | Error::StandbyPromoted { .. }
            | Error::Program { .. }
            | Error::ServerDied { .. }
            | Error::Interrupted
            | Error::GateInterrupted { .. }
            | Error::GateBusy { .. }
            | Error::GateState { .. }
            | Error::RecoveryConflict { .. }
            | Error::UnsafeSource { .. }
            | Error::MissingPrivileges { .. }
            | Error::NotAcceptingConnections { .. }
            | Error::ObjectStore { .. }
            | Error::ObjectStoreSetup { .. }
            | Error::CredentialFile { .. } => EXIT_RUNTIME,
        }
    }

    /// What the user should do about it; `None` when there is no advice
    /// (an empty hint prints no `hint:` line).
    pub fn hint(&self) -> Option<String> {
        self.advice().filter(|h| !h.trim().is_empty())
    }

    fn advice(&self) -> Option<String> {
        Some(match self {
            Error::Usage { hint, .. } => return hint.clone(),
            Error::NotADataDir { .. } => {
                "point at a data directory or a backup directory (one that holds global/pg_control)".into()
            }
            Error::ReadInput { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                "run pgdrill as root or as the owner of the files".into()
            }
            Error::ReadInput { .. } => "check the path and that this user may read it".into(),
            Error::Io { .. } => "check free space and permissions".into(),
            Error::Control { source: ControlError::UnknownVersion { .. }, .. } => {
                format!("this release of pgdrill supports {}", crate::pg::version::supported_text())
            }
            Error::Control { source: ControlError::WrongByteOrder { .. }, .. } => {
                "the file comes from a machine with the other byte order; read it there".into()
            }
            Error::Control { .. } => "the file is damaged; use another backup".into(),
            Error::Label { source: LabelError::Incremental { .. }, .. } => {
                "run pg_combinebackup on the incremental backup and its prior backups, then use the result".into()
            }
            Error::Label { .. } => "the backup is damaged or was edited; use another backup".into(),
            Error::Manifest { .. } => "the manifest is damaged; use another backup".into(),
            Error::History { .. } => "restore the history file from the WAL archive".into(),
            Error::TargetNotEmpty { .. } => "choose a new or empty directory".into(),
            Error::PostmasterRunning { .. } => "stop that server first".into(),
            Error::BinariesNotFound { major, searched } => format!(
                "pass --pg-bin DIR (or set PGDRILL_PG_BIN) to a PostgreSQL {major} bin directory; searched: {}; \
                 `just pg {major}` installs one into .cache/pg/{major}",
                searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            Error::WrongBinaries { wanted, .. } => format!("pass --pg-bin with PostgreSQL {wanted} binaries"),
            Error::NoSuchUser { .. } => "pass an existing user with --os-user".into(),
            Error::NeedOsUser { .. } => "pass --os-user USER (for example postgres)".into(),
            Error::Conninfo(e) => return e.hint(),
            Error::Connect { source, .. } => source.hint.clone().unwrap_or_else(|| {
                "check the conninfo, PGHOST/PGPORT/PGUSER and .pgpass, and that the server is running".into()
            }),
            Error::Sql { source, .. } => return sql_hint(source),
            Error::Precondition { hint, .. } => hint.clone(),
            Error::StandbyPromoted { .. } => "take a new backup from a standby".into(),
            Error::Program { log: Some(log), .. } => format!("see the log {}", log.display()),
            Error::Program { .. } => return None,
            Error::ServerDied { log, .. } => format!("see the server log {}", log.display()),
            Error::BackupDamaged { .. } => "run pgdrill verify on the backup, and restore another one".into(),
            Error::NotConsistent { hint, .. } => hint.clone(),
            Error::Timeout { hint, .. } => hint.clone(),
            Error::Interrupted => "run the command again".into(),
            Error::GateBusy { .. } => {
                "wait for it to finish, or stop it (it leaves the directory locked and resumable)".into()
            }
            Error::GateState { .. } => "remove it only if you know the original pg_hba.conf is in place".into(),
            Error::GateInterrupted { pgdata } => {
                format!("the copy stays locked; run `pgdrill gate --pgdata {}` to resume", pgdata.display())
            }
            Error::RecoveryConflict { delays, hot_standby_feedback, .. } => format!(
                "replay cancels a standby's statement when it must remove row versions the statement could \
                 still see; the standby has {delays} and hot_standby_feedback = {hot_standby_feedback}: set \
                 hot_standby_feedback = on, or raise max_standby_streaming_delay (and \
                 max_standby_archive_delay when it restores from an archive), reload it, and run the backup again"
            ),
            Error::WrongDataDirectory { .. } => "pass the connected standby's own data directory with --pgdata \
                 (pgdrill must run on the standby's host), or connect to the server that runs on this directory"
                .into(),
            Error::IncompleteBackup { .. } => {
                "pgdrill was stopped while writing it; remove the directory and take the backup again".into()
            }
            Error::UnsafeSource { .. } => "remove it from the data directory: pgdrill follows only the pg_tblspc \
                 links of tablespaces in pg_tablespace, and as root reads only what the data directory's owner owns"
                .into(),
            Error::MissingPrivileges { grants, .. } => {
                format!("run on the primary (grants reach the standby by replication): {}", grants.join(" "))
            }
            Error::WalNotArchived { .. } => return None,
            Error::NotAcceptingConnections { .. } => "if it is a standby, set hot_standby = on in its configuration \
                 and restart it; otherwise wait until it has finished starting up"
                .into(),
            Error::BadS3Url { .. } => "write s3://BUCKET/PREFIX (credentials come from the environment, \
                 the AWS profile or the instance's role, never from the URL)"
                .into(),
            Error::ObjectStore { source, .. } => return object_store_hint(source),
            Error::ObjectStoreSetup { .. } => "check --s3-endpoint (or AWS_ENDPOINT_URL) and --s3-region".into(),
            Error::NoSuchBucket { .. } => "check the bucket's name, and --s3-endpoint and --s3-region (or \
                 AWS_ENDPOINT_URL and AWS_REGION): another store or region may hold it"
                .into(),
            Error::CredentialFile { .. } => "pgdrill writes it for the restored server's OS user (mode 0600, owned \
                 by that user, outside the data directory); restore again rather than editing it"
                .into(),
            Error::ObjectTooLarge { .. } => "the backup is damaged or is not a backup; use another one".into(),
        })
    }

    /// The SQLSTATE of a failed statement, if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Sql { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// The full chain of causes, outermost first.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.to_string()];
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push(e.to_string());
            cur = e.source();
        }
        out
    }
}

/// Advice for a failed object-storage request, by what the store answered.
fn object_store_hint(source: &object_store::Error) -> Option<String> {
    use object_store::Error as E;
    let answered = |code| store_answered(source, code);
    if ["SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken", "InvalidToken"].into_iter().any(answered) {
        return Some(
            "the store refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or \
             the role, and this machine's clock"
                .into(),
        );
    }
    if answered("AccessDenied") {
        return object_store_hint(&E::PermissionDenied { path: String::new(), source: "AccessDenied".into() });
    }
    Some(match source {
        E::NotFound { .. } => "check the bucket and prefix (`aws s3 ls` with the same endpoint lists them)".into(),
        E::PermissionDenied { .. } => "the credentials lack a permission: docs/fleet.md lists the IAM actions each \
                                       command needs (s3:ListBucket, s3:GetObject; s3:PutObject and \
                                       s3:AbortMultipartUpload to write; s3:DeleteObject for wal-keep --remove)"
            .into(),
        E::Unauthenticated { .. } => "the store refused the credentials: check AWS_ACCESS_KEY_ID and \
                                      AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the role, and the clock"
            .into(),
        E::Precondition { .. } => "the object changed while it was read; run the command again".into(),
        _ => "check that the store is reachable (--s3-endpoint or AWS_ENDPOINT_URL, proxies), the bucket exists \
              and the credentials are valid (environment, AWS_PROFILE, or the instance or container role); \
              requests were retried with backoff before giving up"
            .into(),
    })
}

/// Advice for a failed statement, by its SQLSTATE: what a privilege error
/// needs is not what a recovery conflict or a shutdown needs.
fn sql_hint(source: &postgres::Error) -> Option<String> {
    let db = source.as_db_error();
    let code = source.code().map(|c| c.code()).unwrap_or("");
    let message = db.map(|d| d.message()).unwrap_or("");
    Some(match code {
        "42501" => "the role lacks a privilege: `pgdrill preflight` with the same options lists the GRANT \
                    statements it needs"
            .into(),
        "40001" | "40P01" if message.contains("conflict with recovery") => {
            "replay on the standby cancelled the statement: set hot_standby_feedback = on on the standby, or raise \
             max_standby_streaming_delay (and max_standby_archive_delay)"
                .into()
        }
        "57P04" => "the database pgdrill is connected to was dropped on the primary; connect to another one".into(),
        "57014" => "a statement_timeout or a cancel request stopped the statement; check statement_timeout for the \
                    role and database"
            .into(),
        "57P01" | "57P02" | "57P03" => "the server is shutting down or starting up; run the command again once it \
                                        accepts connections"
            .into(),
        c if c.starts_with("08") => "the connection to the server was lost; check that it is running".into(),
        "42883" => "the server lacks a function pgdrill calls; check that it runs a supported PostgreSQL major".into(),
        "55000" => "the server is not in the state this step needs; see the message above".into(),
        "53100" => "the server's disk is full".into(),
        _ => return None,
    })
}

/// Whether the store's answer behind `e` carried this S3 error code (the
/// client keeps the answer's body as text only).
pub(crate) fn store_answered(e: &object_store::Error, code: &str) -> bool {
    let needle = format!("<Code>{code}</Code>");
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if format!("{err:?}").contains(&needle) {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hints_are_no_hints_and_label_errors_name_the_file() {
        let e = Error::Precondition { message: "m".into(), hint: String::new() };
        assert_eq!(e.hint(), None);
        let e = Error::Label { path: PathBuf::from("/b/end_location"), source: LabelError::MissingLine { key: "x" } };
        assert_eq!(e.to_string(), "/b/end_location: invalid end_location");
    }

    #[test]
    fn a_recovery_conflict_names_the_settings() {
        let e = Error::RecoveryConflict {
            target: "host=/tmp port=5432 user=u".into(),
            step: "the backup-start call".into(),
            detail: "User query might have needed to see row versions that must be removed.".into(),
            delays: "max_standby_streaming_delay = 30s, max_standby_archive_delay = 30s".into(),
            hot_standby_feedback: "off".into(),
        };
        assert_eq!(e.exit_code(), EXIT_RUNTIME);
        assert!(e.to_string().contains("cancelled by a conflict with recovery"), "{e}");
        let hint = e.hint().unwrap();
        for s in ["max_standby_streaming_delay = 30s", "hot_standby_feedback = off", "hot_standby_feedback = on"] {
            assert!(hint.contains(s), "{hint}");
        }
        assert!(!hint.contains("privileges"), "{hint}");
    }

    #[test]
    fn backup_refusals_have_their_exit_codes() {
        let wrong = Error::WrongDataDirectory { path: "/x".into(), target: "t".into(), reason: "r".into() };
        assert_eq!(wrong.exit_code(), EXIT_USAGE);
        assert_eq!(Error::IncompleteBackup { path: "/x".into() }.exit_code(), EXIT_USAGE);
        let grants = vec!["GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO u;".to_string()];
        let p = Error::MissingPrivileges { target: "t".into(), role: "u".into(), missing: "m".into(), grants };
        assert_eq!(p.exit_code(), EXIT_RUNTIME);
        assert!(p.hint().unwrap().contains("pg_switch_wal() TO u;"));
        assert_eq!(Error::UnsafeSource { path: "/x".into(), reason: "r".into() }.exit_code(), EXIT_RUNTIME);
    }
}
