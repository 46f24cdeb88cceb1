use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{OsUser, PgBin};
use crate::error::{Error, Result};

/// How to start a postmaster.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub bin: PgBin,
    pub pgdata: PathBuf,
    pub user: OsUser,
    /// The server's stderr goes here (appended).
    pub log: PathBuf,
    /// `-c name=value` settings. They override the configuration files for
    /// the life of this postmaster.
    pub settings: Vec<(String, String)>,
}

/// A running (or recently running) postmaster.
#[derive(Debug)]
pub struct Postmaster {
    pub pid: i32,
    pub pgdata: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// Stop the server when this handle is dropped (test guards).
    stop_on_drop: bool,
}

/// How a stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    AlreadyStopped,
    Fast,
    Immediate,
    Killed,
}

impl Postmaster {
    /// Start `postgres -D pgdata` as the spec's user, in its own process
    /// group, with stdin closed and stdout/stderr appended to the log.
    pub fn start(spec: &ServerSpec) -> Result<Postmaster> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| Error::io(&spec.log, "open the server log", e))?;
        // The server's user must be able to use its own log later (a gate
        // resumed by that user, pg_ctl -l).
        spec.user.chown(&spec.log)?;
        Self::start_with_log(spec, log)
    }

    /// Start with stdout/stderr appended to `log`, already open (the gate
    /// opens it without following links; `spec.log` names it in messages).
    pub fn start_with_log(spec: &ServerSpec, log: std::fs::File) -> Result<Postmaster> {
        let err = log.try_clone().map_err(|e| Error::io(&spec.log, "open the server log", e))?;
        let postgres = spec.bin.program("postgres");
        let mut cmd = spec.user.command(&postgres);
        cmd.arg("-D").arg(&spec.pgdata);
        for (k, v) in &spec.settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(err)).process_group(0);
        let child = cmd.spawn().map_err(|e| Error::Program {
            program: postgres.display().to_string(),
            message: format!("cannot start it: {e}"),
            log: Some(spec.log.clone()),
        })?;
        Ok(Postmaster {
            pid: child.id() as i32,
            pgdata: spec.pgdata.clone(),
            log: spec.log.clone(),
            child: Some(child),
            stop_on_drop: false,
        })
    }

    /// A handle on a postmaster that is already running on `pgdata`. Its
    /// log is where its stderr goes, if that is a file (a server started by
    /// hand with `pg_ctl -l`), else `log`.
    pub fn attach(pgdata: &Path, log: PathBuf) -> Option<Postmaster> {
        let pid = super::running_postmaster(pgdata)?;
        let log = std::fs::read_link(format!("/proc/{pid}/fd/2")).ok().filter(|p| p.is_file()).unwrap_or(log);
        Some(Postmaster { pid, pgdata: pgdata.to_path_buf(), log, child: None, stop_on_drop: false })
    }

    /// Stop the server when the handle is dropped, even during a panic.
    pub fn guard(mut self) -> Self {
        self.stop_on_drop = true;
        self
    }

    /// Keep the server running after the handle is dropped.
    pub fn release(mut self) {
        self.stop_on_drop = false;
        // Dropping a Child does not kill it; the postmaster outlives us.
        self.child = None;
    }

    /// Whether the postmaster process still exists.
    pub fn is_running(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            return matches!(child.try_wait(), Ok(None));
        }
        let pid = Pid::from_raw(self.pid);
        // A postmaster this process started earlier (and released) is still
        // our child: reap it, or it lingers as a zombie that looks alive.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(_) => return false,
            Err(_) => {}
        }
        let alive = matches!(kill(pid, None), Ok(()) | Err(nix::errno::Errno::EPERM));
        alive && !is_zombie(self.pid)
    }

    /// Poll `ready` until it returns true, the process exits, or `timeout`
    /// passes.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if !self.is_running() {
                return Err(Error::ServerDied {
                    message: format!("postgres exited during startup: {}", last_log_lines(&self.log, 5)),
                    log: self.log.clone(),
                    consistency: false,
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    secs: timeout.as_secs(),
                    message: format!("the server on {} did not accept connections", self.pgdata.display()),
                    hint: format!("see the server log {}", self.log.display()),
                });
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        !self.is_running()
    }

    /// Stop: fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL
    /// of the process group, each given part of `budget`.
    pub fn stop(&mut self, budget: Duration) -> StopMode {
        if !self.is_running() {
            return StopMode::AlreadyStopped;
        }
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGINT);
        if self.wait_exit(budget.mul_f32(0.7)) {
            return StopMode::Fast;
        }
        let _ = kill(pid, Signal::SIGQUIT);
        if self.wait_exit(budget.mul_f32(0.3).max(Duration::from_secs(2))) {
            return StopMode::Immediate;
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(5));
        StopMode::Killed
    }

    /// Send SIGHUP: reload the configuration files.
    pub fn reload(&self) -> Result<()> {
        kill(Pid::from_raw(self.pid), Signal::SIGHUP)
            .map_err(|e| Error::io(&self.pgdata, "signal the postmaster", std::io::Error::from(e)))
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.stop(Duration::from_secs(20));
        }
    }
}

/// Whether /proc says the process is a zombie (exited, not yet reaped).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()).map(|st| st == "Z"))
        .unwrap_or(false)
}

/// The last `n` non-empty lines of a log, joined, for error messages.
pub fn last_log_lines(log: &Path, n: usize) -> String {
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
