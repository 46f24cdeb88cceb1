//! `pgdrill drill`: a restore drill in one command.
//!
//! preflight → backup → verify → restore → gate → checks → report, then the
//! restored server is stopped and the work copy removed (unless `--keep`).
//! Every step is timed, which gives the recovery-time breakdown: backup,
//! verify, copy, replay, open. The first failing step decides the exit code;
//! the steps after it are skipped. A failed step carries its causes (the
//! failed preflight checks, verify's error findings, the error chain, the
//! failed checks), so every report says why.
//!
//! With `--rto-target`, an `rto` step compares the recovery time (copy +
//! replay + open) with the target. [`history`] appends the drill to a
//! history file and reads it back for trends; [`metrics`] writes the
//! Prometheus textfile.

pub mod checks;
#[cfg(feature = "demo")]
pub mod demo;
pub mod history;
pub mod metrics;
pub mod port;
pub mod walkeep;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backup::preflight::{self, PreflightConfig};
use crate::backup::{self, BackupConfig, BackupReport, Method};
use crate::conn::ConnSpec;
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::gate::{self, GateConfig, GateReport, Then};
use crate::pg::Lsn;
use crate::restore::{self, RestoreConfig, RestoreReport};
use crate::server::Postmaster;
use crate::verify::{self, Finding, VerifyConfig, VerifyReport};
use checks::{CheckResult, CheckStatus};

/// A validated drill request.
#[derive(Clone, Debug)]
pub struct DrillConfig {
    pub standby: ConnSpec,
    pub primary: Option<ConnSpec>,
    pub pgdata: Option<PathBuf>,
    pub work: PathBuf,
    /// The WAL archive directory: verify reads it, and the restored copy
    /// restores from it unless `restore_command` is given.
    pub wal_archive: Option<PathBuf>,
    /// Back up into object storage instead of the work directory.
    pub backup_dest: Option<crate::objstore::S3Url>,
    /// How to reach object storage for `s3://` locations.
    pub s3: crate::objstore::S3Config,
    pub method: Method,
    pub check_sql: Option<PathBuf>,
    pub check_db: String,
    pub amcheck: bool,
    pub then: Then,
    pub port: Option<u16>,
    pub timeout: Duration,
    pub keep: bool,
    pub pg_bin: Option<PathBuf>,
    pub os_user: Option<String>,
    pub db_user: Option<String>,
    pub jobs: usize,
    pub max_rate: Option<u64>,
    /// Where the JUnit report will be written (checked before any step).
    pub junit: Option<PathBuf>,
    pub quiet: bool,
    /// A restore_command of the user's for the restored copy.
    pub restore_command: Option<String>,
    /// The gate's stall diagnosis interval.
    pub stall: Duration,
    /// Tablespace OID → directory for the restored copy.
    pub tablespace_map: Vec<(u32, PathBuf)>,
    /// fsync the backup and the restored copy.
    pub sync: bool,
    /// Fail the drill when the recovery time (copy + replay + open) is
    /// longer than this.
    pub rto_target: Option<Duration>,
    /// The `cluster` label of the history and metrics (default: see
    /// [`metrics::cluster_label`]).
    pub cluster: Option<String>,
    /// Append one JSON line per drill here.
    pub history: Option<PathBuf>,
    /// Write the Prometheus textfile here.
    pub metrics: Option<PathBuf>,
    /// Stop at this LSN instead of the backup's end (never below it).
    pub end_lsn: Option<Lsn>,
    /// Stop at a time, transaction or restore point (never below the end).
    pub stop_at: Option<crate::recovery::StopAt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Pass,
    Fail,
    Skip,
}

/// One step of the drill.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub status: StepStatus,
    pub seconds: f64,
    pub detail: String,
    /// The exit code this step's failure means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    /// Why a failed step failed, one line each: the failed preflight
    /// checks, verify's error findings, the error and its causes, the
    /// failed checks. At most [`MAX_CAUSES`] (+ one "and N more" line).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
}

/// How many causes a step lists.
pub const MAX_CAUSES: usize = 20;

/// Causes as listed: at most [`MAX_CAUSES`], then how many more there were.
fn bounded(causes: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = 0usize;
    for c in causes {
        if out.len() < MAX_CAUSES {
            out.push(c);
        } else {
            more += 1;
        }
    }
    if more > 0 {
        out.push(format!("... and {more} more"));
    }
    out
}

