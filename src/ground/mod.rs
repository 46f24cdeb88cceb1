//! The test ground: real PostgreSQL clusters in a temporary directory.
//!
//! A [`Ground`] is a primary that archives into a WAL archive directory, and
//! optionally a hot standby that streams from it and restores from the
//! archive. Everything runs on free ports, with a private socket directory,
//! as the `postgres` OS user when pgdrill runs as root. Servers are stopped
//! when the ground is dropped, also during a panic.
//!
//! The test suite and `pgdrill demo` both use it. The standby is built with
//! pgdrill's own backup code (the npm server builds ship no pg_basebackup).

mod load;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::Client;

pub use load::{invariant_sql, Load, LoadOptions, LoadStats};

use crate::backup::{self, BackupConfig, Method};
use crate::conn::ConnSpec;
use crate::error::{Error, Result};
use crate::pg::Lsn;
use crate::recovery::{self, RecoveryPlan, TimelineChoice};
use crate::server::{OsUser, PgBin, Postmaster, ServerSpec};

/// The database role of every ground cluster.
pub const ROLE: &str = "postgres";

/// Options for a new ground.
#[derive(Clone, Debug)]
pub struct GroundOptions {
    pub bin: PgBin,
    /// Where to create it; a new temporary directory when `None`.
    pub dir: Option<PathBuf>,
    /// `initdb --wal-segsize` in MiB (11+).
    pub wal_segsize_mb: Option<u32>,
    /// Run initdb even if a cached template exists (gives a new system
    /// identifier).
    pub fresh_initdb: bool,
    /// Extra settings for the primary's postgresql.conf.
    pub primary_settings: Vec<(String, String)>,
}

impl GroundOptions {
    pub fn new(bin: PgBin) -> GroundOptions {
        GroundOptions { bin, dir: None, wal_segsize_mb: None, fresh_initdb: false, primary_settings: Vec::new() }
    }
}

/// One cluster of the ground.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub pgdata: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    pub bin: PgBin,
    pub user: OsUser,
    postmaster: Option<Postmaster>,
}

impl Cluster {
    /// A conninfo string for this cluster (Unix socket, no password).
    pub fn conninfo(&self) -> String {
        format!("host={} port={} user={ROLE} dbname=postgres", self.socket_dir.display(), self.port)
    }

    pub fn conn(&self) -> ConnSpec {
        ConnSpec::socket(&self.socket_dir, self.port, ROLE, "postgres")
    }

    pub fn client(&self) -> Result<Client> {
        self.conn().connect()
    }

    pub fn is_running(&mut self) -> bool {
        self.postmaster.as_mut().is_some_and(Postmaster::is_running)
    }

    pub fn pid(&self) -> Option<i32> {
        self.postmaster.as_ref().map(|p| p.pid)
    }

    /// Start and wait until it accepts connections.
    pub fn start(&mut self) -> Result<()> {
        let spec = ServerSpec {
            bin: self.bin.clone(),
            pgdata: self.pgdata.clone(),
            user: self.user.clone(),
            log: self.log.clone(),
            settings: Vec::new(),
        };
        let mut pm = Postmaster::start(&spec)?.guard();
        let conn = self.conn();
        pm.wait_ready(Duration::from_secs(120), || conn.connect().is_ok())?;
        self.postmaster = Some(pm);
        Ok(())
    }

    /// Fast shutdown.
    pub fn stop(&mut self) {
        if let Some(mut pm) = self.postmaster.take() {
            pm.stop(Duration::from_secs(30));
        }
    }

    /// Promote a standby and wait until it is read-write.
    pub fn promote(&mut self) -> Result<()> {
        let out = self
            .user
            .command(self.bin.program("pg_ctl"))
            .args(["promote", "-w", "-D"])
            .arg(&self.pgdata)
            .output()
            .map_err(|e| Error::Program { program: "pg_ctl".into(), message: e.to_string(), log: None })?;
        if !out.status.success() {
            return Err(Error::Program {
                program: "pg_ctl promote".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                log: Some(self.log.clone()),
            });
        }
        let mut c = self.client()?;
        for _ in 0..600 {
            let r: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).map(|r| r.get(0)).unwrap_or(true);
            if !r {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Timeout { secs: 60, message: "the standby did not finish promotion".into(), hint: String::new() })
    }

