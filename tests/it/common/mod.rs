//! Helpers shared by the integration tests. Every test runs real servers
//! from the test ground (`pgdrill::ground`); nothing is mocked.

pub mod s3;
pub mod tls;

use std::path::Path;
use std::process::{Command, Output};

use pgdrill::ground::{Ground, GroundOptions, LoadOptions};
use pgdrill::pg::Lsn;
use pgdrill::server::PgBin;

pub mod compare;
pub mod prom;

/// The bindir the tests use: `PGDRILL_TEST_PG_BIN`, else Debian's 15.
pub fn bin() -> PgBin {
    let dir = std::env::var_os("PGDRILL_TEST_PG_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/lib/postgresql/15/bin"));
    PgBin::at(&dir).expect("PostgreSQL server binaries (set PGDRILL_TEST_PG_BIN)")
}

/// A primary with archiving.
pub fn primary() -> Ground {
    Ground::new(GroundOptions::new(bin())).expect("start a primary")
}

/// A primary and a hot standby.
pub fn with_standby() -> Ground {
    let mut g = primary();
    g.add_standby().expect("build a hot standby");
    g
}

/// Run the pgdrill binary.
pub fn pgdrill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdrill")).args(args).output().expect("run pgdrill")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Run pgdrill with `args` (which ask for `--json`): its exit code (0 or
/// 1, anything else fails the test) and its JSON.
pub fn run_json(args: &[&str]) -> (i32, serde_json::Value) {
    let out = pgdrill(args);
    let c = code(&out);
    assert!(c == 0 || c == 1, "{args:?}: exit {c}\n{}", stderr(&out));
    (c, json(&out))
}

/// The (kind, path) of every finding in a verify report.
pub fn finding_kinds(v: &serde_json::Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_string(), f["path"].as_str().unwrap_or("").to_string()))
        .collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Query one text value.
