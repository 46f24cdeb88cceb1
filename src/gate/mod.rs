//! `pgdrill gate`: start a restored data directory with every client shut
//! out, watch replay reach the backup's end point, then open access.
//!
//! The lock ([`lock`]) replaces pg_hba.conf and pg_ident.conf with files that
//! admit only pgdrill's own OS user through peer authentication on the
//! server's Unix socket; TCP and replication connections match no line. The
//! server runs with its own configuration otherwise, so opening is putting
//! the original files back and a reload: no restart, no replay again, and
//! nothing of the gate left behind. docs/design.md explains the choice.
//!
//! It fails closed. Until the gate opens, a timeout, an error, a signal, or
//! pgdrill being killed leaves the server stopped or still locked, and the
//! lock is on disk, so a manual `pg_ctl start` meets it too. `pgdrill gate`
//! run again resumes from the state kept in `pgdrill_gate/`.

pub mod lock;
pub mod monitor;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postgres::Client;
use serde::Serialize;

use crate::conn::ConnSpec;
use crate::datadir::DirInfo;
use crate::error::{Error, Result};
use crate::observe::{self, Level, Unit};
use crate::pg::label::BackupFrom;
use crate::pg::wal::SegmentName;
use crate::pg::{Lsn, TimelineId, WalSegSize};
use crate::recovery::{self, StopAt, Target, TargetAction, TimelineChoice};
use crate::safefs::Dir;
use crate::server::{probe, OsUser, PgBin, Postmaster, ServerSpec};
use lock::GateState;
use monitor::{ServerLog, StartupActivity};

/// What the restored server does once it reaches the end target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Then {
    /// Stop exactly at the end target, paused, open read-only.
    Pause,
    /// End recovery at the end target, promote, open read-write.
    Promote,
    /// Keep following the WAL source, open read-only once past the end.
    Standby,
}

impl Then {
    pub fn parse(s: &str) -> Option<Then> {
        match s {
            "pause" => Some(Then::Pause),
            "promote" => Some(Then::Promote),
            "standby" => Some(Then::Standby),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Then::Pause => "pause",
            Then::Promote => "promote",
            Then::Standby => "standby",
        }
    }
}

/// A validated gate request.
#[derive(Clone, Debug)]
pub struct GateConfig {
    pub pgdata: PathBuf,
    pub end_lsn: Option<Lsn>,
    /// A recovery target by time, transaction or restore point (an LSN
    /// target is `end_lsn`): replay stops there, and the gate opens there.
    pub stop_at: Option<StopAt>,
    /// `None`: what an unfinished gate on this directory saved, else pause.
    pub then: Option<Then>,
    pub timeout: Duration,
    /// No replay progress for this long is a stall worth diagnosing.
    pub stall: Duration,
    pub pg_bin: Option<PathBuf>,
    pub os_user: Option<String>,
    /// A database role pgdrill may connect as (tried first).
    pub db_user: Option<String>,
    /// The archive the copy restores from, to name missing segments.
    pub wal_archive: Option<PathBuf>,
    pub quiet: bool,
}

/// When things happened (RFC 3339) and how long they took.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub started: String,
    pub consistent: Option<String>,
    pub opened: Option<String>,
    /// Server start to the end target reached.
    pub replay_secs: f64,
    /// End target reached to access open (including promotion).
    pub open_secs: f64,
    pub total_secs: f64,
}