    /// Serve TLS with `cert` and `key` (copied into the data directory as
    /// server.crt and server.key, mode 0600, owned by the server user) and
    /// replace pg_hba.conf with `hba`. Takes effect at the next start or
    /// [`Cluster::reload`]; a standby built afterwards inherits all of it.
    pub fn serve_tls(&self, cert: &Path, key: &Path, hba: &str) -> Result<()> {
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = self.pgdata.join(name);
            fs::copy(from, &to).map_err(|e| Error::io(&to, "copy", e))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(&to, "chmod", e))?;
            self.user.chown(&to)?;
        }
        self.configure(&[
            ("ssl", "on".into()),
            ("ssl_cert_file", "server.crt".into()),
            ("ssl_key_file", "server.key".into()),
        ])?;
        let path = self.pgdata.join("pg_hba.conf");
        fs::write(&path, hba).map_err(|e| Error::io(&path, "write", e))?;
        self.user.chown(&path)
    }

    /// Reload the configuration files.
    pub fn reload(&self) -> Result<()> {
        let sql = "SELECT pg_reload_conf()";
        self.client()?.batch_execute(sql).map_err(|e| Error::Sql {
            target: self.name.clone(),
            what: crate::conn::first_words(sql),
            source: e,
        })
    }

    /// Append settings to postgresql.conf.
    pub fn configure(&self, settings: &[(&str, String)]) -> Result<()> {
        let path = self.pgdata.join("postgresql.conf");
        let mut text = fs::read_to_string(&path).map_err(|e| Error::ReadInput { path: path.clone(), source: e })?;
        text.push_str("\n# pgdrill test ground\n");
        for (k, v) in settings {
            text.push_str(&format!("{k} = {}\n", crate::pg::conf::quote(v)));
        }
        fs::write(&path, text).map_err(|e| Error::io(&path, "write", e))
    }
}

/// A primary, an archive, and maybe a hot standby.
pub struct Ground {
    pub dir: PathBuf,
    pub bin: PgBin,
    pub user: OsUser,
    pub archive: PathBuf,
    pub sockets: PathBuf,
    pub primary: Cluster,
    pub standby: Option<Cluster>,
    // Dropped last: the directory outlives the servers.
    _tmp: Option<tempfile::TempDir>,
}

/// A port nobody listens on right now, never the same twice in one
/// process (tests run in parallel threads and bind late).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..200 {
        let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else { continue };
        let Ok(a) = l.local_addr() else { continue };
        let p = a.port();
        let mut given = match GIVEN.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
        if p > 1024 && !given.contains(&p) {
            given.push(p);
            return p;
        }
    }
    5433
}

/// Create a directory the server user can use.
fn mkdir_for(user: &OsUser, path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(path, "create directory", e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, "chmod", e))?;
    user.chown(path)
}

