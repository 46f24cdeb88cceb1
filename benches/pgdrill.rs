//! Benchmarks against reference tools, run side by side (`just bench`).
//!
//! Not tests: the figures are ratios against a reference measured in the
//! same run, in turns, with medians reported. They go into
//! docs/performance.md.
//!
//! - `backup`: `pgdrill backup` vs `pg_basebackup -Fp -X none` from the same
//!   standby vs `cp -a` of the same data directory (all without fsync).
//! - `gate`: time from replay reaching the end target to the first client
//!   admitted (a psql loop knocking as another OS user), and the restore's
//!   copy vs `cp -a` of the backup.
//!
//! - `s3`: `pgdrill backup --dest s3://...` vs `pg_basebackup` to local disk
//!   followed by `s5cmd cp` (else `aws s3 cp --recursive`) into the same store,
//!   and vs `pgdrill backup` to local disk; peak RSS. The store is s3s-fs
//!   (`PGDRILL_BENCH_S3FS` or `s3s-fs` on PATH: a Rust server on the local
//!   file system) if installed, else moto's server.
//! - `s3-verify`: `pgdrill verify s3://...` of a backup and its WAL archive
//!   in the store vs `pgdrill verify` of the same backup and archive on
//!   local disk, with the page cache warm and (as root) dropped; peak RSS,
//!   and the S3 server's CPU time.
//!
//! Usage: `cargo bench --bench pgdrill -- [backup] [gate] [s3] [s3-verify] [--scale N] [--rounds N]`.
//! Needs root (servers run as the postgres OS user) and PostgreSQL 15's
//! pg_basebackup and pgbench (Debian).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgdrill::ground::{free_port, Ground, GroundOptions};
use pgdrill::server::PgBin;

/// The bindir: `PGDRILL_TEST_PG_BIN`, else Debian's 15.
fn test_bin() -> pgdrill::error::Result<PgBin> {
    let dir: std::path::PathBuf =
        std::env::var_os("PGDRILL_TEST_PG_BIN").map_or_else(|| "/usr/lib/postgresql/15/bin".into(), Into::into);
    PgBin::at(&dir)
}

const PG15: &str = "/usr/lib/postgresql/15/bin";

/// Wall time and peak RSS of one command.
struct Run {
    secs: f64,
    max_rss_kib: i64,
}

// The child is reaped by wait4 (which also gives its peak RSS), not by
// Child::wait, so clippy cannot see it.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> Run {
    let start = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as i32;
    let mut status = 0;
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid pointers.
    let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let secs = start.elapsed().as_secs_f64();
    assert!(nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0, "{cmd:?} failed with status {status}");
    Run { secs, max_rss_kib: usage.ru_maxrss }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn du(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("0").parse().unwrap_or(0)
}

fn rm(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

fn drop_caches_note() -> &'static str {
    "page cache warm (every tool reads the same data in turns)"
}

/// A primary of `scale` pgbench scale and a hot standby of it.
fn setup(scale: u32, root: &Path) -> Ground {
    let mut o = GroundOptions::new(test_bin().expect("PostgreSQL binaries"));
    o.dir = Some(root.join("ground"));
    o.fresh_initdb = true;
    o.primary_settings = vec![("max_wal_size".into(), "4GB".into()), ("checkpoint_timeout".into(), "30min".into())];
    let mut g = Ground::new(o).expect("primary");
    eprintln!("bench: pgbench -i -s {scale} (about {} MB) ...", scale * 15);
    let st = g
        .user
        .command(format!("{PG15}/pgbench"))
        .args([
            "-i",
            "-q",
            "-s",
            &scale.to_string(),
            "-h",
            g.sockets.to_str().unwrap(),
            "-p",
            &g.primary.port.to_string(),
            "-U",
            "postgres",
            "postgres",
        ])
        .status()
        .unwrap();
    assert!(st.success(), "pgbench -i failed");
    g.primary_exec("CHECKPOINT").unwrap();
    eprintln!("bench: building the standby ...");
    g.add_standby().expect("standby");
    g.primary_exec("CHECKPOINT").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(600)).unwrap();
    g
}