/// The result of the gate; its JSON form is documented in docs/json.md.
#[derive(Clone, Debug, Serialize)]
pub struct GateReport {
    pub pgdata: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub then: Then,
    pub end_lsn: Option<Lsn>,
    /// Where the end target came from: `option`, `state`, `end_location`,
    /// `backup_label`, or `server` (PostgreSQL's own end-of-backup check).
    pub end_source: &'static str,
    /// A recovery target by time, transaction or restore point, if any.
    pub recovery_target: Option<StopAt>,
    /// Whether access opened (false when checks run before opening failed).
    pub opened: bool,
    /// The replay LSN when access opened (the insert LSN after promotion).
    pub opened_at_lsn: Option<Lsn>,
    /// Where PostgreSQL itself declared consistency, from its log.
    pub server_consistent_lsn: Option<Lsn>,
    pub read_write: bool,
    pub timeline: Option<u32>,
    pub resumed: bool,
    pub stalls: Vec<String>,
    pub timings: Timings,
    pub server_log: PathBuf,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The one rule for end targets: nothing below the backup's own end point
/// (`floor`) is accepted, from an option, a saved state or a resume.
pub fn check_end_target(end: Option<Lsn>, floor: Option<Lsn>, source: &str) -> Result<()> {
    match (end, floor) {
        (Some(e), Some(f)) if e < f => Err(Error::usage(
            format!("the end target {e} ({source}) is below the backup's own end point {f}"),
            Some(format!(
                "a copy is consistent only from {f} on; give a target at or after it, or none (the gate then opens at the backup's end)"
            )),
        )),
        (None, Some(f)) => Err(Error::usage(
            format!("no end target ({source}), but the backup's own end point is {f}"),
            Some("run pgdrill gate without --then standby overrides, or pass --end-lsn".into()),
        )),
        _ => Ok(()),
    }
}

/// A target by time that lies before the backup's checkpoint lies before
/// its end: refused up front (exit 2). Later times are checked where
/// replay stops for them.
pub fn check_stop_at(at: &StopAt, info: &DirInfo) -> Result<()> {
    let StopAt::Time(t) = at else { return Ok(()) };
    let checkpoint = info.control.checkpoint_time;
    match crate::pg::timestamp::parse(t) {
        Some(ts) if ts.timestamp() < checkpoint => Err(Error::usage(
            format!(
                "the recovery target time {t} is before the backup's checkpoint ({}): it lies before the backup's end",
                chrono::DateTime::from_timestamp(checkpoint, 0).map_or(checkpoint.to_string(), |d| d.to_rfc3339())
            ),
            Some("choose a time after the backup was taken".into()),
        )),
        _ => Ok(()),
    }
}

/// The end target, and where it came from. An end below the backup's own
/// end point (`floor`) is refused, whichever way it was given.
fn end_target(
    cfg: &GateConfig,
    info: &DirInfo,
    state: Option<&GateState>,
    floor: Option<Lsn>,
) -> Result<(Option<Lsn>, &'static str)> {
    let (end, source) = if let Some(e) = cfg.end_lsn {
        (Some(e), "option")
    } else if let Some(s) = state {
        (s.end_lsn, "state")
    } else if let Some(e) = info.end_location {
        (Some(e.max(floor.unwrap_or(e))), "end_location")
    } else {
        match info.label_fields() {
            Some(f) if f.backup_from == Some(BackupFrom::Standby) => {
                let m = info.control.min_recovery_lsn;
                if !m.is_valid() {
                    return Err(Error::usage(
                        "backup_label says the backup is from a standby, but pg_control has no minimum recovery point",
                        Some("pass --end-lsn".to_string()),
                    ));
                }
                (Some(m), "backup_label")
            }
            // From a primary: the end-of-backup record, which PostgreSQL
            // itself waits for before it declares consistency.
            Some(_) => {
                (info.backup_history_stop, if info.backup_history_stop.is_some() { "backup_label" } else { "server" })
            }
            None => {
                return Err(Error::usage(
                    format!("{}: no end target: no end_location, no backup_label", info.path.display()),
                    Some("pass --end-lsn LSN (the point the copy must reach before anyone may use it)".into()),
                ))
            }
        }
    };
    check_end_target(end, floor, source)?;
    Ok((end, source))
}

struct Watch<'a> {
    cfg: &'a GateConfig,
    then: Then,
    pgdata: &'a Path,
    seg: WalSegSize,
    tli: TimelineId,
    end: Option<Lsn>,
    /// The backup's own end point: access never opens below it.
    floor: Option<Lsn>,
    /// A target by time, xid or name: replay pauses (or promotes) there.
    stop_at: Option<StopAt>,
    /// SQL: is replay paused (the major's function).
    paused_sql: &'static str,
    start_lsn: Lsn,
    conn_candidates: Vec<ConnSpec>,
    /// The candidate that connected.
    connected_as: Option<usize>,
    client: Option<Client>,
    log: ServerLog,
    stalls: Vec<String>,
}