/// One line for a verify finding: kind, where, and what is wrong.
pub fn finding_line(f: &Finding) -> String {
    let mut s = f.kind.to_string();
    if let Some(p) = &f.path {
        s.push_str(&format!(" {p}"));
    }
    if let Some(l) = f.lsn {
        s.push_str(&format!(" at {l}"));
    }
    s.push_str(&format!(": {}", f.message));
    s
}

/// The causes of an error: its message, each cause, and the hint.
fn error_causes(e: &Error) -> Vec<String> {
    let mut out = e.chain();
    if let Some(h) = e.hint() {
        out.push(format!("hint: {h}"));
    }
    out
}

/// Recovery-time breakdown, in seconds.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Rto {
    pub backup: f64,
    pub verify: f64,
    pub copy: f64,
    pub replay: f64,
    pub open: f64,
    pub checks: f64,
    pub total: f64,
    /// What a real recovery from this backup takes: copy + replay + open.
    /// `--rto-target` is compared with this.
    pub recovery: f64,
}

/// The result of a drill; its JSON form is documented in docs/json.md.
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub ok: bool,
    pub exit_code: u8,
    pub steps: Vec<Step>,
    pub rto: Rto,
    pub end_lsn: Option<Lsn>,
    pub opened_at_lsn: Option<Lsn>,
    pub server_consistent_lsn: Option<Lsn>,
    pub findings: Vec<Finding>,
    pub checks: Vec<CheckResult>,
    pub backup: Option<BackupReport>,
    pub restore: Option<RestoreReport>,
    pub gate: Option<GateReport>,
    pub work: PathBuf,
    pub kept: bool,
    /// `--rto-target`, in seconds.
    pub rto_target: Option<f64>,
    /// The port the restored copy used (or would have used).
    pub port: Option<u16>,
    /// When the drill started and ended (RFC 3339, UTC).
    pub started_at: String,
    pub finished_at: String,
}

impl DrillReport {
    /// The first step that failed.
    pub fn failed_step(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.status == StepStatus::Fail)
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// WAL replayed from the backup's start to its end, in bytes.
    pub fn wal_bytes(&self) -> Option<u64> {
        let b = self.backup.as_ref()?;
        b.end_lsn.0.checked_sub(b.start_lsn.0)
    }

