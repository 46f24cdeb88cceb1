//! `pgdrill drill`: a restore drill in one command.
//!
//! preflight → backup → verify → restore → gate → checks → report, then the
//! restored server is stopped and the work copy removed (unless `--keep`).
//! Every step is timed, which gives the recovery-time breakdown: backup,
//! verify, copy, replay, open. The first failing step decides the exit code;
//! the steps after it are skipped.

pub mod checks;
pub mod demo;
pub mod walkeep;

use std::path::PathBuf;
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
use crate::verify::{self, Finding, VerifyConfig};
use checks::{CheckResult, CheckStatus};

/// A validated drill request.
#[derive(Clone, Debug)]
pub struct DrillConfig {
    pub standby: ConnSpec,
    pub primary: Option<ConnSpec>,
    pub pgdata: Option<PathBuf>,
    pub work: PathBuf,
    pub wal_archive: PathBuf,
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
    pub quiet: bool,
    /// Stop at this LSN instead of the backup's end (never below it).
    pub end_lsn: Option<Lsn>,
    /// Stop at a time, transaction or restore point (never below the end).
    pub stop_at: Option<crate::recovery::StopAt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
}

/// Recovery-time breakdown, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rto {
    pub backup: f64,
    pub verify: f64,
    pub copy: f64,
    pub replay: f64,
    pub open: f64,
    pub checks: f64,
    pub total: f64,
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
}

struct Runner {
    steps: Vec<Step>,
    failed: Option<u8>,
}

impl Runner {
    /// Add a step that ran whatever happened before (the checks run inside
    /// the gate). A failure counts only if nothing failed earlier.
    fn record(&mut self, name: &'static str, ok: bool, seconds: f64, detail: String) {
        let status = if ok { StepStatus::Pass } else { StepStatus::Fail };
        let exit_code = (!ok).then_some(EXIT_FAILED);
        if !ok && self.failed.is_none() {
            self.failed = Some(EXIT_FAILED);
        }
        self.steps.push(Step { name, status, seconds, detail, exit_code });
    }

    /// Run a step unless an earlier one failed. `f` returns the outcome and
    /// a detail line, or an error.
    fn step<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<(T, bool, String)>) -> Option<T> {
        if self.failed.is_some() {
            self.steps.push(Step {
                name,
                status: StepStatus::Skip,
                seconds: 0.0,
                detail: "an earlier step failed".into(),
                exit_code: None,
            });
            return None;
        }
        let t = Instant::now();
        let r = f();
        let seconds = t.elapsed().as_secs_f64();
        match r {
            Ok((v, true, detail)) => {
                self.steps.push(Step { name, status: StepStatus::Pass, seconds, detail, exit_code: None });
                Some(v)
            }
            Ok((v, false, detail)) => {
                self.failed = Some(EXIT_FAILED);
                self.steps.push(Step { name, status: StepStatus::Fail, seconds, detail, exit_code: Some(EXIT_FAILED) });
                Some(v)
            }
            Err(e) => {
                let code = e.exit_code();
                self.failed = Some(code);
                let mut detail = e.chain().join(": ");
                if let Some(h) = e.hint() {
                    detail.push_str(&format!(" (hint: {h})"));
                }
                self.steps.push(Step { name, status: StepStatus::Fail, seconds, detail, exit_code: Some(code) });
                None
            }
        }
    }
}