impl Watch<'_> {
    fn connect(&mut self) -> Option<&mut Client> {
        if self.client.is_none() {
            for (i, c) in self.conn_candidates.iter().enumerate() {
                if let Ok(cl) = c.connect() {
                    self.client = Some(cl);
                    self.connected_as = Some(i);
                    break;
                }
            }
        }
        self.client.as_mut()
    }

    /// Replay LSN and recovery state, or None when not connectable yet.
    fn replay(&mut self) -> Option<(Option<Lsn>, bool)> {
        let c = self.connect()?;
        match c.query_one("SELECT pg_last_wal_replay_lsn()::text, pg_is_in_recovery()", &[]) {
            Ok(r) => {
                let lsn: Option<String> = r.get(0);
                Some((lsn.and_then(|l| l.parse().ok()), r.get(1)))
            }
            Err(_) => {
                self.client = None;
                None
            }
        }
    }

    /// Whether replay is paused (at a recovery target, the only pause the
    /// locked server can see: nobody else can connect to ask for one).
    fn paused(&mut self) -> bool {
        let sql = self.paused_sql;
        self.connect().and_then(|c| c.query_one(sql, &[]).ok()).is_some_and(|r| r.get::<_, bool>(0))
    }

    /// Why replay is not moving, in one line, and what to do about it.
    fn diagnose(&self, pid: i32, replay: Option<Lsn>) -> (String, String) {
        let log = &self.log.text;
        let resume = format!("then run `pgdrill gate --pgdata {}` to resume", self.pgdata.display());
        // A full disk shows as a failing restore_command too: name it first,
        // or the user hunts for WAL that is already in the archive.
        if let Some(line) = monitor::disk_full_line(log) {
            let free = crate::backup::preflight::free_bytes(&self.pgdata.join("pg_wal"))
                .map_or(String::new(), |b| format!(" ({} free)", crate::units::bytes(b)));
            return (
                format!("the file system holding {} is full{free}: {line}", self.pgdata.display()),
                format!("free space on that file system, {resume}"),
            );
        }
        let waiting = match monitor::startup_activity(pid) {
            Some(StartupActivity::Waiting(s)) => Some(s),
            _ => None,
        };
        let missing = waiting
            .clone()
            .or_else(|| monitor::missing_segment_from_log(log))
            .or_else(|| replay.map(|r| SegmentName::containing(self.tli, r, self.seg).file_name(self.seg)));
        let mut msg = match (&missing, &self.cfg.wal_archive) {
            // Stored plain or compressed (a directory: an archive in object
            // storage is not looked into here).
            (Some(s), Some(a)) if !a.to_str().is_some_and(crate::objstore::is_s3) && !in_archive(a, s) => {
                format!("replay is waiting for WAL segment {s}, which is not in the archive {}", a.display())
            }
            (Some(s), _) if waiting.is_some() => format!("replay is waiting for WAL segment {s}"),
            (Some(s), _) => format!("replay is not progressing; the next WAL segment is {s}"),
            (None, _) => "replay is not progressing".to_string(),
        };
        // A failing restore_command names the segment (history probes are
        // normal and do not count).
        if monitor::missing_segment_from_log(log).is_some() {
            msg.push_str("; restore_command cannot provide it (see the server log)");
        }
        if let Some(f) = monitor::fatal_lines(log).iter().rev().find(|f| !monitor::fatal_is_client(f)) {
            msg.push_str(&format!("; last FATAL: {f}"));
        }
        if let (Some(r), Some(e)) = (replay, self.end) {
            if r >= e {
                msg.push_str(&format!(
                    "; replay is at the end target {e}, but the server needs the next WAL record to stop there"
                ));
            }
        }
        (msg, format!("provide the missing WAL, {resume}"))
    }
}

/// Everything the gate needs to start and watch the server.
pub struct Prepared {
    pub bin: PgBin,
    pub user: OsUser,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub state: GateState,
    /// The gate had been prepared before (a resumed run).
    pub resumed: bool,
    pub roles: Vec<String>,
    /// `--then`, resolved.
    pub then: Then,
    /// The backup's own end point.
    pub floor: Option<Lsn>,
    /// A recovery target by time, xid or name.
    pub stop_at: Option<StopAt>,
}

/// What the server's configuration says, from `postgres -C`.
struct ServerFacts {
    hba_file: PathBuf,
    ident_file: PathBuf,
    port: u16,
    socket_dir: PathBuf,
}

impl ServerFacts {
    fn read(bin: &PgBin, user: &OsUser, dir: &Dir) -> Result<ServerFacts> {
        let pgdata = dir.path();
        let hba_file = PathBuf::from(probe::setting(bin, user, pgdata, "hba_file")?);
        let ident_file = PathBuf::from(probe::setting(bin, user, pgdata, "ident_file")?);
        lock::relative_to(dir, &hba_file)?;
        lock::relative_to(dir, &ident_file)?;
        let port: u16 = probe::setting(bin, user, pgdata, "port")?
            .parse()
            .map_err(|_| Error::usage("the server's port setting is not a number", None))?;
        let sockets = probe::setting(bin, user, pgdata, "unix_socket_directories")?;
        let socket_dir = sockets
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .find(|s| s.starts_with('/'))
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::usage(
                    format!(
                        "the restored server has no Unix socket directory (unix_socket_directories = {sockets:?})"
                    ),
                    Some(
                        "set unix_socket_directories to a directory: the gate admits pgdrill only over the local socket"
                            .into(),
                    ),
                )
            })?;
        Ok(ServerFacts { hba_file, ident_file, port, socket_dir })
    }
}

/// The database roles pgdrill may connect as while the gate is shut.
fn gate_roles(cfg: &GateConfig, user: &OsUser) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for r in [cfg.db_user.clone(), std::env::var("PGUSER").ok(), Some(user.name.clone()), Some("postgres".into())]
        .into_iter()
        .flatten()
    {
        if !r.is_empty() && !roles.contains(&r) {
            roles.push(r);
        }
    }
    roles
}