    /// Replay rate in bytes per second, when the gate ran.
    pub fn replay_rate(&self) -> Option<f64> {
        let g = self.gate.as_ref()?;
        let bytes = self.wal_bytes()?;
        (g.timings.replay_secs > 0.0).then(|| bytes as f64 / g.timings.replay_secs)
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Runner {
    steps: Vec<Step>,
    failed: Option<u8>,
}

impl Runner {
    /// Add a step that ran whatever happened before (the checks run inside
    /// the gate). A failure counts only if nothing failed earlier.
    fn record(&mut self, name: &'static str, ok: bool, seconds: f64, detail: String, causes: Vec<String>) {
        let status = if ok { StepStatus::Pass } else { StepStatus::Fail };
        let exit_code = (!ok).then_some(EXIT_FAILED);
        if !ok && self.failed.is_none() {
            self.failed = Some(EXIT_FAILED);
        }
        say_done(name, ok, seconds);
        self.steps.push(Step {
            name,
            status,
            seconds,
            detail,
            exit_code,
            causes: if ok { Vec::new() } else { bounded(causes) },
        });
    }

    /// Skip a step because an earlier one failed.
    fn skip(&mut self, name: &'static str) {
        self.steps.push(Step {
            name,
            status: StepStatus::Skip,
            seconds: 0.0,
            detail: "an earlier step failed".into(),
            exit_code: None,
            causes: Vec::new(),
        });
    }

    /// Run a step unless an earlier one failed. `f` returns the value, the
    /// outcome, a detail line and (on failure) the causes, or an error.
    fn step<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<Outcome<T>>) -> Option<T> {
        if self.failed.is_some() {
            self.skip(name);
            return None;
        }
        crate::observe::note(crate::observe::Level::Info, &format!("drill: {name} ..."));
        let t = Instant::now();
        let r = {
            // Steps without a progress meter of their own say they are
            // alive, so a CI log never goes quiet for long.
            let _alive = (!METERED.contains(&name)).then(|| Heartbeat::start(name));
            f()
        };
        let seconds = t.elapsed().as_secs_f64();
        match r {
            Ok(o) => {
                self.record(name, o.ok, seconds, o.detail, o.causes);
                Some(o.value)
            }
            Err(e) => {
                let code = e.exit_code();
                self.failed = Some(code);
                say_done(name, false, seconds);
                let mut detail = e.chain().join(": ");
                if let Some(h) = e.hint() {
                    detail.push_str(&format!(" (hint: {h})"));
                }
                let causes = bounded(error_causes(&e));
                self.steps.push(Step {
                    name,
                    status: StepStatus::Fail,
                    seconds,
                    detail,
                    exit_code: Some(code),
                    causes,
                });
                None
            }
        }
    }
}

/// Whether this process may write into directory `dir`.
fn writable_dir(dir: &Path) -> bool {
    use nix::unistd::{access, AccessFlags};
    dir.is_dir() && access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
}

/// Check every path before any step runs, so a drill that cannot finish
/// never starts (and changes nothing).
fn validate_inputs(cfg: &DrillConfig) -> Result<()> {
    let bad = |what: String, hint: &str| Err(Error::usage(what, Some(hint.to_string())));
    if let Some(a) = cfg.wal_archive.as_ref().filter(|a| !a.to_str().is_some_and(crate::objstore::is_s3)) {
        if !a.is_dir() || std::fs::read_dir(a).is_err() {
            return bad(
                format!("--wal-archive {}: not a readable directory", a.display()),
                "pass the directory the primary's archive_command writes to",
            );
        }
    }
    if let Some(p) = &cfg.pgdata {
        if !p.is_dir() {
            return bad(format!("--pgdata {}: no such directory", p.display()), "pass the standby's data directory");
        }
    }
    if cfg.work.exists() {
        if !cfg.work.is_dir() {
            return bad(format!("--work {}: not a directory", cfg.work.display()), "pass a new or empty directory");
        }
        if std::fs::read_dir(&cfg.work).is_ok_and(|mut r| r.next().is_some()) {
            return Err(Error::TargetNotEmpty { path: cfg.work.clone() });
        }
        if !writable_dir(&cfg.work) {
            return bad(format!("--work {}: not writable", cfg.work.display()), "pass a directory you may write to");
        }
    } else {
        let parent = cfg.work.ancestors().skip(1).find(|a| a.exists()).unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        if !writable_dir(parent) {
            return bad(
                format!("--work {}: cannot be created in {}", cfg.work.display(), parent.display()),
                "pass a work directory under one you may write to",
            );
        }
    }
    if let Some(j) = &cfg.junit {
        let parent = j.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file_ok = !j.exists() || (j.is_file() && nix::unistd::access(j, nix::unistd::AccessFlags::W_OK).is_ok());
        if !writable_dir(parent) || !file_ok {
            return bad(
                format!("--junit {}: cannot be written", j.display()),
                "pass a file in an existing directory you may write to",
            );
        }
    }
    Ok(())
}

/// What a step returns.
struct Outcome<T> {
    value: T,
    ok: bool,
    detail: String,
    causes: Vec<String>,
}

impl<T> Outcome<T> {
    fn pass(value: T, detail: String) -> Outcome<T> {
        Outcome { value, ok: true, detail, causes: Vec::new() }
    }

