//! The backup's session on the standby: short statements only.
//!
//! A hot standby cancels a query whose snapshot keeps replay from removing
//! row versions, once replay has waited `max_standby_streaming_delay` (30 s
//! by default) for it: `ResolveRecoveryConflictWithSnapshot()` in
//! `src/backend/storage/ipc/standby.c`, which cancels every backend of the
//! replayed record's database whose xmin is too old
//! (`GetConflictingVirtualXIDs()` in `procarray.c`).
//!
//! On a standby, the backup-start call (`do_pg_backup_start()` in xlog.c)
//! requests a restartpoint and waits for it inside one `SELECT`, holding
//! that statement's snapshot. A spread restartpoint takes minutes, so on a
//! busy standby replay cancels the call. pg_basebackup never meets this: a
//! walsender holds no snapshot.
//!
//! So pgdrill never lets the call wait. Each attempt runs under a
//! `statement_timeout` of [`ATTEMPT_TIMEOUT`]. When the attempt has to wait
//! for a restartpoint, the timeout cancels it; the server undoes the start
//! (the session is not in backup mode) but the checkpointer goes on with the
//! restartpoint it was asked for. pgdrill waits for that restartpoint to
//! finish by polling `pg_control_checkpoint()` (each poll a snapshot of a
//! millisecond), then tries again; once the last restartpoint is at the
//! newest replayed checkpoint record, the call returns at once. The first
//! restartpoint is spread unless `--fast`; if the primary wrote a newer
//! checkpoint record meanwhile, the one after it is immediate
//! ([`SPREAD_RESTARTPOINTS`]). docs/design.md ("Busy standbys") explains
//! the choice.

use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, Row};
use serde::Serialize;

use crate::conn::{first_words, ConnSpec};
use crate::error::{Error, Result};
use crate::pg::version::{self, PgVersion};
use crate::pg::Lsn;

/// The longest a backup-start statement may hold its snapshot.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// How many spread restartpoints pgdrill waits for before it asks for an
/// immediate one (when the primary keeps writing newer checkpoint records
/// than the standby's last restartpoint).
pub const SPREAD_RESTARTPOINTS: u32 = 1;

/// Cancellations by recovery conflicts in a row before a step gives up.
pub const MAX_CONFLICTS: u32 = 8;

/// How often the wait for a restartpoint looks at pg_control.
const POLL: Duration = Duration::from_millis(250);

/// How the backup-start call found its restartpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Restartpoint {
    /// The last restartpoint was already at the newest checkpoint record
    /// (or a spread one finished within the first attempt).
    Current,
    /// pgdrill waited for a spread restartpoint.
    Spread,
    /// An immediate restartpoint (`--fast`, or after a spread one was
    /// overtaken by a newer checkpoint record).
    Immediate,
}

/// How the backup started; part of the backup report.
#[derive(Clone, Debug, Serialize)]
pub struct StartReport {
    /// What the backup-start call returned.
    pub lsn: Lsn,
    pub restartpoint: Restartpoint,
    /// Backup-start statements issued.
    pub attempts: u32,
    /// Restartpoints pgdrill waited for outside any statement.
    pub restartpoints_waited: u32,
    /// Statements cancelled by recovery conflicts and retried.
    pub conflicts_retried: u32,
    pub seconds: f64,
}

/// What cancelled a statement.
enum Cancel {
    /// Our statement_timeout (or someone's cancel request).
    Timeout,
    /// Replay on the standby.
    Conflict(String),
}

fn cancel_kind(e: &postgres::Error) -> Option<Cancel> {
    let message = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    match e.code().map(|c| c.code()) {
        Some("57014") => Some(Cancel::Timeout),
        // On a hot standby these come only from replay: a standby refuses
        // SERIALIZABLE, so 40001 is a snapshot, lock or pin conflict, and a
        // 40P01 a deadlock with the startup process.
        Some("40001" | "40P01") => Some(Cancel::Conflict(message)),
        _ => None,
    }
}