pub fn one(client: &mut postgres::Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

use pgdrill::ground::free_port;
use std::time::Duration;

/// Run a program as the ground's server user.
pub fn run_as(g: &Ground, program: &str, args: &[&str]) -> Output {
    g.user.command(g.bin.program(program)).args(args).output().expect("run a server program")
}

/// A backup restored with plain PostgreSQL and no pgdrill code: copy the
/// files, write the recovery settings by hand, `pg_ctl start -w`. Returns
/// the port. The copy replays from the archive only.
pub struct PlainRestore {
    pub pgdata: std::path::PathBuf,
    pub port: u16,
    pub log: std::path::PathBuf,
    pub user: pgdrill::server::OsUser,
    pub bin: PgBin,
    pub socket_dir: std::path::PathBuf,
}

impl PlainRestore {
    pub fn new(g: &Ground, backup: &Path, name: &str) -> PlainRestore {
        let pgdata = g.dir.join(name);
        let st = Command::new("cp").arg("-a").arg(backup).arg(&pgdata).status().unwrap();
        assert!(st.success());
        Command::new("chown").args(["-R", &format!("{}:", g.user.name)]).arg(&pgdata).status().unwrap();
        Command::new("chmod").arg("700").arg(&pgdata).status().unwrap();
        let port = free_port();
        let restore = format!("cp {}/%f %p", g.archive.display());
        if g.bin.major >= 12 {
            std::fs::write(pgdata.join("standby.signal"), "").unwrap();
            let mut auto = std::fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap_or_default();
            auto.push_str(&format!(
                "\nport = {port}\nprimary_conninfo = ''\nrestore_command = '{restore}'\nrecovery_target_timeline = 'latest'\n"
            ));
            std::fs::write(pgdata.join("postgresql.auto.conf"), auto).unwrap();
        } else {
            std::fs::write(
                pgdata.join("recovery.conf"),
                format!("standby_mode = 'on'\nrestore_command = '{restore}'\n"),
            )
            .unwrap();
            let mut auto = std::fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap_or_default();
            auto.push_str(&format!("\nport = {port}\n"));
            std::fs::write(pgdata.join("postgresql.auto.conf"), auto).unwrap();
        }
        for f in ["backup_manifest", "end_location"] {
            let _ = std::fs::remove_file(pgdata.join(f));
        }
        PlainRestore {
            log: g.dir.join(format!("{name}.log")),
            pgdata,
            port,
            user: g.user.clone(),
            bin: g.bin.clone(),
            socket_dir: g.sockets.clone(),
        }
    }

    /// `pg_ctl start -w`: returns once the server accepts (read-only)
    /// connections, i.e. it reached consistency.
    pub fn start(&self) -> Output {
        self.user
            .command(self.bin.program("pg_ctl"))
            .args(["start", "-w", "-t", "180", "-D"])
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log)
            .output()
            .unwrap()
    }

    pub fn client(&self) -> postgres::Client {
        pgdrill::conn::ConnSpec::socket(&self.socket_dir, self.port, "postgres", "postgres").connect().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PlainRestore {
    fn drop(&mut self) {
        let _ = self
            .user
            .command(self.bin.program("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.pgdata)
            .output();
    }
}

/// The PostgreSQL 15 pg_verifybackup, when installed.
pub fn pg_verifybackup() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from("/usr/lib/postgresql/15/bin/pg_verifybackup");
    p.exists().then_some(p)
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A client that keeps trying to connect and records what it saw: it runs
/// psql in a shell loop as the given OS user (the server's own, to show the
/// gate shuts it out too), over a socket directory or TCP host.
pub struct Knocker {
    stop: std::path::PathBuf,
    out: std::path::PathBuf,
    child: std::process::Child,
}

/// One attempt: `Some(lsn)` if it got in (the replay LSN it saw).
#[derive(Debug, Clone)]
pub struct Knock {
    pub ok: bool,
    pub lsn: Option<pgdrill::pg::Lsn>,
}

impl Knocker {
    pub fn start(g: &Ground, name: &str, host: &str, port: u16) -> Knocker {
        Self::start_as_role(g, name, host, port, "postgres")
    }

    /// Knock as the given database role.
    pub fn start_as_role(g: &Ground, name: &str, host: &str, port: u16, role: &str) -> Knocker {
        Self::start_with(g, name, host, port, role, None, 0.02)
    }

    /// Knock as `role`, with a password if given (in the environment of
    /// psql, never its argv), every `interval` seconds.
    pub fn start_with(
        g: &Ground,
        name: &str,
        host: &str,
        port: u16,
        role: &str,
        password: Option<&str>,
        interval: f64,
    ) -> Knocker {
        let stop = g.dir.join(format!("{name}.stop"));
        let out = g.dir.join(format!("{name}.knocks"));
        let _ = std::fs::remove_file(&stop);
        let _ = std::fs::remove_file(&out);
        let script = format!(
            "while [ ! -e {stop} ]; do \
               if r=$(PGCONNECT_TIMEOUT=2 /usr/bin/psql -X -w -h {host} -p {port} -U {role} -d postgres -Atc 'select pg_last_wal_replay_lsn()' 2>/dev/null); \
               then echo \"ok $r\" >> {out}; else echo fail >> {out}; fi; \
               sleep {interval}; \
             done",
            stop = stop.display(),
            out = out.display()
        );
        let mut cmd = g.user.command("/bin/sh");
        cmd.arg("-c").arg(script);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        let child = cmd.spawn().expect("start a knocker");
        Knocker { stop, out, child }
    }

    pub fn stop(mut self) -> Vec<Knock> {
        self.halt();
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| match l.strip_prefix("ok ") {
                Some(lsn) => Knock { ok: true, lsn: lsn.trim().parse().ok() },
                None => Knock { ok: false, lsn: None },
            })
            .collect()
    }
}

impl Knocker {
    fn halt(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        let _ = self.child.wait();
    }
}

impl Drop for Knocker {
    /// Stop the loop even when a test fails.
    fn drop(&mut self) {
        self.halt();
    }
}

/// Names in the archive directory.
pub fn archive_listing(g: &Ground) -> Vec<String> {
    // Hidden names are archive_command's temporary files.
    let mut v: Vec<String> = std::fs::read_dir(&g.archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// `pgdrill backup` of the ground's standby into `dest`, with `--primary`
/// (so the end segment reaches the archive), `--fast` and `--no-sync`,
/// plus `extra`. Asserts success and returns the JSON report.
pub fn backup_cli(g: &Ground, method: &str, dest: &Path, extra: &[&str]) -> serde_json::Value {
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let mut args = vec!["backup", "--standby", &standby, "--primary", &primary, "--dest", dest.to_str().unwrap()];
    args.extend_from_slice(&["--method", method, "--fast", "--json", "--no-sync"]);
    args.extend_from_slice(extra);
    let out = pgdrill(&args);
    assert_eq!(code(&out), 0, "backup: {}", stderr(&out));
    json(&out)
}

/// Remove `names` from a backup's manifest and write it back with a valid
/// manifest checksum, as if the backup had never held them (a backup of a
/// Debian-layout cluster has no postgresql.conf, for example).
pub fn drop_from_manifest(backup: &Path, names: &[&str]) {
    use pgdrill::pg::manifest::Manifest;
    let path = backup.join("backup_manifest");
    let m = Manifest::parse(&std::fs::read(&path).unwrap()).unwrap();
    let files: Vec<_> = m.files.into_iter().filter(|f| !names.iter().any(|n| f.path == n.as_bytes())).collect();
    let text = Manifest::render(m.version, m.system_identifier.unwrap_or(0), &files, &m.wal_ranges);
    std::fs::write(&path, text).unwrap();
}

/// A backup of the ground's standby taken under load with the CLI.
pub fn backup(g: &Ground, method: &str, extra: &[&str]) -> (std::path::PathBuf, Lsn) {
    let dest = g.dir.join(format!("backup-{method}"));
    let r = backup_cli(g, method, &dest, extra);
    let end: Lsn = r["end_lsn"].as_str().unwrap().parse().unwrap();
    (dest, end)
}

pub fn lsn(v: &serde_json::Value) -> Option<Lsn> {
    v.as_str().and_then(|s| s.parse().ok())
}

pub fn stop_server(g: &Ground, pgdata: &std::path::Path) {
    let _ = g.user.command(g.bin.program("pg_ctl")).args(["stop", "-m", "fast", "-D"]).arg(pgdata).output();
}

/// A copy of the archive without the segment holding `end`.
pub fn archive_without_end_segment(g: &Ground, end: Lsn) -> (std::path::PathBuf, String) {
    let partial = g.dir.join("partial-archive");
    std::fs::create_dir_all(&partial).unwrap();
    let seg = pgdrill::pg::WalSegSize::DEFAULT;
    let missing =
        pgdrill::pg::wal::SegmentName::new(pgdrill::pg::TimelineId(1), end.prev_segment_number(seg)).file_name(seg);
    for e in std::fs::read_dir(&g.archive).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy() != missing {
            std::fs::copy(e.path(), partial.join(e.file_name())).unwrap();
        }
    }
    Command::new("chown").args(["-R", &format!("{}:", g.user.name)]).arg(&partial).status().unwrap();
    (partial, missing)
}

/// A backup whose WAL spans a few segments (so one can go missing).
pub fn ground_with_backup(method: &str) -> (Ground, std::path::PathBuf, Lsn) {
    let g = with_standby();
    let load = g.start_load(LoadOptions { filler_bytes: 8000, ..LoadOptions::default() }).unwrap();
    sleep_ms(1500);
    let (b, end) = backup(&g, method, &[]);
    load.stop();
    (g, b, end)
}

pub fn knock_once(g: &Ground, host: &str, port: u16) -> bool {
    g.user
        .command("/usr/bin/psql")
        .args(["-X", "-w", "-h", host, "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-Atc", "select 1"])
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Make a backup's manifest agree with a file edited after the backup (its
/// size and CRC-32C), with a valid manifest checksum.
pub fn refresh_in_manifest(backup: &Path, name: &str) {
    use pgdrill::pg::manifest::{ChecksumAlgorithm, Manifest};
    let path = backup.join("backup_manifest");
    let m = Manifest::parse(&std::fs::read(&path).unwrap()).unwrap();
    let bytes = std::fs::read(backup.join(name)).unwrap();
    let mut files = m.files.clone();
    for f in files.iter_mut().filter(|f| f.path == name.as_bytes()) {
        f.size = bytes.len() as u64;
        f.checksum = Some((ChecksumAlgorithm::Crc32c, crc32c::crc32c(&bytes).to_le_bytes().to_vec()));
    }
    let text = Manifest::render(m.version, m.system_identifier.unwrap_or(0), &files, &m.wal_ranges);
    std::fs::write(&path, text).unwrap();
}

/// `pgdrill restore B --target T --wal-archive A --port P --no-sync`, plus
/// `extra`.
pub fn restore_cli(b: &str, target: &str, archive: &str, port: &str, extra: &[&str]) -> Output {
    let mut args = vec!["restore", b, "--target", target, "--wal-archive", archive, "--port", port, "--no-sync"];
    args.extend_from_slice(extra);
    pgdrill(&args)
}