    fn new(value: T, ok: bool, detail: String, causes: Vec<String>) -> Outcome<T> {
        Outcome { value, ok, detail, causes }
    }
}

/// Steps that report progress through a meter of their own (copy, replay).
const METERED: [&str; 3] = ["backup", "restore", "gate"];
/// How often a step without a meter says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// A note every [`HEARTBEAT`] while a step runs: `drill: verify still
/// running (60 s)`. Stops when dropped.
struct Heartbeat {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(name: &'static str) -> Heartbeat {
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let theirs = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pgdrill-heartbeat".into())
            .spawn(move || {
                let started = Instant::now();
                let (lock, cv) = &*theirs;
                let mut stopped = match lock.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                loop {
                    let (g, timeout) = match cv.wait_timeout(stopped, HEARTBEAT) {
                        Ok(r) => r,
                        Err(p) => p.into_inner(),
                    };
                    stopped = g;
                    if *stopped {
                        return;
                    }
                    if timeout.timed_out() {
                        let secs = started.elapsed().as_secs();
                        crate::observe::note(
                            crate::observe::Level::Info,
                            &format!("drill: {name} still running ({secs} s)"),
                        );
                    }
                }
            })
            .ok();
        Heartbeat { stop, thread }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        match lock.lock() {
            Ok(mut g) => *g = true,
            Err(p) => *p.into_inner() = true,
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A line in the log for each finished step (CI logs show where a drill is).
fn say_done(name: &str, ok: bool, seconds: f64) {
    let level = if ok { crate::observe::Level::Info } else { crate::observe::Level::Warn };
    let what = if ok { "passed" } else { "FAILED" };
    crate::observe::note(level, &format!("drill: {name} {what} ({seconds:.1} s)"));
}

/// Run a drill.
pub fn run(cfg: &DrillConfig) -> Result<DrillReport> {
    let started = Instant::now();
    validate_inputs(cfg)?;
    // Read before anything is created: a drill that fails on its input
    // leaves nothing behind.
    let check_sql = match &cfg.check_sql {
        Some(p) if !p.is_file() => {
            return Err(Error::usage(format!("--check-sql {}: no such file", p.display()), None));
        }
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| Error::ReadInput { path: p.clone(), source: e })?),
        None => None,
    };
    let started_at = now_rfc3339();
    std::fs::create_dir_all(&cfg.work).map_err(|e| Error::io(&cfg.work, "create directory", e))?;
    let backup_dir = match &cfg.backup_dest {
        Some(url) => PathBuf::from(url.to_string()),
        None => cfg.work.join("backup"),
    };
    let target = cfg.work.join("restore");
    let mut run = Runner { steps: Vec::new(), failed: None };

    run.step("preflight", || preflight_step(cfg));
    let backup = run.step("backup", || backup_step(cfg, &backup_dir));
    let verified = run.step("verify", || verify_step(cfg, &backup_dir));
    let mut chosen_port = None;
    let restored = run.step("restore", || restore_step(cfg, &backup_dir, &target, &mut chosen_port));
    let mut checks = CheckRun::default();
    let gate_report =
        run.step("gate", || gate_step(cfg, &target, restored.as_ref(), check_sql.as_deref(), &mut checks));
    if cfg.amcheck || check_sql.is_some() {
        checks_step(&mut run, &checks);
    }

    let copy = restored.as_ref().map_or(0.0, |r| r.copy_secs);
    let replay = gate_report.as_ref().map_or(0.0, |g| g.timings.replay_secs);
    let open = gate_report.as_ref().map_or(0.0, |g| g.timings.open_secs);
    let recovery = copy + replay + open;
    if let Some(target) = cfg.rto_target {
        rto_step(&mut run, target, recovery, copy, replay, open, gate_report.is_some());
    }
    let cleanup_detail = cleanup(cfg, &target, &backup_dir, restored.as_ref());
    run.steps.push(cleanup_detail);

    let rto = Rto {
        backup: backup.as_ref().map_or(0.0, |b| b.seconds),
        verify: verified.as_ref().map_or(0.0, |v| v.seconds),
        copy,
        replay,
        open,
        checks: checks.secs,
        total: started.elapsed().as_secs_f64(),
        recovery,
    };
    let exit_code = run.failed.unwrap_or(EXIT_OK);
    Ok(DrillReport {
        ok: exit_code == EXIT_OK,
        exit_code,
        steps: run.steps,
        rto,
        end_lsn: gate_report.as_ref().and_then(|g| g.end_lsn).or_else(|| backup.as_ref().map(|b| b.end_lsn)),
        opened_at_lsn: gate_report.as_ref().and_then(|g| g.opened_at_lsn),
        server_consistent_lsn: gate_report.as_ref().and_then(|g| g.server_consistent_lsn),
        findings: verified.map(|v| v.findings).unwrap_or_default(),
        checks: checks.results,
        backup,
        restore: restored,
        gate: gate_report,
        work: cfg.work.clone(),
        kept: cfg.keep,
        rto_target: cfg.rto_target.map(|d| d.as_secs_f64()),
        port: chosen_port,
        started_at,
        finished_at: now_rfc3339(),
    })
}

/// Preflight against the standby (and the primary), for the work directory.
fn preflight_step(cfg: &DrillConfig) -> Result<Outcome<()>> {
    let r = preflight::run(&PreflightConfig {
        standby: cfg.standby.clone(),
        primary: cfg.primary.clone(),
        dest: Some(cfg.work.clone()),
        pgdata: cfg.pgdata.clone(),
        method: cfg.method,
        copies: 2,
    })?;
    let failed: Vec<&preflight::Check> = r.checks.iter().filter(|c| c.status == preflight::Status::Fail).collect();
    let causes = failed
        .iter()
        .map(|c| match &c.hint {
            Some(h) => format!("{}: {} (hint: {h})", c.name, c.detail),
            None => format!("{}: {}", c.name, c.detail),
        })
        .collect();
    let detail = if failed.is_empty() {
        format!("{} checks passed", r.checks.len())
    } else {
        failed.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; ")
    };
    Ok(Outcome::new((), r.ok, detail, causes))
}

/// A fast backup of the standby into the work directory.
fn backup_step(cfg: &DrillConfig, backup_dir: &Path) -> Result<Outcome<BackupReport>> {
    let r = backup::run(&BackupConfig {
        s3: cfg.backup_dest.as_ref().map(|url| backup::S3Dest { url: url.clone(), config: cfg.s3.clone() }),
        s3_config: cfg.s3.clone(),
        standby: cfg.standby.clone(),
        primary: cfg.primary.clone(),
        dest: backup_dir.to_path_buf(),
        pgdata: cfg.pgdata.clone(),
        method: cfg.method,
        label: "pgdrill drill".into(),
        fast: true,
        jobs: cfg.jobs,
        max_rate: cfg.max_rate,
        wal_archive: cfg.wal_archive.clone(),
        archive_timeout: backup::DEFAULT_ARCHIVE_TIMEOUT,
        sync: cfg.sync,
        quiet: cfg.quiet,
        allow_primary: false,
        format: backup::OutputFormat::Plain,
    })?;
    if r.exit_code() != EXIT_OK {
        // --primary could not get the end segment archived.
        return Err(Error::Timeout {
            secs: r.wal_switch.as_ref().map_or(0, |w| w.waited_secs as u64),
            message: format!("the backup's end segment did not reach the archive ({} files copied)", r.files),
            hint: "check the primary's archive_command and pg_stat_archiver".into(),
        });
    }
    let method = if r.method == Method::Label { "label" } else { "legacy" };
    let detail = format!("{method} method, {} files, end {}", r.files, r.end_lsn);
    Ok(Outcome::pass(r, detail))
}

/// Verify the backup and its WAL chain.
fn verify_step(cfg: &DrillConfig, backup_dir: &Path) -> Result<Outcome<VerifyReport>> {
    let r = verify::run(&VerifyConfig {
        path: backup_dir.to_path_buf(),
        wal_archive: cfg.wal_archive.clone(),
        // The restored copy's own WAL source: the archive directory, else
        // the user's restore_command.
        restore_command: if cfg.wal_archive.is_none() { cfg.restore_command.clone() } else { None },
        no_wal: false,
        jobs: cfg.jobs,
        allow_missing_manifest: false,
        s3: cfg.s3.clone(),
    })?;
    let errors: Vec<&Finding> = r.findings.iter().filter(|f| f.is_error()).collect();
    let mut detail = format!("{} errors, {} warnings", r.errors, r.warnings);
    if let Some(first) = errors.first() {
        detail.push_str(&format!("; first: {}", finding_line(first)));
    }
    let causes = errors.iter().map(|f| finding_line(f)).collect();
    let ok = r.ok;
    Ok(Outcome::new(r, ok, detail, causes))
}

/// Restore the backup, locked and not started, on a chosen port.
fn restore_step(
    cfg: &DrillConfig,
    backup_dir: &Path,
    target: &Path,
    chosen_port: &mut Option<u16>,
) -> Result<Outcome<RestoreReport>> {
    let p = match cfg.port {
        Some(p) => p,
        None => port::choose(cfg.standby.port())?,
    };
    *chosen_port = Some(p);
    let r = restore::run(&RestoreConfig {
        backup: backup_dir.to_path_buf(),
        target: target.to_path_buf(),
        wal_archive: if cfg.restore_command.is_some() { None } else { cfg.wal_archive.clone() },
        s3: cfg.s3.clone(),
        restore_command: cfg.restore_command.clone(),
        primary_conninfo: None,
        then: cfg.then,
        port: Some(p),
        timeout: cfg.timeout,
        stall: cfg.stall,
        no_start: true,
        os_user: cfg.os_user.clone(),
        pg_bin: cfg.pg_bin.clone(),
        db_user: cfg.db_user.clone(),
        jobs: cfg.jobs,
        tablespace_map: cfg.tablespace_map.clone(),
        sync: cfg.sync,
        skip_manifest_check: false,
        end_lsn: cfg.end_lsn,
        stop_at: cfg.stop_at.clone(),
        quiet: cfg.quiet,
    })?;
    let detail = format!("{} files copied, {} checked against the manifest; port {p}", r.files, r.manifest_checked);
    Ok(Outcome::pass(r, detail))
}

/// What the checks inside the gate found, and how long they took.
#[derive(Default)]
struct CheckRun {
    results: Vec<CheckResult>,
    secs: f64,
}

/// The gate, with the checks run while only pgdrill can connect: if one
/// fails the gate does not open (it fails closed: server stopped, lock
/// kept).
fn gate_step(
    cfg: &DrillConfig,
    target: &Path,
    restored: Option<&RestoreReport>,
    check_sql: Option<&str>,
    checks: &mut CheckRun,
) -> Result<Outcome<GateReport>> {
    let gcfg = GateConfig {
        stop_at: cfg.stop_at.clone(),
        pgdata: target.to_path_buf(),
        end_lsn: restored.and_then(|r| r.end_lsn),
        then: Some(cfg.then),
        timeout: cfg.timeout,
        stall: cfg.stall,
        pg_bin: cfg.pg_bin.clone(),
        os_user: cfg.os_user.clone(),
        db_user: cfg.db_user.clone(),
        wal_archive: cfg.wal_archive.clone(),
        quiet: cfg.quiet,
    };
    let (g, ()) = gate::run_with(&gcfg, |admitted| {
        let t = Instant::now();
        let mut results = Vec::new();
        if cfg.amcheck {
            results.extend(checks::run_amcheck(&admitted.conn, admitted.read_write));
        }
        if let Some(sql) = check_sql {
            results.extend(checks::run_sql_checks(&admitted.conn, &cfg.check_db, sql));
        }
        checks.secs = t.elapsed().as_secs_f64();
        let failed = results.iter().filter(|c| c.status == CheckStatus::Fail).count();
        checks.results = results;
        Ok(((), failed == 0))
    })?;
    let end = g.end_lsn.map_or("-".into(), |l| l.to_string());
    let (detail, causes) = if g.opened {
        let at = g.opened_at_lsn.map_or("-".into(), |l| l.to_string());
        (format!("consistent at the end LSN {end}; opened at {at}"), Vec::new())
    } else {
        (
            format!("consistent at the end LSN {end}, but checks failed, so access was not opened; the copy is stopped and stays locked"),
            checks.results.iter().filter(|c| c.status == CheckStatus::Fail).map(check_line).collect(),
        )
    };
    let opened = g.opened;
    Ok(Outcome::new(g, opened, detail, causes))
}

/// The `checks` step, reported even when the gate failed because of them.
fn checks_step(run: &mut Runner, checks: &CheckRun) {
    if checks.results.is_empty() {
        run.step("checks", || Ok(Outcome::pass((), "no checks ran".to_string())));
        return;
    }
    let failed: Vec<&CheckResult> = checks.results.iter().filter(|c| c.status == CheckStatus::Fail).collect();
    let skipped = checks.results.iter().filter(|c| c.status == CheckStatus::Skip).count();
    let passed = checks.results.iter().filter(|c| c.status == CheckStatus::Pass).count();
    let detail = if failed.is_empty() {
        format!("{passed} passed, {skipped} skipped")
    } else {
        failed.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("; ")
    };
    let causes = failed.iter().map(|c| check_line(c)).collect();
    run.record("checks", failed.is_empty(), checks.secs, detail, causes);
}

/// One line for a failed check: which, why, and the statement.
fn check_line(c: &CheckResult) -> String {
    match &c.sql {
        Some(sql) => format!("{}: {} [statement: {sql}]", c.name, c.detail),
        None => format!("{}: {}", c.name, c.detail),
    }
}

/// The `rto` step: the recovery time against `--rto-target`.
fn rto_step(run: &mut Runner, target: Duration, recovery: f64, copy: f64, replay: f64, open: f64, gated: bool) {
    if run.failed.is_some() || !gated {
        run.skip("rto");
        return;
    }
    let target = target.as_secs_f64();
    let detail = format!(
        "recovery took {recovery:.1} s (copy {copy:.1} + replay {replay:.1} + open {open:.1}), target {target:.0} s"
    );
    let ok = recovery <= target;
    let causes = if ok {
        Vec::new()
    } else {
        vec![format!(
            "the recovery time {recovery:.1} s is over the target of {target:.0} s by {:.1} s",
            recovery - target
        )]
    };
    run.record("rto", ok, 0.0, detail, causes);
}

/// Stop the copy and remove the work copy unless kept: the `cleanup` step,
/// which always runs.
fn cleanup(
    cfg: &DrillConfig,
    target: &std::path::Path,
    backup_dir: &std::path::Path,
    restored: Option<&RestoreReport>,
) -> Step {
    let _cleaning = crate::signals::cleaning();
    let cleanup_started = Instant::now();
    let mut cleanup_detail = String::new();
    if let Some(mut pm) = Postmaster::attach(target, target.join("log/pgdrill-postmaster.log")) {
        if !cfg.keep {
            let mode = pm.stop(Duration::from_secs(60));
            cleanup_detail.push_str(&format!("server stopped ({mode:?}); "));
        } else {
            pm.release();
            cleanup_detail.push_str("server left running (--keep); ");
        }
    }
    // The restored server's credential file for object storage, if any:
    // it replays no more.
    if let Ok(abs) = std::path::absolute(target) {
        let _ = std::fs::remove_file(crate::restore::s3_credential_path(&abs));
    }
    if !cfg.keep {
        // A backup in object storage is kept.
        let backup_dir = Some(backup_dir).filter(|_| cfg.backup_dest.is_none());
        for p in [Some(target), Some(cfg.work.join("restore.tblspc").as_path()), backup_dir].into_iter().flatten() {
            if p.exists() {
                let _ = std::fs::remove_dir_all(p);
            }
        }
        // Tablespaces restored where --tablespace-map put them: the restore
        // wanted those directories new or empty, so empty them again (the
        // directories themselves may be mount points of the user's).
        for t in restored.iter().flat_map(|r| r.tablespaces.iter()) {
            let _ = crate::safefs::Dir::open(&t.location).and_then(|d| d.clear());
        }
        cleanup_detail.push_str("work copy removed");
    } else {
        cleanup_detail.push_str(&format!("work copy kept in {}", cfg.work.display()));
    }
    Step {
        name: "cleanup",
        status: StepStatus::Pass,
        seconds: cleanup_started.elapsed().as_secs_f64(),
        detail: cleanup_detail,
        exit_code: None,
        causes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovery_slower_than_the_target_fails_the_drill() {
        let mut run = Runner { steps: Vec::new(), failed: None };
        rto_step(&mut run, Duration::from_secs(10), 12.5, 5.0, 7.0, 0.5, true);
        assert_eq!(run.failed, Some(EXIT_FAILED));
        let s = &run.steps[0];
        assert_eq!((s.name, s.status), ("rto", StepStatus::Fail));
        assert!(s.causes[0].contains("12.5 s is over the target of 10 s by 2.5 s"), "{:?}", s.causes);

        let mut run = Runner { steps: Vec::new(), failed: None };
        rto_step(&mut run, Duration::from_secs(10), 9.0, 4.0, 4.5, 0.5, true);
        assert_eq!((run.failed, run.steps[0].status), (None, StepStatus::Pass));

        // No gate, or an earlier failure: skipped, not judged.
        let mut run = Runner { steps: Vec::new(), failed: None };
        rto_step(&mut run, Duration::from_secs(10), 0.0, 0.0, 0.0, 0.0, false);
        assert_eq!((run.failed, run.steps[0].status), (None, StepStatus::Skip));
    }

    #[test]
    fn causes_are_bounded() {
        let c = bounded((0..30).map(|i| i.to_string()));
        assert_eq!(c.len(), MAX_CAUSES + 1);
        assert_eq!(c[MAX_CAUSES], "... and 10 more");
        assert_eq!(bounded(vec!["a".to_string()]), vec!["a"]);
    }
}