fn bench_backup(g: &Ground, root: &Path, rounds: usize) -> String {
    let s = g.standby().unwrap();
    let data = du(&s.pgdata);
    let pgdrill = env!("CARGO_BIN_EXE_pgdrill");
    let (mut ours, mut basebackup, mut cp) = (Vec::new(), Vec::new(), Vec::new());
    let mut rss = 0i64;
    let dest = root.join("bench-backup");
    for round in 0..rounds {
        eprintln!("bench: backup round {}/{rounds}", round + 1);
        rm(&dest);
        let r = measure(
            Command::new(pgdrill)
                .args([
                    "backup",
                    "--standby",
                    &s.conninfo(),
                    "--dest",
                    dest.to_str().unwrap(),
                    "--fast",
                    "--no-sync",
                    "--json",
                ])
                .stdout(std::process::Stdio::null()),
        );
        ours.push(r.secs);
        rss = rss.max(r.max_rss_kib);
        rm(&dest);
        let r = measure(
            g.user
                .command(format!("{PG15}/pg_basebackup"))
                .args(["-D", dest.to_str().unwrap(), "-Fp", "-X", "none", "-c", "fast", "--no-sync"])
                .args(["-h", g.sockets.to_str().unwrap(), "-p", &s.port.to_string(), "-U", "postgres"]),
        );
        basebackup.push(r.secs);
        rm(&dest);
        let r = measure(Command::new("cp").arg("-a").arg(&s.pgdata).arg(&dest));
        cp.push(r.secs);
        rm(&dest);
    }
    let (o, b, c) = (median(&mut ours), median(&mut basebackup), median(&mut cp));
    format!(
        "### backup\n\nData directory of the standby: {:.2} GB; {rounds} rounds in turns, medians; {}.\n\n\
         | tool | median | vs pgdrill |\n|---|---|---|\n\
         | pgdrill backup --no-sync | {o:.2} s | 1.00 |\n\
         | pg_basebackup -Fp -X none --no-sync | {b:.2} s | pgdrill is {:.2}× faster (target ≥ 1.5×) |\n\
         | cp -a | {c:.2} s | pgdrill runs at {:.2}× the speed of cp -a (target ≥ 0.9×) |\n\n\
         Peak RSS of pgdrill backup: {:.1} MB (target ≤ 64 MB).\n",
        data as f64 / 1e9,
        drop_caches_note(),
        b / o,
        c / o,
        rss as f64 / 1024.0
    )
}

/// An S3-compatible server for the `s3` benchmark.
struct S3Server {
    child: std::process::Child,
    port: u16,
    kind: &'static str,
    /// The AWS CLI's configuration: s3s-fs stalls on the CLI's multipart
    /// uploads, so files go up in one PUT each (the CLI's own choice up to
    /// 8 MB), which favours the reference if anything.
    config: PathBuf,
}

const S3_KEY: &str = "pgdrillbench";
const S3_SECRET: &str = "pgdrill-bench-secret";

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