/// Run a drill.
pub fn run(cfg: &DrillConfig) -> Result<DrillReport> {
    let started = Instant::now();
    if std::fs::read_dir(&cfg.work).is_ok_and(|mut r| r.next().is_some()) {
        return Err(Error::TargetNotEmpty { path: cfg.work.clone() });
    }
    std::fs::create_dir_all(&cfg.work).map_err(|e| Error::io(&cfg.work, "create directory", e))?;
    let backup_dir = cfg.work.join("backup");
    let target = cfg.work.join("restore");
    let check_sql = match &cfg.check_sql {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| Error::ReadInput { path: p.clone(), source: e })?),
        None => None,
    };
    let mut run = Runner { steps: Vec::new(), failed: None };

    run.step("preflight", || {
        let r = preflight::run(&PreflightConfig {
            standby: cfg.standby.clone(),
            primary: cfg.primary.clone(),
            dest: Some(cfg.work.clone()),
            pgdata: cfg.pgdata.clone(),
            copies: 2,
        })?;
        let failed: Vec<String> = r
            .checks
            .iter()
            .filter(|c| c.status == preflight::Status::Fail)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let detail = if failed.is_empty() { format!("{} checks passed", r.checks.len()) } else { failed.join("; ") };
        Ok(((), r.ok, detail))
    });

    let backup = run.step("backup", || {
        let r = backup::run(&BackupConfig {
            standby: cfg.standby.clone(),
            primary: cfg.primary.clone(),
            dest: backup_dir.clone(),
            pgdata: cfg.pgdata.clone(),
            method: cfg.method,
            label: "pgdrill drill".into(),
            fast: true,
            jobs: cfg.jobs,
            max_rate: cfg.max_rate,
            wal_archive: Some(cfg.wal_archive.clone()),
            sync: true,
            quiet: cfg.quiet,
            allow_primary: false,
        })?;
        let method = if r.method == Method::Label { "label" } else { "legacy" };
        let detail = format!("{method} method, {} files, end {}", r.files, r.end_lsn);
        Ok((r, true, detail))
    });

    let verified = run.step("verify", || {
        let r = verify::run(&VerifyConfig {
            path: backup_dir.clone(),
            wal_archive: Some(cfg.wal_archive.clone()),
            no_wal: false,
            jobs: cfg.jobs,
            allow_missing_manifest: false,
        })?;
        let detail = format!("{} errors, {} warnings", r.errors, r.warnings);
        let ok = r.ok;
        Ok((r, ok, detail))
    });

    let restored = run.step("restore", || {
        let r = restore::run(&RestoreConfig {
            backup: backup_dir.clone(),
            target: target.clone(),
            wal_archive: Some(cfg.wal_archive.clone()),
            restore_command: None,
            primary_conninfo: None,
            then: cfg.then,
            port: cfg.port,
            timeout: cfg.timeout,
            stall: Duration::from_secs(10),
            no_start: true,
            os_user: cfg.os_user.clone(),
            pg_bin: cfg.pg_bin.clone(),
            db_user: cfg.db_user.clone(),
            jobs: cfg.jobs,
            tablespace_map: Vec::new(),
            sync: true,
            skip_manifest_check: false,
            end_lsn: cfg.end_lsn,
            stop_at: cfg.stop_at.clone(),
            quiet: cfg.quiet,
        })?;
        let detail = format!("{} files copied, {} checked against the manifest", r.files, r.manifest_checked);
        Ok((r, true, detail))
    });

    let mut checks_secs = 0.0;
    // Filled by the checks inside the gate, whatever the gate's outcome.
    let check_cell: std::cell::RefCell<Vec<CheckResult>> = std::cell::RefCell::new(Vec::new());
    let gated = run.step("gate", || {
        let gcfg = GateConfig {
            stop_at: cfg.stop_at.clone(),
            pgdata: target.clone(),
            end_lsn: restored.as_ref().and_then(|r| r.end_lsn),
            then: Some(cfg.then),
            timeout: cfg.timeout,
            stall: Duration::from_secs(10),
            pg_bin: cfg.pg_bin.clone(),
            os_user: cfg.os_user.clone(),
            db_user: cfg.db_user.clone(),
            wal_archive: Some(cfg.wal_archive.clone()),
            quiet: cfg.quiet,
        };
        // Checks run while only pgdrill can connect; if one fails the gate
        // does not open (it fails closed: server stopped, lock kept).
        let (g, ()) = gate::run_with(&gcfg, |admitted| {
            let t = Instant::now();
            let mut results = Vec::new();
            if cfg.amcheck {
                results.extend(checks::run_amcheck(&admitted.conn, admitted.read_write));
            }
            if let Some(sql) = &check_sql {
                results.extend(checks::run_sql_checks(&admitted.conn, &cfg.check_db, sql));
            }
            checks_secs = t.elapsed().as_secs_f64();
            let failed = results.iter().filter(|c| c.status == CheckStatus::Fail).count();
            *check_cell.borrow_mut() = results;
            Ok(((), failed == 0))
        })?;
        let end = g.end_lsn.map_or("-".into(), |l| l.to_string());
        let detail = if g.opened {
            format!("consistent at the end LSN {end}; opened at {}", g.opened_at_lsn.map_or("-".into(), |l| l.to_string()))
        } else {
            format!("consistent at the end LSN {end}, but checks failed, so access was not opened; the copy is stopped and stays locked")
        };
        let opened = g.opened;
        Ok((g, opened, detail))
    });
    let gate_report = gated;
    let check_results = check_cell.into_inner();

    if cfg.amcheck || check_sql.is_some() {
        // Reported even when the gate failed because of them.
        if check_results.is_empty() {
            run.step("checks", || Ok(((), true, "no checks ran".to_string())));
        } else {
            let failed: Vec<String> = check_results
                .iter()
                .filter(|c| c.status == CheckStatus::Fail)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            let skipped = check_results.iter().filter(|c| c.status == CheckStatus::Skip).count();
            let passed = check_results.iter().filter(|c| c.status == CheckStatus::Pass).count();
            let detail =
                if failed.is_empty() { format!("{passed} passed, {skipped} skipped") } else { failed.join("; ") };
            run.record("checks", failed.is_empty(), checks_secs, detail);
        }
    }

    // Clean up: stop the copy and remove the work copy unless kept.
    let _cleaning = crate::signals::cleaning();
    let cleanup_started = Instant::now();
    let mut cleanup_detail = String::new();
    if let Some(mut pm) = Postmaster::attach(&target, target.join("log/pgdrill-postmaster.log")) {
        if !cfg.keep {
            let mode = pm.stop(Duration::from_secs(60));
            cleanup_detail.push_str(&format!("server stopped ({mode:?}); "));
        } else {
            pm.release();
            cleanup_detail.push_str("server left running (--keep); ");
        }
    }
    if !cfg.keep {
        for p in [target.clone(), cfg.work.join("restore.tblspc"), backup_dir.clone()] {
            if p.exists() {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
        cleanup_detail.push_str("work copy removed");
    } else {
        cleanup_detail.push_str(&format!("work copy kept in {}", cfg.work.display()));
    }
    run.steps.push(Step {
        name: "cleanup",
        status: StepStatus::Pass,
        seconds: cleanup_started.elapsed().as_secs_f64(),
        detail: cleanup_detail,
        exit_code: None,
    });

    let rto = Rto {
        backup: backup.as_ref().map_or(0.0, |b| b.seconds),
        verify: verified.as_ref().map_or(0.0, |v| v.seconds),
        copy: restored.as_ref().map_or(0.0, |r| r.copy_secs),
        replay: gate_report.as_ref().map_or(0.0, |g| g.timings.replay_secs),
        open: gate_report.as_ref().map_or(0.0, |g| g.timings.open_secs),
        checks: checks_secs,
        total: started.elapsed().as_secs_f64(),
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
        checks: check_results,
        backup,
        restore: restored,
        gate: gate_report,
        work: cfg.work.clone(),
        kept: cfg.keep,
    })
}