/// Lock the data directory `dir`, set its recovery target for `then`, and
/// save the gate's state, without starting anything. Needs the
/// configuration files but not pg_control, so a restore calls it before
/// writing pg_control: a restored copy is locked from the moment it could be
/// started at all.
///
/// Every check comes before the first write: a refused request (an end
/// target below `floor`, a change of target while the server runs) leaves
/// the directory and the saved state exactly as they were.
pub fn prepare(
    dir: &Dir,
    version: &'static crate::pg::version::PgVersion,
    end: Option<Lsn>,
    floor: Option<Lsn>,
    cfg: &GateConfig,
    running: bool,
) -> Result<Prepared> {
    let pgdata = dir.path();
    let bin = PgBin::find(cfg.pg_bin.as_deref(), Some(version.major))?;
    let user = OsUser::for_server(cfg.os_user.as_deref(), pgdata)?;
    let owner = OsUser::running_as_root().then_some(&user);
    let existing = lock::load(dir)?;
    let resumed = existing.is_some();
    let facts = ServerFacts::read(&bin, &user, dir)?;
    let roles = gate_roles(cfg, &user);
    let req = Request::check(cfg, existing.as_ref(), end, floor, running)?;

    // Checks done: from here on, write.
    let state = req.merge_into(existing, dir, &facts, &roles);
    lock::install(dir, &state, owner, resumed)?;
    // The target goes into the configuration before a changed state is
    // saved: a crash in between leaves the new target (already checked
    // against the floor) with the old state, never the reverse. An
    // unchanged resume leaves the configuration alone: a copy that already
    // finished recovery (promoted at its target) must not be sent back.
    if !resumed || req.changed {
        recovery::set_target(dir, version, req.recovery_target(), TimelineChoice::Latest, owner)?;
    }
    if resumed {
        lock::save(dir, &state, owner)?;
    }
    Ok(Prepared {
        bin,
        user,
        port: facts.port,
        socket_dir: facts.socket_dir,
        state,
        resumed,
        roles,
        then: req.then,
        floor: req.floor,
        stop_at: req.stop_at,
    })
}

/// What this gate run asks for, merged with a saved state, and checked.
struct Request {
    end: Option<Lsn>,
    then: Then,
    floor: Option<Lsn>,
    stop_at: Option<StopAt>,
    /// A saved state asked for something else.
    changed: bool,
}

impl Request {
    /// The options over the saved state, refused (before anything is
    /// written) when the end is below the floor, a recovery target cannot
    /// apply, or a running server was started for other targets.
    fn check(
        cfg: &GateConfig,
        existing: Option<&GateState>,
        end: Option<Lsn>,
        floor: Option<Lsn>,
        running: bool,
    ) -> Result<Request> {
        let then = cfg.then.or_else(|| existing.and_then(|s| Then::parse(&s.then))).unwrap_or(Then::Pause);
        let floor = existing.and_then(|s| s.floor_lsn).or(floor);
        if then != Then::Standby || end.is_some() {
            check_end_target(end, floor, "requested")?;
        }
        let stop_at = cfg.stop_at.clone().or_else(|| existing.and_then(|s| s.stop_at.clone()));
        if stop_at.is_some() && then == Then::Standby {
            return Err(Error::usage(
                "--then standby keeps following the WAL source: it cannot stop at a recovery target",
                Some("use --then pause or --then promote with a --target-*".into()),
            ));
        }
        let changed = existing.is_some_and(|st| st.end_lsn != end || st.then != then.as_str() || st.stop_at != stop_at);
        if changed && running {
            return Err(Error::usage(
                "the server of this unfinished gate is running with another end target, recovery target or --then",
                Some("run pgdrill gate with the same targets and --then, or stop the server first".into()),
            ));
        }
        Ok(Request { end, then, floor, stop_at, changed })
    }

    /// The state to save: the saved one (its lock's original modes kept)
    /// with this run's targets, or a new one.
    fn merge_into(&self, existing: Option<GateState>, dir: &Dir, facts: &ServerFacts, roles: &[String]) -> GateState {
        let admit = OsUser::current();
        let mut state = existing.unwrap_or_else(|| GateState {
            version: 1,
            end_lsn: self.end,
            then: self.then.as_str().into(),
            hba_mode: lock::mode_of(dir, &facts.hba_file),
            ident_mode: lock::mode_of(dir, &facts.ident_file),
            hba_file: facts.hba_file.clone(),
            ident_file: facts.ident_file.clone(),
            admit_os_user: admit.name.clone(),
            roles: roles.to_vec(),
            started_at: now_rfc3339(),
            server_started: false,
            floor_lsn: self.floor,
            stop_at: self.stop_at.clone(),
        });
        state.end_lsn = self.end;
        state.then = self.then.as_str().into();
        state.floor_lsn = self.floor;
        state.stop_at = self.stop_at.clone();
        // Whoever runs the gate now is the one the lock must admit.
        state.admit_os_user = admit.name;
        for r in roles {
            if !state.roles.contains(r) {
                state.roles.push(r.clone());
            }
        }
        state
    }