/// The server's message when it refused the connection because it takes
/// none (SQLSTATE 57P03 cannot_connect_now): a standby with hot_standby =
/// off ("the database system is not accepting connections" / "Hot standby
/// mode is disabled." from 14, "the database system is starting up"
/// before), or one still starting.
fn not_accepting(e: &Error) -> Option<String> {
    let Error::Connect { source, .. } = e else { return None };
    let refused = source.attempts.iter().find(|a| a.sqlstate.as_deref() == Some(CANNOT_CONNECT_NOW))?;
    Some(refused.source.as_ref().map_or_else(|| refused.reason.clone(), ToString::to_string))
}

/// SQLSTATE `cannot_connect_now`.
const CANNOT_CONNECT_NOW: &str = "57P03";

/// A setting as `SHOW` gives it: a utility statement, which takes no
/// snapshot, so replay has nothing to cancel.
fn show_setting(client: &mut Client, name: &str) -> std::result::Result<String, postgres::Error> {
    let msgs = client.simple_query(&format!("SHOW {name}"))?;
    Ok(msgs
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default())
}

/// Sleep in short steps, returning early with an error on SIGINT/SIGTERM.
pub fn sleep_interruptibly(d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    loop {
        if crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// One connection to the server a backup reads from.
pub struct Session {
    client: Client,
    spec: ConnSpec,
    pub target: String,
    pub version: &'static PgVersion,
    pub in_recovery: bool,
    /// The role, quoted as an identifier (for GRANT statements).
    pub role: String,
    /// The session holds a started backup that was not stopped yet.
    in_backup: bool,
    /// The settings that decide recovery conflicts, as read when the
    /// session began: a session that replay terminated cannot be asked
    /// when its conflict is reported.
    conflict_settings: Vec<(&'static str, String)>,
}

/// The settings a recovery-conflict error names.
const CONFLICT_SETTINGS: [&str; 3] =
    ["max_standby_streaming_delay", "max_standby_archive_delay", "hot_standby_feedback"];

impl Session {
    /// Connect and learn the major and whether the server is in recovery.
    pub fn connect(spec: &ConnSpec) -> Result<Session> {
        let target = spec.to_string();
        let mut client = Self::open_client(spec, &target)?;
        // SHOW takes no snapshot, so replay cannot cancel it.
        let num: u32 = show_setting(&mut client, "server_version_num")
            .map_err(|e| Error::Sql { target: target.clone(), what: "SHOW server_version_num".into(), source: e })?
            .parse()
            .unwrap_or(0);
        let major = num / 10000;
        let version = version::by_major(major).ok_or_else(|| Error::Precondition {
            message: format!("the server at {target} runs PostgreSQL {major}, which pgdrill does not support"),
            hint: format!("pgdrill supports {}", crate::pg::version::supported_text()),
        })?;
        let mut s = Session {
            client,
            spec: spec.clone(),
            target,
            version,
            // Until the server says otherwise: a standby's replay may cancel
            // the next queries, which are then retried.
            in_recovery: true,
            role: String::new(),
            in_backup: false,
            conflict_settings: Vec::new(),
        };
        s.in_recovery = s.text("SELECT pg_is_in_recovery()::text")?.as_deref() == Some("true");
        s.role = s.text("SELECT quote_ident(current_user)")?.unwrap_or_default();
        s.session_settings()?;
        s.conflict_settings = CONFLICT_SETTINGS.iter().map(|n| (*n, s.show(n))).collect();
        Ok(s)
    }

    fn session_settings(&mut self) -> Result<()> {
        if self.version.has_idle_session_timeout {
            // The session sits idle for the whole copy; a server-wide
            // idle_session_timeout must not end it (and the backup with it).
            self.execute("SET idle_session_timeout = 0")?;
        }
        Ok(())
    }

    /// A new session after replay terminated the old one ("terminating
    /// connection due to conflict with recovery": a conflict signal that
    /// reaches a backend between statements ends it). Only before the
    /// backup started: a started backup ends with its session.
    fn reconnect(&mut self) -> Result<()> {
        self.client = Self::open_client(&self.spec, &self.target)?;
        self.session_settings()
    }

    /// Connect; a standby whose replay ends the new session while it starts
    /// ("FATAL: canceling statement due to conflict with recovery", its
    /// catalog reads conflicting) is asked again, a few times.
    fn open_client(spec: &ConnSpec, target: &str) -> Result<Client> {
        let mut conflicts = 0;
        loop {
            match spec.connect() {
                Ok(c) => return Ok(c),
                Err(e)
                    if conflicts + 1 < MAX_CONFLICTS
                        && e.chain().iter().any(|t| t.contains("conflict with recovery")) =>
                {
                    conflicts += 1;
                    sleep_interruptibly(Duration::from_millis(200 * u64::from(conflicts)))?;
                }
                Err(e) => {
                    return Err(match not_accepting(&e) {
                        Some(message) => Error::NotAcceptingConnections { target: target.to_string(), message },
                        None => e,
                    })
                }
            }
        }
    }

    fn sql_error(&self, sql: &str, source: postgres::Error) -> Error {
        Error::Sql { target: self.target.clone(), what: first_words(sql), source }
    }

    /// A utility statement (no snapshot).
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).map_err(|e| self.sql_error(sql, e))
    }

    /// A read-only query, retried when replay cancels it: it holds its
    /// snapshot for milliseconds, so a retry succeeds unless replay is far
    /// behind.
    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let mut conflicts = 0;
        loop {
            match self.client.query_one(sql, params) {
                Ok(row) => return Ok(row),
                Err(e) => match cancel_kind(&e) {
                    Some(Cancel::Conflict(detail)) if self.in_recovery => {
                        conflicts += 1;
                        if conflicts >= MAX_CONFLICTS {
                            return Err(self.conflict_error(&first_words(sql), detail));
                        }
                        sleep_interruptibly(Duration::from_millis(200 * u64::from(conflicts)))?;
                    }
                    _ => return Err(self.sql_error(sql, e)),
                },
            }
        }
    }

    /// One text value (NULL as `None`).
    pub fn text(&mut self, sql: &str) -> Result<Option<String>> {
        Ok(self.query_one(sql, &[])?.get::<_, Option<String>>(0))
    }

    /// A setting as `SHOW` gives it (a utility statement: no snapshot).
    pub fn show(&mut self, name: &str) -> String {
        show_setting(&mut self.client, name).unwrap_or_else(|_| "unknown".into())
    }

    /// The error for a step replay keeps cancelling, naming the settings
    /// that decide it.
    pub fn conflict_error(&mut self, step: &str, detail: String) -> Error {
        // Asked now (a reload may have changed them), else as they were
        // when the session began.
        for i in 0..self.conflict_settings.len() {
            let name = self.conflict_settings[i].0;
            if let Ok(now) = show_setting(&mut self.client, name) {
                self.conflict_settings[i].1 = now;
            }
        }
        let setting =
            |name: &str| self.conflict_settings.iter().find(|(n, _)| *n == name).map_or("unknown", |(_, v)| v.as_str());
        let delays = format!(
            "max_standby_streaming_delay = {}, max_standby_archive_delay = {}",
            setting("max_standby_streaming_delay"),
            setting("max_standby_archive_delay")
        );
        Error::RecoveryConflict {
            target: self.target.clone(),
            step: step.to_string(),
            detail,
            delays,
            hot_standby_feedback: setting("hot_standby_feedback").to_string(),
        }
    }

    /// The last restartpoint's (or checkpoint's) record, from pg_control.
    fn last_restartpoint(&mut self) -> Result<String> {
        Ok(self.text("SELECT checkpoint_lsn::text FROM pg_control_checkpoint()")?.unwrap_or_default())
    }

    /// Start the backup without letting the call wait for a restartpoint
    /// (see the module docs). `tick` hears how long the wait has lasted.
    pub fn start_backup(&mut self, label: &str, fast: bool, tick: &mut dyn FnMut(&str)) -> Result<StartReport> {
        let started = Instant::now();
        let mut r = StartReport {
            lsn: Lsn(0),
            restartpoint: Restartpoint::Current,
            attempts: 0,
            restartpoints_waited: 0,
            conflicts_retried: 0,
            seconds: 0.0,
        };
        let mut immediate = fast;
        let mut conflicts_in_row = 0u32;
        // Whether the last restartpoint waited for was asked immediate.
        let mut waited_for: Option<bool> = None;
        loop {
            if crate::signals::interrupted() {
                return Err(Error::Interrupted);
            }
            if self.client.is_closed() {
                self.reconnect()?;
            }
            r.attempts += 1;
            let attempt = self.last_restartpoint().and_then(|b| Ok((self.attempt_start(label, immediate)?, b)));
            let (outcome, before) = match attempt {
                Ok(a) => a,
                // Replay ended the session between statements; nothing was
                // started, so a new session tries again.
                Err(e) if self.client.is_closed() && !self.in_backup => {
                    (Err(Cancel::Conflict(e.chain().join(": "))), String::new())
                }
                Err(e) => return Err(e),
            };
            match outcome {
                Ok(lsn) => {
                    r.lsn = lsn;
                    // A restartpoint made within this attempt, or the one
                    // waited for before it, or none at all.
                    let made_now = self.last_restartpoint()? != before;
                    r.restartpoint = which_restartpoint(made_now, immediate, waited_for);
                    r.seconds = started.elapsed().as_secs_f64();
                    return Ok(r);
                }
                Err(cancel) => {
                    self.end_lost_start();
                    // Either way the restartpoint the attempt asked for (if
                    // one was needed) goes on. After a timeout, wait for it;
                    // after a conflict, wait a growing while: replay is late,
                    // and the statement may have needed no restartpoint.
                    let patience = match cancel {
                        Cancel::Timeout => None,
                        Cancel::Conflict(detail) => {
                            r.conflicts_retried += 1;
                            conflicts_in_row += 1;
                            if conflicts_in_row >= MAX_CONFLICTS {
                                return Err(self.conflict_error("the backup-start call", detail));
                            }
                            Some(Duration::from_secs((1u64 << conflicts_in_row).min(30)))
                        }
                    };
                    if before.is_empty() {
                        // The session was lost: no known restartpoint to wait for.
                        sleep_interruptibly(patience.unwrap_or(POLL))?;
                    } else if self.wait_for_restartpoint(&before, immediate, started, patience, tick)? {
                        r.restartpoints_waited += 1;
                        waited_for = Some(immediate);
                        conflicts_in_row = 0;
                    }
                    if r.restartpoints_waited >= SPREAD_RESTARTPOINTS {
                        immediate = true;
                    }
                }
            }
        }
    }

    /// After a cancelled attempt: a cancel that lands after the server
    /// started the backup but before the statement ended leaves the session
    /// in backup mode without telling us the start (seen on 11 with
    /// max_standby_streaming_delay = 0). End such a backup; when there is
    /// none the stop fails with "not in progress", which is what we want.
    fn end_lost_start(&mut self) {
        for _ in 0..MAX_CONFLICTS {
            if self.client.is_closed() {
                return;
            }
            match self.client.query_one(self.version.backup_stop_sql, &[]) {
                Err(e) if matches!(cancel_kind(&e), Some(Cancel::Conflict(_))) => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => return,
            }
        }
    }

    /// One backup-start statement under [`ATTEMPT_TIMEOUT`]. Cancelled
    /// while it waits, it leaves the session out of backup mode (the
    /// server's error cleanup undoes the start) and the requested
    /// restartpoint running; cancelled just after the start, it may not
    /// (see [`Self::end_lost_start`]).
    fn attempt_start(&mut self, label: &str, fast: bool) -> Result<std::result::Result<Lsn, Cancel>> {
        let sql = self.version.backup_start_sql;
        self.execute(&format!("SET statement_timeout = {}", ATTEMPT_TIMEOUT.as_millis()))?;
        let result = self.client.query_one(sql, &[&label, &fast]);
        if !self.client.is_closed() {
            self.execute("RESET statement_timeout")?;
        }
        match result {
            Ok(row) => {
                self.in_backup = true;
                let text: String = row.get(0);
                let lsn = text.parse::<Lsn>().map_err(|_| Error::Precondition {
                    message: format!("the backup-start call returned an invalid LSN {text:?}"),
                    hint: "report this as a bug".into(),
                })?;
                Ok(Ok(lsn))
            }
            Err(e) => match cancel_kind(&e) {
                Some(c) if self.in_recovery => Ok(Err(c)),
                _ => Err(self.sql_error(sql, e)),
            },
        }
    }

    /// Wait, outside any statement, until pg_control shows a restartpoint
    /// newer than `before`. Returns false when none came within `patience`
    /// (by default checkpoint_timeout and a minute); the next attempt asks
    /// again.
    fn wait_for_restartpoint(
        &mut self,
        before: &str,
        immediate: bool,
        started: Instant,
        patience: Option<Duration>,
        tick: &mut dyn FnMut(&str),
    ) -> Result<bool> {
        let timeout = self.show("checkpoint_timeout");
        let patience = patience.unwrap_or_else(|| Duration::from_secs(parse_seconds(&timeout).unwrap_or(300) + 60));
        let waiting = Instant::now();
        let kind = if immediate { "an immediate" } else { "a spread" };
        loop {
            sleep_interruptibly(POLL)?;
            if self.client.is_closed() {
                // Not in backup mode yet: a new session does as well.
                self.reconnect()?;
            }
            // A poll cancelled by replay is simply repeated.
            if let Ok(Some(now)) = self
                .client
                .query_one("SELECT checkpoint_lsn::text FROM pg_control_checkpoint()", &[])
                .map(|r| r.get::<_, Option<String>>(0))
            {
                if now != before {
                    return Ok(true);
                }
            }
            if waiting.elapsed() > patience {
                return Ok(false);
            }
            tick(&format!(
                "waiting for {kind} restartpoint on the standby (checkpoint_timeout = {timeout}; {:.0} s)",
                started.elapsed().as_secs_f64()
            ));
        }
    }

    /// Stop the backup: `(stop lsn, label file, tablespace map)`. Retried
    /// when replay cancels it; if the server ended the backup but its answer
    /// was lost, the backup cannot be completed.
    pub fn stop_backup(&mut self) -> Result<(Lsn, String, Option<String>)> {
        let sql = self.version.backup_stop_sql;
        let mut conflicts = 0;
        let mut last_conflict = String::new();
        loop {
            match self.client.query_one(sql, &[]) {
                Ok(row) => {
                    self.in_backup = false;
                    let stop: String = row.get(0);
                    let stop = stop.parse::<Lsn>().map_err(|_| Error::Precondition {
                        message: format!("the backup-stop call returned an invalid LSN {stop:?}"),
                        hint: "report this as a bug".into(),
                    })?;
                    let spcmap: Option<String> = row.get(2);
                    return Ok((stop, row.get(1), spcmap.filter(|s| !s.is_empty())));
                }
                Err(e) => {
                    let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                    if text.contains("promoted") {
                        self.in_backup = false;
                        return Err(Error::StandbyPromoted { detail: text });
                    }
                    if conflicts > 0 && e.code().map(|c| c.code()) == Some("55000") {
                        self.in_backup = false;
                        return Err(self.conflict_error(
                            "the backup-stop call",
                            format!("{last_conflict}; the server ended the backup, but its answer (the backup label) was lost"),
                        ));
                    }
                    match cancel_kind(&e) {
                        Some(Cancel::Conflict(detail)) if self.in_recovery && conflicts + 1 < MAX_CONFLICTS => {
                            conflicts += 1;
                            last_conflict = detail;
                            sleep_interruptibly(Duration::from_millis(200 * u64::from(conflicts)))?;
                        }
                        Some(Cancel::Conflict(detail)) if self.in_recovery => {
                            return Err(self.conflict_error("the backup-stop call", detail))
                        }
                        _ => return Err(self.sql_error(sql, e)),
                    }
                }
            }
        }
    }

    /// Take the session out of backup mode after a failure (best effort:
    /// if the session is gone, the server already ended its backup).
    pub fn abort_backup(&mut self) {
        if !self.in_backup {
            return;
        }
        for _ in 0..3 {
            if self.client.is_closed() {
                break;
            }
            match self.client.query_one(self.version.backup_stop_sql, &[]) {
                Ok(_) => break,
                Err(e) if matches!(cancel_kind(&e), Some(Cancel::Conflict(_))) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(_) => break,
            }
        }
        self.in_backup = false;
    }

    /// The session holds a started backup.
    pub fn in_backup(&self) -> bool {
        self.in_backup
    }

    /// Where the tablespace with this OID lives, as the catalog says
    /// (`pg_tablespace_location()`), or `None` when there is none.
    pub fn tablespace_location(&mut self, oid: u32) -> Result<Option<String>> {
        let row = self.query_one(
            "SELECT (SELECT pg_tablespace_location(oid) FROM pg_tablespace
                     WHERE oid = $1 AND spcname NOT IN ('pg_default', 'pg_global'))",
            &[&oid],
        )?;
        Ok(row.get(0))
    }

    /// Whether the role may execute `function` (a signature such as
    /// `pg_backup_start(text, boolean)`).
    pub fn may_execute(&mut self, function: &str) -> Result<bool> {
        let row = self.query_one("SELECT has_function_privilege(current_user, $1, 'EXECUTE')", &[&function])?;
        Ok(row.get(0))
    }
}