/// Run a program as `user`, failing with its stderr.
pub fn run_as(user: &OsUser, program: &Path, args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = user.command(program).args(args).output().map_err(|e| Error::Program {
        program: program.display().to_string(),
        message: e.to_string(),
        log: None,
    })?;
    if !out.status.success() {
        return Err(Error::Program {
            program: program.display().to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            log: None,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// initdb into `pgdata`, reusing a cached template cluster when allowed.
fn initdb(bin: &PgBin, user: &OsUser, pgdata: &Path, segsize: Option<u32>, fresh: bool) -> Result<()> {
    let mut args: Vec<String> = vec!["-A".into(), "trust".into(), "-U".into(), ROLE.into(), "-E".into(), "UTF8".into()];
    args.push("--locale=C".into());
    if let Some(s) = segsize {
        args.push(format!("--wal-segsize={s}"));
    }
    if fresh {
        let mut a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
        a.push("-D".as_ref());
        a.push(pgdata.as_os_str());
        run_as(user, &bin.program("initdb"), &a)?;
        return Ok(());
    }
    let key = format!("{}|{}|{}|{}", bin.dir.display(), bin.version, args.join(" "), user.name);
    let hash = crc32c::crc32c(key.as_bytes());
    let cache = std::env::temp_dir().join("pgdrill-initdb-cache");
    let template = cache.join(format!("{hash:08x}"));
    if !template.join("global/pg_control").exists() {
        mkdir_for(user, &cache, 0o755)?;
        // Unique per process and per call: tests run in threads of one process.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = cache.join(format!("{hash:08x}.{}.{seq}.tmp", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let mut a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
        a.push("-D".as_ref());
        a.push(tmp.as_os_str());
        a.push("-N".as_ref());
        run_as(user, &bin.program("initdb"), &a)?;
        // Another process may have won the race; either copy is fine.
        if fs::rename(&tmp, &template).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(&template)
        .arg(pgdata)
        .output()
        .map_err(|e| Error::Program { program: "cp".into(), message: e.to_string(), log: None })?;
    if !out.status.success() {
        return Err(Error::Program {
            program: "cp -a".into(),
            message: String::from_utf8_lossy(&out.stderr).into(),
            log: None,
        });
    }
    Ok(())
}

impl Ground {
    /// Create and start a primary with WAL archiving.
    pub fn new(opts: GroundOptions) -> Result<Ground> {
        let (tmp, dir) = match &opts.dir {
            Some(d) => {
                fs::create_dir_all(d).map_err(|e| Error::io(d, "create directory", e))?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("pgdrill-ground-")
                    .tempdir()
                    .map_err(|e| Error::io(std::env::temp_dir(), "create a temporary directory", e))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let user = if OsUser::running_as_root() { OsUser::by_name("postgres")? } else { OsUser::current() };
        mkdir_for(&user, &dir, 0o755)?;
        let archive = dir.join("archive");
        let sockets = dir.join("run");
        mkdir_for(&user, &archive, 0o755)?;
        mkdir_for(&user, &sockets, 0o755)?;
        let pgdata = dir.join("primary");
        initdb(&opts.bin, &user, &pgdata, opts.wal_segsize_mb, opts.fresh_initdb)?;
        let mut primary = Cluster {
            name: "primary".into(),
            pgdata,
            port: free_port(),
            socket_dir: sockets.clone(),
            log: dir.join("primary.log"),
            bin: opts.bin.clone(),
            user: user.clone(),
            postmaster: None,
        };
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("port", primary.port.to_string()),
            ("unix_socket_directories", sockets.display().to_string()),
            ("wal_level", "replica".into()),
            ("max_wal_senders", "10".into()),
            ("hot_standby", "on".into()),
            ("archive_mode", "on".into()),
            // Atomic: a segment appears in the archive only when complete.
            (
                "archive_command",
                format!("test ! -f {0}/%f && cp %p {0}/.%f.tmp && mv {0}/.%f.tmp {0}/%f", archive.display()),
            ),
            ("fsync", "off".into()),
            ("max_connections", "40".into()),
            ("shared_buffers", "32MB".into()),
            ("logging_collector", "off".into()),
            ("log_line_prefix", "%m [%p] ".into()),
            ("max_wal_size", "256MB".into()),
        ];
        let version = crate::pg::version::by_major(opts.bin.major).ok_or_else(|| Error::Precondition {
            message: "not a supported major".into(),
            hint: crate::pg::version::supported_text(),
        })?;
        // Keep 512 MB of WAL for standbys: a size from 13, a count before.
        let keep = if version.wal_keep_setting == "wal_keep_size" { "512MB" } else { "32" };
        settings.push((version.wal_keep_setting, keep.into()));
        for (k, v) in &opts.primary_settings {
            settings.push((k.as_str(), v.clone()));
        }
        primary.configure(&settings)?;
        primary.start()?;
        Ok(Ground { dir, bin: opts.bin, user, archive, sockets, primary, standby: None, _tmp: tmp })
    }

    /// Build a hot standby from a backup of the primary taken with
    /// pgdrill's label method, streaming from the primary and restoring from
    /// the archive, and wait until it accepts read-only connections.
    pub fn add_standby(&mut self) -> Result<()> {
        let standby = self.new_standby_of(&self.primary, "standby")?;
        self.standby = Some(standby);
        self.wait_standby_caught_up(Duration::from_secs(60))?;
        Ok(())
    }

    /// Build and start a hot standby of `upstream` (the primary, or a
    /// standby for cascading replication) named `name`, following the
    /// latest timeline and restoring from the archive. The caller owns it.
    pub fn new_standby_of(&self, upstream: &Cluster, name: &str) -> Result<Cluster> {
        let pgdata = self.dir.join(name);
        backup::run(&BackupConfig {
            s3_config: Default::default(),
            s3: None,
            standby: upstream.conn(),
            primary: None,
            dest: pgdata.clone(),
            pgdata: Some(upstream.pgdata.clone()),
            method: Method::Label,
            label: format!("pgdrill test ground: {name}"),
            fast: true,
            jobs: 2,
            max_rate: None,
            wal_archive: None,
            archive_timeout: backup::DEFAULT_ARCHIVE_TIMEOUT,
            sync: false,
            quiet: true,
            allow_primary: true,
            format: backup::OutputFormat::Plain,
        })?;
        for f in ["backup_manifest", "end_location"] {
            let _ = fs::remove_file(pgdata.join(f));
        }
        let version = crate::pg::version::by_major(self.bin.major).ok_or_else(|| Error::Precondition {
            message: "not a supported major".into(),
            hint: crate::pg::version::supported_text(),
        })?;
        self.relocate_tablespaces(&pgdata, name, version)?;
        let port = free_port();
        let dir =
            crate::safefs::Dir::open(&pgdata).map_err(|e| Error::ReadInput { path: pgdata.clone(), source: e })?;
        recovery::write(
            &dir,
            version,
            &RecoveryPlan {
                standby_mode: true,
                restore_command: Some(format!("cp {}/%f %p", self.archive.display())),
                primary_conninfo: Some(format!(
                    "host={} port={} user={ROLE} application_name={name}",
                    self.sockets.display(),
                    upstream.port
                )),
                target: None,
                timeline: TimelineChoice::Latest,
                sandbox: false,
                port: Some(port),
                hot_standby: true,
            },
            Some(&self.user),
        )?;
        let mut standby = Cluster {
            name: name.into(),
            pgdata,
            port,
            socket_dir: self.sockets.clone(),
            log: self.dir.join(format!("{name}.log")),
            bin: self.bin.clone(),
            user: self.user.clone(),
            postmaster: None,
        };
        standby.start()?;
        Ok(standby)
    }

    /// On one host a standby cannot share its upstream's tablespace
    /// directories: move each backed-up tablespace to `<name>.tblspc/<oid>`,
    /// link it, and point tablespace_map there.
    fn relocate_tablespaces(&self, pgdata: &Path, name: &str, version: &crate::pg::version::PgVersion) -> Result<()> {
        let tblspc = pgdata.join("pg_tblspc");
        let mut entries = Vec::new();
        for e in fs::read_dir(&tblspc).map_err(|e| Error::io(&tblspc, "read directory", e))? {
            let e = e.map_err(|e| Error::io(&tblspc, "read directory", e))?;
            let Ok(oid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let home = self.dir.join(format!("{name}.tblspc"));
            mkdir_for(&self.user, &home, 0o700)?;
            let dest = home.join(oid.to_string());
            fs::rename(e.path(), &dest).map_err(|err| Error::io(&dest, "move a tablespace", err))?;
            std::os::unix::fs::symlink(&dest, e.path()).map_err(|err| Error::io(e.path(), "link a tablespace", err))?;
            self.user.chown(&e.path())?;
            entries.push(crate::pg::label::TablespaceEntry { oid, path: dest.display().to_string() });
        }
        let map = pgdata.join("tablespace_map");
        if !entries.is_empty() && map.exists() {
            let text = crate::pg::label::render_tablespace_map(&entries, version.tablespace_map_escapes);
            fs::write(&map, text).map_err(|e| Error::io(&map, "write", e))?;
        }
        Ok(())
    }

    pub fn standby(&self) -> Result<&Cluster> {
        self.standby.as_ref().ok_or_else(|| Error::Precondition {
            message: "the ground has no standby".into(),
            hint: "call add_standby first".into(),
        })
    }

    pub fn standby_mut(&mut self) -> Result<&mut Cluster> {
        self.standby.as_mut().ok_or_else(|| Error::Precondition {
            message: "the ground has no standby".into(),
            hint: "call add_standby first".into(),
        })
    }

    /// Wait until the standby has replayed everything the primary has
    /// written so far.
    pub fn wait_standby_caught_up(&self, timeout: Duration) -> Result<Lsn> {
        let mut p = self.primary.client()?;
        let target: String = p
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .map_err(|e| Error::Sql { target: "primary".into(), what: "pg_current_wal_lsn()".into(), source: e })?
            .get(0);
        let target: Lsn = target.parse().unwrap_or_default();
        let standby = self.standby()?;
        let deadline = std::time::Instant::now() + timeout;
        // A standby that cancels conflicting queries at once
        // (max_standby_streaming_delay = 0) may end this session, or refuse
        // it while it starts: reconnect until the deadline.
        let mut session: Option<postgres::Client> = None;
        loop {
            let past = std::time::Instant::now() > deadline;
            if session.is_none() {
                match standby.client() {
                    Ok(c) => session = Some(c),
                    Err(e) if past => return Err(e),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                }
            }
            let Some(s) = session.as_mut() else { continue };
            let r: Option<String> = match s.query_one("SELECT pg_last_wal_replay_lsn()::text", &[]) {
                Ok(row) => row.get(0),
                Err(e) if past => {
                    return Err(Error::Sql {
                        target: "standby".into(),
                        what: "pg_last_wal_replay_lsn()".into(),
                        source: e,
                    })
                }
                Err(_) => {
                    session = None;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let replay = r.and_then(|r| r.parse::<Lsn>().ok()).unwrap_or_default();
            if replay >= target {
                return Ok(replay);
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    secs: timeout.as_secs(),
                    message: format!("the standby replayed up to {replay}, the primary is at {target}"),
                    hint: format!("see {}", standby.log.display()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run SQL on the primary.
    pub fn primary_exec(&self, sql: &str) -> Result<()> {
        let mut c = self.primary.client()?;
        c.batch_execute(sql).map_err(|e| Error::Sql {
            target: "primary".into(),
            what: crate::conn::first_words(sql),
            source: e,
        })
    }

    /// Create the load's tables and start it.
    pub fn start_load(&self, opts: LoadOptions) -> Result<Load> {
        Load::start(self.primary.conn(), opts)
    }

    /// Keep the directory after the ground is dropped (for debugging).
    pub fn keep(&mut self) -> PathBuf {
        if let Some(t) = self._tmp.take() {
            let _ = t.keep();
        }
        self.dir.clone()
    }
}

impl Drop for Ground {
    fn drop(&mut self) {
        // PGDRILL_KEEP_GROUND=1 keeps the directory (servers still stop).
        if std::env::var_os("PGDRILL_KEEP_GROUND").is_some() {
            let kept = self.keep();
            crate::observe::note(crate::observe::Level::Warn, &format!("kept the test ground in {}", kept.display()));
        }
        if let Some(s) = &mut self.standby {
            s.stop();
        }
        self.primary.stop();
    }
}

/// The server's own view of its control file, in the shape of
/// `testdata/control/*/server.json` (see [`compare`]).
pub fn server_control_view(client: &mut Client) -> Result<serde_json::Value> {
    let q = |client: &mut Client, sql: &str| -> Result<serde_json::Value> {
        let text: String = client
            .query_one(sql, &[])
            .map_err(|e| Error::Sql { target: "server".into(), what: crate::conn::first_words(sql), source: e })?
            .get(0);
        serde_json::from_str(&text)
            .map_err(|e| Error::Precondition { message: format!("bad JSON from the server: {e}"), hint: String::new() })
    };
    let mut v = serde_json::json!({});
    for f in ["pg_control_system", "pg_control_checkpoint", "pg_control_init", "pg_control_recovery"] {
        v[f] = q(client, &format!("SELECT row_to_json(t)::text FROM {f}() t"))?;
    }
    v["unix_times"] = q(
        client,
        "SELECT json_build_object('checkpoint_time', extract(epoch FROM c.checkpoint_time)::bigint,
                'pg_control_last_modified', extract(epoch FROM s.pg_control_last_modified)::bigint)::text
         FROM pg_control_checkpoint() c, pg_control_system() s",
    )?;
    Ok(v)
}