    /// Where recovery stops: PostgreSQL's recovery target for this run.
    fn recovery_target(&self) -> Option<Target> {
        let action = if self.then == Then::Promote { TargetAction::Promote } else { TargetAction::Pause };
        match (self.then, &self.stop_at) {
            (Then::Standby, _) => None,
            // PostgreSQL's default for these targets: stop after the record.
            (_, Some(at)) => Some(Target { at: at.clone(), inclusive: true, action }),
            // Our end points are record ends: stop before the next record.
            (_, None) => self.end.map(|lsn| Target { at: StopAt::Lsn(lsn), inclusive: false, action }),
        }
    }
}

/// What a hook run before opening gets: a connection spec the lock admits
/// (change its database as needed), and whether the server is read-write.
/// The hook returns its result and whether the gate may open.
pub struct Admitted {
    pub conn: ConnSpec,
    pub read_write: bool,
}

/// Run the gate.
pub fn run(cfg: &GateConfig) -> Result<GateReport> {
    run_with(cfg, |_| Ok(((), true))).map(|(r, ())| r)
}

/// Run the gate, calling `before_open` once the end target is reached (and
/// any promotion done) but while only pgdrill can connect. An error from it
/// fails closed like any other.
pub fn run_with<T>(
    cfg: &GateConfig,
    before_open: impl FnOnce(&Admitted) -> Result<(T, bool)>,
) -> Result<(GateReport, T)> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let pgdata =
        std::fs::canonicalize(&cfg.pgdata).map_err(|e| Error::ReadInput { path: cfg.pgdata.clone(), source: e })?;
    // One gate per data directory at a time.
    let _exclusive = lock::exclusive(&pgdata)?;
    let dir = Dir::open(&pgdata).map_err(|e| Error::ReadInput { path: pgdata.clone(), source: e })?;
    let info = DirInfo::read(&pgdata)?;
    let existing = lock::load(&dir)?;
    let running = probe::running_postmaster(&pgdata);
    if let (Some(pid), None) = (running, &existing) {
        return Err(Error::PostmasterRunning { path: pgdata, pid });
    }
    // The backup's own end point: saved before the server first ran, else
    // what the directory says now.
    let floor = existing.as_ref().and_then(|s| s.floor_lsn).or_else(|| info.gate_target());
    let (end, end_source) = end_target(cfg, &info, existing.as_ref(), floor)?;
    if let (Some(at), None) = (&cfg.stop_at, &existing) {
        check_stop_at(at, &info)?;
    }
    let prepared = prepare(&dir, info.control.version(), end, floor, cfg, running.is_some())?;
    let resumed = prepared.state.server_started;
    let mut pm = start_or_attach(&dir, &prepared, running.is_some())?;
    let Prepared { user, port, socket_dir, state, roles, then, floor, stop_at, .. } = prepared;
    let owner = OsUser::running_as_root().then_some(&user);

    let log_path = pm.log.clone();
    let log = follow_log(&mut pm, &pgdata, owner, running.is_some())?;
    let (start_lsn, tli) = info.start();
    let mut w = Watch {
        cfg,
        then,
        pgdata: &pgdata,
        seg: info.seg_size().unwrap_or(WalSegSize::DEFAULT),
        tli,
        end,
        floor,
        stop_at: stop_at.clone(),
        paused_sql: info.control.version().replay_paused_sql,
        start_lsn,
        conn_candidates: roles.iter().map(|r| ConnSpec::socket(&socket_dir, port, r, "postgres")).collect(),
        connected_as: None,
        client: None,
        log,
        stalls: Vec::new(),
    };
    match watch_and_open(&mut w, &mut pm, &dir, &state, owner, started, before_open) {
        Ok((o, hook)) => {
            let report = GateReport {
                pgdata: pgdata.clone(),
                port,
                socket_dir,
                then,
                end_lsn: end,
                end_source,
                recovery_target: stop_at,
                opened: o.opened,
                opened_at_lsn: o.at,
                server_consistent_lsn: monitor::consistent_lsn(&w.log.text),
                read_write: o.read_write,
                timeline: o.timeline,
                resumed,
                stalls: w.stalls.clone(),
                timings: o.timings(started, started_at),
                server_log: log_path,
            };
            if o.opened {
                pm.release();
            } else {
                // Kept shut by the hook: fail closed, the lock stays.
                let _cleaning = crate::signals::cleaning();
                pm.stop(Duration::from_secs(30));
            }
            Ok((report, hook))
        }
        Err(e) => {
            // Fail closed: the server stops; the lock stays on disk.
            let _cleaning = crate::signals::cleaning();
            pm.stop(Duration::from_secs(30));
            Err(e)
        }
    }
}