/// The restartpoint a successful start used: one made during the attempt
/// (of the kind it asked for), the one waited for before it, or none.
fn which_restartpoint(made_now: bool, immediate: bool, waited_for: Option<bool>) -> Restartpoint {
    match (made_now, waited_for) {
        (true, _) if immediate => Restartpoint::Immediate,
        (true, _) => Restartpoint::Spread,
        (false, Some(true)) => Restartpoint::Immediate,
        (false, Some(false)) => Restartpoint::Spread,
        (false, None) => Restartpoint::Current,
    }
}

/// `300`, `5min`, `1h`, `30s` (as SHOW prints times) in seconds.
fn parse_seconds(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().ok()?;
    let unit = match t[split..].trim() {
        "" | "s" => 1,
        "ms" => return Some(n / 1000),
        "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restartpoint_is_named_by_what_happened() {
        assert_eq!(which_restartpoint(false, false, None), Restartpoint::Current);
        assert_eq!(which_restartpoint(false, true, Some(false)), Restartpoint::Spread);
        assert_eq!(which_restartpoint(false, true, Some(true)), Restartpoint::Immediate);
        assert_eq!(which_restartpoint(true, true, Some(false)), Restartpoint::Immediate);
        assert_eq!(which_restartpoint(true, false, None), Restartpoint::Spread);
    }

    #[test]
    fn show_times() {
        assert_eq!(parse_seconds("5min"), Some(300));
        assert_eq!(parse_seconds("30s"), Some(30));
        assert_eq!(parse_seconds("1h"), Some(3600));
        assert_eq!(parse_seconds("300"), Some(300));
        assert_eq!(parse_seconds("1500ms"), Some(1));
        assert_eq!(parse_seconds("soon"), None);
    }
}
