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
            | Error::Conninfo(_) => EXIT_USAGE,
            Error::NotConsistent { .. } | Error::BackupDamaged { .. } => EXIT_FAILED,
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
            | Error::GateInterrupted { .. } => EXIT_RUNTIME,
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
            Error::ReadInput { .. } => "check the path and that this user may read it".into(),
            Error::Io { .. } => "check free space and permissions".into(),
            Error::Control { source: ControlError::UnknownVersion { .. }, .. } => {
                "this release of pgdrill supports PostgreSQL 10 to 18".into()
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
            Error::Sql { .. } => "check the role's privileges (the backup functions need superuser or a grant)".into(),
            Error::Precondition { hint, .. } => hint.clone(),
            Error::StandbyPromoted { .. } => "take a new backup from a standby".into(),
            Error::Program { log: Some(log), .. } => format!("see the log {}", log.display()),
            Error::Program { .. } => return None,
            Error::ServerDied { log, .. } => format!("see the server log {}", log.display()),
            Error::BackupDamaged { .. } => "run pgdrill verify on the backup, and restore another one".into(),
            Error::NotConsistent { hint, .. } => hint.clone(),
            Error::Timeout { hint, .. } => hint.clone(),
            Error::Interrupted => "run the command again".into(),
            Error::GateInterrupted { pgdata } => {
                format!("the copy stays locked; run `pgdrill gate --pgdata {}` to resume", pgdata.display())
            }
        })
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
}