/// The server's stderr log, `log/pgdrill-postmaster.log` in the data
/// directory, opened without following links.
const GATE_LOG: &str = "log/pgdrill-postmaster.log";

/// Attach to the running server of an unfinished gate, or start the locked
/// copy.
fn start_or_attach(dir: &Dir, p: &Prepared, running: bool) -> Result<Postmaster> {
    let pgdata = dir.path();
    let owner = OsUser::running_as_root().then_some(&p.user);
    let log_path = pgdata.join(GATE_LOG);
    if running {
        return Postmaster::attach(pgdata, log_path.clone()).ok_or_else(|| Error::ServerDied {
            message: "the server of an unfinished gate stopped while we looked at it".into(),
            log: log_path,
            consistency: false,
        });
    }
    if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", p.port)) {
        drop(l);
    } else if !p.state.server_started {
        return Err(Error::usage(
            format!("port {} is in use", p.port),
            Some("pass --port to restore, or set port in postgresql.auto.conf".into()),
        ));
    }
    dir.create_dir(Path::new("log"), 0o700, owner).map_err(|e| Error::io(pgdata.join("log"), "create directory", e))?;
    let log_file = dir
        .open_append(Path::new(GATE_LOG), 0o600, owner)
        .map_err(|e| Error::io(&log_path, "open the server log", e))?;
    if !p.state.server_started {
        let mut state = p.state.clone();
        state.server_started = true;
        lock::save(dir, &state, owner)?;
    }
    Postmaster::start_with_log(
        &ServerSpec {
            bin: p.bin.clone(),
            pgdata: pgdata.to_path_buf(),
            user: p.user.clone(),
            log: log_path,
            settings: Vec::new(),
        },
        log_file,
    )
}

/// A recovery target that lies before the backup's own end: refused.
fn target_before_end(at: &StopAt, stopped: Option<Lsn>, floor: Option<Lsn>) -> Error {
    let at_lsn = stopped.map_or(String::new(), |r| format!(" (replay stopped for it at {r})"));
    let end = floor.map_or("its end point".to_string(), |f| f.to_string());
    Error::usage(
        format!("the recovery target {} lies before the backup's own end point {end}{at_lsn}", at.describe()),
        Some("a copy is consistent only from the backup's end on; choose a later target".into()),
    )
}

/// What happened between reaching the target and opening.
/// The server's log, followed from here on. A server already running (a
/// resumed gate) first reloads the lock, which may have been rewritten (who
/// is admitted changes with who resumes), and its recent log is read, where
/// its consistency point may already be.
fn follow_log(pm: &mut Postmaster, pgdata: &Path, owner: Option<&OsUser>, running: bool) -> Result<ServerLog> {
    let log_owner = owner.map(|u| u.uid);
    if running {
        pm.reload()?;
        Ok(ServerLog::with_recent(pgdata, &pm.log, log_owner, 4 << 20))
    } else {
        Ok(ServerLog::new(pgdata, &pm.log, log_owner))
    }
}

struct Opened {
    /// Replay LSN (or insert LSN after promotion) when access opened.
    at: Option<Lsn>,
    /// False when the hook kept the gate shut.
    opened: bool,
    read_write: bool,
    reached_secs: f64,
    reached_at: String,
    timeline: Option<u32>,
}

/// Wait for the end target, act on `--then`, run the hook, and open.
impl Opened {
    fn timings(&self, started: Instant, started_at: String) -> Timings {
        let total = started.elapsed().as_secs_f64();
        Timings {
            started: started_at,
            consistent: Some(self.reached_at.clone()),
            opened: self.opened.then(now_rfc3339),
            replay_secs: self.reached_secs,
            open_secs: total - self.reached_secs,
            total_secs: total,
        }
    }
}