impl S3Server {
    /// A fresh server holding one empty bucket `bench`.
    fn start(root: &Path) -> S3Server {
        let port = free_port();
        let data = root.join("s3data");
        rm(&data);
        let s3fs = std::env::var_os("PGDRILL_BENCH_S3FS").map(PathBuf::from).or_else(|| which("s3s-fs"));
        let (child, kind) = match s3fs {
            Some(bin) => {
                std::fs::create_dir_all(data.join("bench")).unwrap();
                let child = Command::new(bin)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
                    .arg(&data)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start s3s-fs");
                (child, "s3s-fs")
            }
            None => {
                let child = Command::new(which("moto_server").expect("moto_server or s3s-fs"))
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start moto_server");
                (child, "moto")
            }
        };
        let config = root.join("aws-config");
        std::fs::write(&config, "[default]\ns3 =\n    multipart_threshold = 4GB\n").unwrap();
        let s = S3Server { child, port, kind, config };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the S3 server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        if s.kind == "moto" {
            let st = s.aws().args(["s3", "mb", "s3://bench"]).stdout(std::process::Stdio::null()).status().unwrap();
            assert!(st.success(), "create the bucket");
        }
        s
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // The AWS CLI's default request checksums (aws-chunked uploads
            // with trailers) are more than s3s-fs and older stores take.
            .env("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
            .env("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
            .env("AWS_CONFIG_FILE", &self.config)
            .env_remove("AWS_PROFILE");
    }

    /// The reference upload of a directory: s5cmd (parallel, 256 workers
    /// by default) if installed, else the AWS CLI; and how the table
    /// names it.
    fn upload(&self, dir: &Path, url: &str) -> (Command, &'static str) {
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        match which("s5cmd") {
            Some(bin) => {
                let mut cmd = Command::new(bin);
                self.env(&mut cmd);
                cmd.args(["--log", "error", "--endpoint-url", &endpoint, "cp"])
                    .arg(format!("{}/*", dir.display()))
                    .arg(url)
                    .stdout(std::process::Stdio::null());
                (cmd, "s5cmd cp")
            }
            None => {
                let mut cmd = self.aws();
                cmd.args(["s3", "cp", "--recursive", "--only-show-errors"]).arg(dir).arg(url);
                (cmd, "aws s3 cp --recursive")
            }
        }
    }

    /// The AWS CLI against this server.
    fn aws(&self) -> Command {
        let mut cmd = Command::new(which("aws").expect("the AWS CLI (pip install awscli)"));
        self.env(&mut cmd);
        cmd.args(["--endpoint-url", &format!("http://127.0.0.1:{}", self.port)]);
        cmd
    }
}

impl S3Server {
    /// The CPU time (user and system) the server has used so far.
    fn cpu_secs(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else { return 0.0 };
        // Fields after the command name, which is in parentheses.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of proc_pid_stat(5), 11 and
        // 12 counted from the state.
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench_s3(g: &Ground, root: &Path, rounds: usize) -> String {
    let s = g.standby().unwrap();
    let data = du(&s.pgdata);
    let pgdrill = env!("CARGO_BIN_EXE_pgdrill");
    let (mut ours, mut reference, mut local) = (Vec::new(), Vec::new(), Vec::new());
    let (mut basebackup, mut upload) = (Vec::new(), Vec::new());
    let mut rss = 0i64;
    let mut kind = "";
    let mut uploader = "";
    let dest = root.join("bench-s3-local");
    for round in 0..rounds {
        eprintln!("bench: s3 round {}/{rounds}", round + 1);
        // A fresh store each round: moto keeps everything in memory.
        let server = S3Server::start(root);
        kind = server.kind;
        let mut cmd = Command::new(pgdrill);
        server.env(&mut cmd);
        let url = format!("s3://bench/ours-{round}");
        cmd.args(["backup", "--standby", &s.conninfo(), "--dest", &url, "--fast", "--json"])
            .stdout(std::process::Stdio::null());
        let r = measure(&mut cmd);
        ours.push(r.secs);
        rss = rss.max(r.max_rss_kib);

        rm(&dest);
        let b = measure(
            g.user
                .command(format!("{PG15}/pg_basebackup"))
                .args(["-D", dest.to_str().unwrap(), "-Fp", "-X", "none", "-c", "fast", "--no-sync"])
                .args(["-h", g.sockets.to_str().unwrap(), "-p", &s.port.to_string(), "-U", "postgres"]),
        );
        let (mut up, name) = server.upload(&dest, &format!("s3://bench/ref-{round}/"));
        uploader = name;
        let u = measure(&mut up);
        basebackup.push(b.secs);
        upload.push(u.secs);
        reference.push(b.secs + u.secs);
        rm(&dest);
        drop(server);

        let r = measure(
            Command::new(pgdrill)
                .args(["backup", "--standby", &s.conninfo(), "--dest", dest.to_str().unwrap(), "--fast"])
                .args(["--no-sync", "--json"])
                .stdout(std::process::Stdio::null()),
        );
        local.push(r.secs);
        rm(&dest);
    }
    let (o, r, l) = (median(&mut ours), median(&mut reference), median(&mut local));
    let (b, u) = (median(&mut basebackup), median(&mut upload));
    format!(
        "### s3\n\nData directory of the standby: {:.2} GB; store: {kind} on 127.0.0.1; {rounds} rounds in turns, \
         medians; {}.\n\n\
         | tool | median | vs pgdrill to S3 |\n|---|---|---|\n\
         | pgdrill backup --dest s3://... | {o:.2} s | 1.00 |\n\
         | pg_basebackup -Fp -X none --no-sync ({b:.2} s) + {uploader} ({u:.2} s) | {r:.2} s | pgdrill \
         is {:.2}× faster (target ≥ 1.5×) |\n\
         | pgdrill backup to local disk --no-sync | {l:.2} s | S3 at {:.2}× the local backup's speed |\n\n\
         Peak RSS of pgdrill backup to S3: {:.1} MB (target ≤ 128 MB).\n",
        data as f64 / 1e9,
        drop_caches_note(),
        r / o,
        l / o,
        rss as f64 / 1024.0
    )
}

/// Verify from S3 vs verify on local disk, of the same backup and WAL
/// archive: the local ones uploaded with the AWS CLI (and the directory
/// list pgdrill's backups to S3 carry).
fn bench_s3_verify(g: &Ground, root: &Path, rounds: usize) -> String {
    let s = g.standby().unwrap();
    let pgdrill = env!("CARGO_BIN_EXE_pgdrill");
    let local = root.join("bench-s3-verify");
    rm(&local);
    let st = Command::new(pgdrill)
        .args(["backup", "--standby", &s.conninfo(), "--primary", &g.primary.conninfo()])
        .args(["--dest", local.to_str().unwrap(), "--fast", "--no-sync", "--json"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "the local backup");
    let size = du(&local);
    let wal_size = du(&g.archive);
    let server = S3Server::start(root);
    // Uploaded with pgdrill's own client (the AWS CLI stalls on empty files
    // with s3s-fs): every file as one object, and the directory list
    // (object storage keeps no directories).
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    std::env::set_var("AWS_ACCESS_KEY_ID", S3_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", S3_SECRET);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let config = pgdrill::objstore::S3Config { endpoint: Some(endpoint), region: Some("us-east-1".into()), keys: None };
    let upload = |from: &Path, to: &str| -> Vec<String> {
        let url = pgdrill::objstore::S3Url::parse(to).unwrap();
        let store = pgdrill::objstore::Store::open(&url, &config).unwrap();
        let mut dirs = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for e in std::fs::read_dir(from.join(&rel)).unwrap().flatten() {
                let r = rel.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    dirs.push(format!("0700 {}\n", r.display()));
                    stack.push(r);
                } else {
                    let mut w = store.writer(r.to_str().unwrap(), Some(e.metadata().unwrap().len())).unwrap();
                    std::io::copy(&mut std::fs::File::open(e.path()).unwrap(), &mut w).unwrap();
                    w.finish().unwrap();
                }
            }
        }
        dirs.sort();
        if !dirs.is_empty() {
            store.put("pgdrill_directories", dirs.concat().into_bytes()).unwrap();
        }
        dirs
    };
    upload(&local, "s3://bench/base");
    upload(&g.archive, "s3://bench/wal");
    let remote_cmd = || {
        let mut cmd = Command::new(pgdrill);
        server.env(&mut cmd);
        cmd.args(["verify", "s3://bench/base", "--wal-archive", "s3://bench/wal", "--json"])
            .stdout(std::process::Stdio::null());
        cmd
    };
    let local_cmd = || {
        let mut cmd = Command::new(pgdrill);
        cmd.args(["verify", local.to_str().unwrap(), "--wal-archive", g.archive.to_str().unwrap(), "--json"])
            .stdout(std::process::Stdio::null());
        cmd
    };
    // Warm: every file in the page cache, on both sides. Cold (when this
    // runs as root and may drop the page cache): both read from the disk,
    // pgdrill directly and the S3 server for it.
    let cold = drop_caches();
    let mut t = S3VerifyTimes::default();
    for round in 0..rounds {
        eprintln!("bench: s3-verify round {}/{rounds}", round + 1);
        let cpu = server.cpu_secs();
        t.remote.add(measure(&mut remote_cmd()));
        t.server_cpu.push(server.cpu_secs() - cpu);
        t.here.add(measure(&mut local_cmd()));
        if cold {
            drop_caches();
            t.remote_cold.add(measure(&mut remote_cmd()));
            drop_caches();
            t.here_cold.add(measure(&mut local_cmd()));
        }
    }
    let kind = server.kind;
    drop(server);
    rm(&local);
    t.render(kind, size, wal_size, rounds)
}

/// Medians and peak RSS of one command's runs.
#[derive(Default)]
struct Runs {
    secs: Vec<f64>,
    rss_kib: i64,
}

impl Runs {
    fn add(&mut self, r: Run) {
        self.secs.push(r.secs);
        self.rss_kib = self.rss_kib.max(r.max_rss_kib);
    }
    fn median(&mut self) -> f64 {
        median(&mut self.secs)
    }
    fn row(&mut self, what: &str) -> String {
        format!("| {what} | {:.2} s | {:.1} MB |\n", self.median(), self.rss_kib as f64 / 1024.0)
    }
}

#[derive(Default)]
struct S3VerifyTimes {
    remote: Runs,
    here: Runs,
    remote_cold: Runs,
    here_cold: Runs,
    server_cpu: Vec<f64>,
}

impl S3VerifyTimes {
    fn render(mut self, kind: &str, size: u64, wal_size: u64, rounds: usize) -> String {
        let mut out = format!(
            "### s3-verify\n\nBackup: {:.2} GB, WAL archive: {:.2} GB; store: {kind} on 127.0.0.1; {rounds} rounds in \
             turns, medians.\n\n| verify | median | peak RSS |\n|---|---|---|\n",
            size as f64 / 1e9,
            wal_size as f64 / 1e9,
        );
        out += &self.here.row("local disk, page cache warm");
        out += &self.remote.row("s3://, the server's files in the page cache");
        let warm = self.here.median() / self.remote.median();
        let server = median(&mut self.server_cpu);
        let mut ratios = format!(
            "\nWarm: verify from S3 at {warm:.2}× the speed of verify on local disk (target ≥ 0.8×); the \
             S3 server alone used {server:.2} s of CPU per verify.\n"
        );
        if !self.here_cold.secs.is_empty() {
            out += &self.here_cold.row("local disk, page cache dropped");
            out += &self.remote_cold.row("s3://, page cache dropped");
            let cold = self.here_cold.median() / self.remote_cold.median();
            ratios += &format!("Cold: verify from S3 at {cold:.2}× the speed of verify on local disk.\n");
        }
        out + &ratios
    }
}

/// Drop the page cache (root only); whether it could.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// The first line of a knock file that says "ok", as epoch seconds.
fn first_ok(knocks: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(knocks).ok()?;
    text.lines().find_map(|l| l.strip_prefix("ok ").and_then(|t| t.trim().parse().ok()))
}

fn bench_gate(g: &Ground, root: &Path, rounds: usize) -> String {
    let s = g.standby().unwrap();
    let pgdrill = env!("CARGO_BIN_EXE_pgdrill");
    let backup = root.join("gate-backup");
    rm(&backup);
    let out = Command::new(pgdrill)
        .args([
            "backup",
            "--standby",
            &s.conninfo(),
            "--primary",
            &g.primary.conninfo(),
            "--dest",
            backup.to_str().unwrap(),
            "--fast",
            "--no-sync",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let size = du(&backup);
    let (mut open, mut copy, mut cp) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("bench: gate round {}/{rounds}", round + 1);
        let target = root.join(format!("gate-target-{round}"));
        let port = free_port();
        let knocks = root.join(format!("knocks-{round}"));
        let stop = root.join(format!("knocks-{round}.stop"));
        let _ = std::fs::remove_file(&knocks);
        let script = format!(
            "while [ ! -e {stop} ]; do if /usr/bin/psql -X -w -h {sock} -p {port} -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; \
             then echo \"ok $(date +%s.%N)\" >> {knocks}; fi; sleep 0.01; done",
            stop = stop.display(),
            sock = g.sockets.display(),
            knocks = knocks.display()
        );
        let mut knocker = g.user.command("/bin/sh").arg("-c").arg(script).spawn().unwrap();
        let out = Command::new(pgdrill)
            .args([
                "restore",
                backup.to_str().unwrap(),
                "--target",
                target.to_str().unwrap(),
                "--wal-archive",
                g.archive.to_str().unwrap(),
            ])
            .args(["--port", &port.to_string(), "--no-sync", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Give the knocker time to get in.
        std::thread::sleep(Duration::from_secs(2));
        std::fs::write(&stop, "").unwrap();
        let _ = knocker.wait();
        let reached =
            chrono::DateTime::parse_from_rfc3339(r["gate"]["timings"]["consistent"].as_str().unwrap()).unwrap();
        let reached = reached.timestamp() as f64 + f64::from(reached.timestamp_subsec_nanos()) / 1e9;
        let first = first_ok(&knocks).expect("a client got in after opening");
        open.push(first - reached);
        copy.push(r["copy_secs"].as_f64().unwrap());
        let _ = g.user.command(g.bin.program("pg_ctl")).args(["stop", "-m", "immediate", "-D"]).arg(&target).output();
        rm(&target);
        rm(&target.with_file_name(format!("gate-target-{round}.tblspc")));
        let cp_target = root.join("gate-cp");
        rm(&cp_target);
        cp.push(measure(Command::new("cp").arg("-a").arg(&backup).arg(&cp_target)).secs);
        rm(&cp_target);
    }
    let (o, c, k) = (median(&mut open), median(&mut copy), median(&mut cp));
    format!(
        "### gate\n\nBackup of {:.2} GB; {rounds} rounds, medians.\n\n\
         | measure | median | target |\n|---|---|---|\n\
         | replay reaching the end target → first client admitted (a psql loop as the server's OS user, 10 ms apart) | {o:.3} s | ≤ 1 s |\n\
         | restore copy (fsync off) | {c:.2} s | |\n\
         | cp -a of the same backup | {k:.2} s | restore copy at {:.2}× the speed of cp -a (target ≥ 0.9×) |\n",
        size as f64 / 1e9,
        k / c
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let flag = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<usize>().ok())
    };
    let scale = flag("--scale").unwrap_or(70) as u32;
    let rounds = flag("--rounds").unwrap_or(3);
    let mut which: Vec<&str> =
        args.iter().map(String::as_str).filter(|a| ["backup", "gate", "s3", "s3-verify"].contains(a)).collect();
    if which.is_empty() {
        which = vec!["backup", "gate"];
    }
    let root: PathBuf = std::env::var_os("PGDRILL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pgdrill-bench"));
    rm(&root);
    std::fs::create_dir_all(&root).unwrap();
    let g = setup(scale, &root);
    // pg_basebackup runs as the server's OS user and writes here.
    g.user.chown(&root).unwrap();
    let mut report = format!(
        "## Run of {} on {} ({} cores)\n\n{}\n\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        g.bin.version,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "Commands: `just bench backup`, `just bench gate`, `just bench s3`, `just bench s3-verify`."
    );
    for w in which {
        report.push_str(&match w {
            "backup" => bench_backup(&g, &root, rounds),
            "s3" => bench_s3(&g, &root, rounds),
            "s3-verify" => bench_s3_verify(&g, &root, rounds),
            _ => bench_gate(&g, &root, rounds),
        });
        report.push('\n');
    }
    println!("{report}");
    let _ = std::fs::write(root.join("results.md"), &report);
    drop(g);
    rm(&root);
}