fn watch_and_open<T>(
    w: &mut Watch,
    pm: &mut Postmaster,
    dir: &Dir,
    state: &GateState,
    owner: Option<&OsUser>,
    started: Instant,
    before_open: impl FnOnce(&Admitted) -> Result<(T, bool)>,
) -> Result<(Opened, T)> {
    let reached = wait_for_target(w, pm, started)?;
    let reached_secs = started.elapsed().as_secs_f64();
    let reached_at = now_rfc3339();
    let read_write =
        if w.then == Then::Promote && !reached.read_write { wait_for_promotion(w, pm)? } else { reached.read_write };
    let (opened_at, timeline) = w.where_it_stands(read_write);
    let conn = w.connected_as.and_then(|i| w.conn_candidates.get(i).cloned()).ok_or_else(|| Error::Precondition {
        message: "lost the connection to the restored server".into(),
        hint: String::new(),
    })?;
    let (hook, may_open) = before_open(&Admitted { conn, read_write })?;
    if may_open {
        open(w, pm, dir, state, owner)?;
    }
    Ok((
        Opened { at: opened_at.filter(|_| may_open), opened: may_open, read_write, reached_secs, reached_at, timeline },
        hook,
    ))
}

/// The target was reached; whether the server already left recovery.
struct Reached {
    read_write: bool,
}

/// Watch replay until it has reached the end target (and a target by time,
/// xid or name), diagnosing stalls; fail closed on a dead server, a
/// signal, a target before the backup's end, or the timeout.
fn wait_for_target(w: &mut Watch, pm: &mut Postmaster, started: Instant) -> Result<Reached> {
    let total = w.end.and_then(|e| e.distance_from(w.start_lsn)).unwrap_or(0);
    let pb = if w.cfg.quiet { observe::Progress::hidden() } else { observe::start("replay", Unit::Wal, total) };
    let mut last_progress = (Instant::now(), Lsn(0));
    let mut stall_reported = false;
    loop {
        if crate::signals::interrupted() {
            return Err(Error::GateInterrupted { pgdata: w.pgdata.to_path_buf() });
        }
        w.log.poll();
        if !pm.is_running() {
            return Err(w.server_died(pm));
        }
        // Connect only once the postmaster says connections are accepted,
        // so refused attempts do not fill the log.
        let ready = probe::pm_status(w.pgdata).is_some_and(|s| s == "ready" || s == "standby");
        let observed = if ready || w.client.is_some() { w.replay() } else { None };
        let position = w.position(observed, pm.pid);
        if let Some(p) = position {
            if p > last_progress.1 {
                last_progress = (Instant::now(), p);
                stall_reported = false;
            }
            pb.set_position(p.distance_from(w.start_lsn).unwrap_or(0).min(total));
            pb.set_detail(&match w.end.max(w.floor) {
                Some(e) => format!("{p} of {e}"),
                None => p.to_string(),
            });
        }
        if let Some((replay, in_recovery)) = observed {
            if w.judge(replay, in_recovery)? {
                pb.finish_and_clear();
                return Ok(Reached { read_write: !in_recovery });
            }
        }
        if last_progress.0.elapsed() >= w.cfg.stall && !stall_reported {
            let (d, _) = w.diagnose(pm.pid, position);
            observe::note(Level::Warn, &format!("stalled for {} s: {d}", w.cfg.stall.as_secs()));
            w.stalls.push(d);
            stall_reported = true;
        }
        if started.elapsed() >= w.cfg.timeout {
            let (d, hint) = w.diagnose(pm.pid, position);
            return Err(Error::Timeout {
                secs: w.cfg.timeout.as_secs(),
                message: format!(
                    "the copy did not reach its end target: {d}; the server was stopped and access never opened"
                ),
                hint,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--then promote`: the recovery target promotes the server at the end;
/// wait (bounded) until it is read-write.
fn wait_for_promotion(w: &mut Watch, pm: &mut Postmaster) -> Result<bool> {
    let limit = Duration::from_secs(120).min(w.cfg.timeout);
    let deadline = Instant::now() + limit;
    loop {
        if crate::signals::interrupted() {
            return Err(Error::GateInterrupted { pgdata: w.pgdata.to_path_buf() });
        }
        if !pm.is_running() {
            return Err(Error::ServerDied {
                message: w.last_fatal().unwrap_or_default(),
                log: pm.log.clone(),
                consistency: true,
            });
        }
        if let Some((_, false)) = w.replay() {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                secs: limit.as_secs(),
                message: format!(
                    "replay reached the end target but the server did not promote: {}",
                    w.diagnose(pm.pid, w.end).0
                ),
                hint: format!(
                    "run `pgdrill gate --pgdata {} --then promote` again once more WAL is available",
                    w.pgdata.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Watch<'_> {
    /// The newest FATAL or PANIC that is not about a client turned away.
    fn last_fatal(&self) -> Option<String> {
        monitor::fatal_lines(&self.log.text).into_iter().rev().find(|f| !monitor::fatal_is_client(f))
    }

    /// The error for a server that stopped while the gate watched it.
    fn server_died(&mut self, pm: &Postmaster) -> Error {
        self.log.poll();
        let fatal = self.last_fatal();
        if let (Some(at), Some(f)) = (&self.stop_at, &fatal) {
            if monitor::stop_before_consistency(f) {
                return target_before_end(at, None, self.floor);
            }
        }
        let consistency = fatal.as_deref().is_some_and(|f| !monitor::fatal_is_environment(f));
        Error::ServerDied {
            message: fatal.unwrap_or_else(|| crate::server::last_log_lines(&pm.log, 5)),
            log: pm.log.clone(),
            consistency,
        }
    }

    /// Where replay is: from the connection once it can be had, else from
    /// the startup process's title.
    fn position(&self, observed: Option<(Option<Lsn>, bool)>, pid: i32) -> Option<Lsn> {
        match observed {
            Some((replay, _)) => replay,
            None => match monitor::startup_activity(pid) {
                Some(StartupActivity::Recovering(s)) | Some(StartupActivity::Waiting(s)) => {
                    SegmentName::parse(&s, self.seg).ok().map(|n| n.start_lsn(self.seg))
                }
                _ => None,
            },
        }
    }

    /// Whether access may open now. Access opens at the end target and
    /// never below the backup's own end point; a target by time, xid or
    /// name is reached where replay stops for it (paused, or promoted). A
    /// stop below the backup's end is an error: the copy would be torn.
    fn judge(&mut self, replay: Option<Lsn>, in_recovery: bool) -> Result<bool> {
        let past_end = match (self.end.max(self.floor), replay) {
            (Some(e), Some(r)) => r >= e,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let at_target = self.stop_at.is_none() || !in_recovery || self.paused();
        let below_floor = matches!((self.floor, replay), (Some(f), Some(r)) if r < f);
        if let (Some(at), true, true) = (&self.stop_at, at_target, below_floor) {
            return Err(target_before_end(at, replay, self.floor));
        }
        if !in_recovery && below_floor {
            // Promoted (by hand) below the backup's end: whoever promoted it,
            // the copy is torn.
            return Err(Error::NotConsistent {
                message: format!(
                    "the server left recovery at {}, before the backup's end point {}: the copy is not consistent",
                    replay.map_or("-".to_string(), |l| l.to_string()),
                    self.floor.map_or("-".to_string(), |l| l.to_string())
                ),
                hint: "restore the backup again; do not promote a copy before the gate opens".into(),
            });
        }
        // Promoted at the target (recovery_target_action = promote).
        Ok((past_end && at_target) || !in_recovery)
    }

    /// Where the server stands when access opens: the replay LSN, or after
    /// promotion the insert LSN and the new timeline.
    fn where_it_stands(&mut self, read_write: bool) -> (Option<Lsn>, Option<u32>) {
        let sql = if read_write {
            "SELECT pg_current_wal_lsn()::text, timeline_id::text FROM pg_control_checkpoint()"
        } else {
            "SELECT pg_last_wal_replay_lsn()::text, NULL::text"
        };
        match self.connect().map(|c| c.query_one(sql, &[])) {
            Some(Ok(r)) => (
                r.get::<_, Option<String>>(0).and_then(|l| l.parse().ok()),
                r.get::<_, Option<String>>(1).and_then(|t| t.parse().ok()),
            ),
            _ => (None, None),
        }
    }
}

/// Put the original access rules back and make the server load them.
fn open(w: &mut Watch, pm: &mut Postmaster, dir: &Dir, state: &GateState, owner: Option<&OsUser>) -> Result<()> {
    w.log.poll();
    lock::restore_originals(dir, state, owner)?;
    pm.reload()?;
    // Only lines logged after our SIGHUP count.
    let mut after = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen_reload: Option<Instant> = None;
    loop {
        after.push_str(&w.log.poll());
        if monitor::hba_not_reloaded(&after) {
            // The original rules do not load: lock again, fail closed.
            lock::install(dir, state, owner, true)?;
            pm.reload()?;
            return Err(Error::Precondition {
                message: "the restored pg_hba.conf or pg_ident.conf has errors, so the server kept the gate's rules"
                    .into(),
                hint: format!(
                    "fix the file (saved in {}/), then run pgdrill gate again",
                    lock::state_dir(w.pgdata).display()
                ),
            });
        }
        // The rules are loaded right after the reload message; give a
        // refusal the same short moment to show up.
        if seen_reload.is_none() && monitor::reloaded(&after) {
            seen_reload = Some(Instant::now());
        }
        if seen_reload.is_some_and(|t| t.elapsed() >= Duration::from_millis(50)) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    lock::finish(dir)
}

/// Whether an archive directory holds WAL file `name`, plain or compressed.
fn in_archive(archive: &std::path::Path, name: &str) -> bool {
    use crate::source::{DirWal, Fetched, WalSource};
    matches!(DirWal::archive(archive).fetch(name), Ok(Fetched::Found(_)))
}
