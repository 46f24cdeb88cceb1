//! Object storage end to end, against a real S3-compatible server (moto)
//! the tests start, and real PostgreSQL servers: backups to S3, what an
//! interrupted upload leaves, refusals before anything is touched, and
//! credentials the AWS way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::s3::S3Server;
use crate::common::*;
use pgdrill::backup::dest::DIRECTORIES;
use pgdrill::pg::manifest::Manifest;

/// Download a backup from `url` into a new local directory, directories
/// from the backup's directory list: what a restore from S3 will see.
pub(crate) fn download(s3: &S3Server, url: &str, into: &Path) {
    let store = s3.store(url);
    std::fs::create_dir(into).unwrap();
    let dirs = String::from_utf8(store.read_small(DIRECTORIES, 1 << 20).unwrap().expect("directory list")).unwrap();
    for line in dirs.lines() {
        let (_mode, d) = line.split_once(' ').unwrap();
        std::fs::create_dir_all(into.join(d)).unwrap();
    }
    for o in store.list("").unwrap() {
        if o.name == DIRECTORIES {
            continue;
        }
        let bytes = store.read_small(&o.name, 1 << 30).unwrap().unwrap();
        let path = into.join(&o.name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// The object keys the server's request log shows written, in order, for
/// keys below `prefix` (`PUT key` for single objects and parts, `POST key`
/// completing an upload, `DELETE key`).
/// A batch delete (`POST /bucket?delete`) names its keys in the body only:
/// it shows as `("delete", "*")`.
pub(crate) fn writes_in_order(s3: &S3Server, bucket: &str, prefix: &str) -> Vec<(String, String)> {
    let log = std::fs::read_to_string(&s3.log).unwrap();
    log.lines()
        .filter_map(|l| {
            let req = l.split('"').nth(1)?;
            let mut parts = req.split_whitespace();
            let (method, target) = (parts.next()?, parts.next()?);
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            if method == "POST" && path == format!("/{bucket}") && query.starts_with("delete") {
                return Some(("delete".to_string(), "*".to_string()));
            }
            let key =
                path.strip_prefix('/')?.strip_prefix(bucket)?.strip_prefix('/')?.strip_prefix(prefix)?.to_string();
            let write = match method {
                "PUT" if !query.contains("partNumber") => "put",
                "POST" if query.contains("uploadId") => "complete",
                "DELETE" => "delete",
                _ => return None,
            };
            Some((write.to_string(), key))
        })
        .collect()
}

fn backup_to(s3: &S3Server, g: &pgdrill::ground::Ground, url: &str, extra: &[&str]) -> std::process::Output {
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let mut args = vec!["backup", "--standby", &standby, "--primary", &primary, "--dest", url, "--fast", "--json"];
    args.extend_from_slice(extra);
    s3.pgdrill(&args)
}

#[test]
fn a_backup_to_s3_is_complete_verifiable_and_its_manifest_goes_last() {
    let g = with_standby();
    let s3 = S3Server::start();
    s3.bucket("fleet");
    for method in ["label", "legacy"] {
        let url = format!("s3://fleet/db1/{method}");
        let out = backup_to(&s3, &g, &url, &["--method", method, "-j", "3"]);
        assert_eq!(code(&out), 0, "backup to S3: {}", stderr(&out));
        let report = json(&out);
        assert_eq!(report["dest"], url.as_str());
        assert!(!stderr(&out).contains(crate::common::s3::SECRET));

        let keys = s3.keys("fleet", &format!("db1/{method}/"));
        let names: Vec<&str> = keys.iter().map(|k| k.strip_prefix(&format!("db1/{method}/")).unwrap()).collect();
        for want in ["backup_manifest", "global/pg_control", "end_location", DIRECTORIES, "PG_VERSION"] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert!(!names.contains(&"pgdrill_backup_incomplete"), "the marker is gone");
        if method == "label" {
            assert!(names.contains(&"backup_label"));
        }

        // Every file of the manifest is an object of its size.
        let store = s3.store(&url);
        let manifest = Manifest::parse(&store.read_small("backup_manifest", 1 << 26).unwrap().unwrap()).unwrap();
        let listed: std::collections::HashMap<String, u64> =
            store.list("").unwrap().into_iter().map(|o| (o.name, o.size)).collect();
        for f in &manifest.files {
            let name = String::from_utf8(f.path.clone()).unwrap();
            assert_eq!(listed.get(&name), Some(&f.size), "{name}");
        }
        assert_eq!(listed.len(), manifest.files.len() + 2, "the files, the manifest and the directory list only");

        // Order: the marker first, the manifest the last object written,
        // then the marker removed.
        let writes = writes_in_order(&s3, "fleet", &format!("db1/{method}/"));
        let first_put = writes.iter().position(|(w, _)| w == "put").unwrap();
        assert_eq!(writes[first_put], ("put".to_string(), "pgdrill_backup_incomplete".to_string()));
        let writes = &writes[first_put..];
        let manifest_at = writes.iter().position(|(w, k)| w == "put" && k == "backup_manifest").unwrap();
        let after = &writes[manifest_at + 1..];
        assert!(
            after.len() == 1
                && after[0].0 == "delete"
                && (after[0].1 == "*" || after[0].1 == "pgdrill_backup_incomplete"),
            "nothing but the marker's removal after the manifest: {:?}",
            &writes[manifest_at.saturating_sub(3)..]
        );

        // What is in the bucket is a good backup: downloaded, it verifies
        // against the archive like a local one.
        let local = g.dir.join(format!("from-s3-{method}"));
        download(&s3, &url, &local);
        let v = pgdrill(&["verify", local.to_str().unwrap(), "--wal-archive", g.archive.to_str().unwrap(), "--json"]);
        assert_eq!(
            code(&v),
            0,
            "verify of the downloaded backup: {}\n{}",
            stderr(&v),
            String::from_utf8_lossy(&v.stdout)
        );
    }
}

#[test]
fn an_interrupted_backup_to_s3_never_looks_valid() {
    let g = with_standby();
    let s3 = S3Server::start();
    s3.bucket("fleet");
    let standby = g.standby().unwrap().conninfo();

    // kill -9 mid-copy: the marker stays, there is no manifest.
    let url = "s3://fleet/killed";
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"));
    for (k, v) in s3.env() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(["backup", "--standby", &standby, "--dest", url, "--fast", "--max-rate", "2M", "-q"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while s3.keys("fleet", "killed/").len() < 3 && started.elapsed() < Duration::from_secs(60) {
        sleep_ms(100);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let keys = s3.keys("fleet", "killed/");
    assert!(keys.contains(&"killed/pgdrill_backup_incomplete".to_string()), "{keys:?}");
    assert!(!keys.contains(&"killed/backup_manifest".to_string()), "{keys:?}");
    // A second backup there is refused, naming the interrupted one.
    let out = backup_to(&s3, &g, url, &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("the backup is incomplete: it was interrupted"), "{}", stderr(&out));

    // SIGTERM mid-copy: pgdrill stops within about a second and removes
    // what it wrote, the marker last; no upload is left open.
    let url = "s3://fleet/stopped";
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"));
    for (k, v) in s3.env() {
        cmd.env(k, v);
    }
    let child = cmd
        .args(["backup", "--standby", &standby, "--dest", url, "--fast", "--max-rate", "2M", "-q"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while s3.keys("fleet", "stopped/").len() < 3 && started.elapsed() < Duration::from_secs(60) {
        sleep_ms(100);
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(signalled.elapsed() < Duration::from_secs(30), "stopped after {:?}", signalled.elapsed());
    assert_eq!(s3.keys("fleet", "stopped/"), Vec::<String>::new(), "cleaned up");
    assert_eq!(s3.open_uploads("fleet"), 0, "no upload left open");
}

/// `backup --format tar` to S3 cut short: the archive is one multipart
/// upload, invisible until completed, so a kill -9 leaves the marker and
/// nothing that looks like a backup; SIGTERM removes everything and aborts
/// the upload.
#[test]
fn an_interrupted_tar_backup_to_s3_never_looks_valid() {
    let g = with_standby();
    let s3 = S3Server::start();
    s3.bucket("fleet");
    let standby = g.standby().unwrap().conninfo();
    let start = |url: &str| {
        // One more open upload than now means base.tar's is under way (a
        // killed backup leaves its own open).
        let before = s3.open_uploads("fleet");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"));
        for (k, v) in s3.env() {
            cmd.env(k, v);
        }
        let args = ["backup", "--standby", &standby, "--dest", url, "--fast", "--format", "tar", "--max-rate", "2M"];
        let child = cmd.args(args).arg("-q").stderr(std::process::Stdio::piped()).spawn().unwrap();
        let started = Instant::now();
        while s3.open_uploads("fleet") == before && started.elapsed() < Duration::from_secs(60) {
            sleep_ms(100);
        }
        assert!(s3.open_uploads("fleet") > before, "an upload under way");
        child
    };

    let mut child = start("s3://fleet/tar-killed");
    child.kill().unwrap();
    child.wait().unwrap();
    let keys = s3.keys("fleet", "tar-killed/");
    assert_eq!(keys, ["tar-killed/pgdrill_backup_incomplete"], "only the marker");
    let v = s3.pgdrill(&["verify", "s3://fleet/tar-killed", "--json"]);
    assert_eq!(code(&v), 2, "{}", stderr(&v));
    assert!(stderr(&v).contains("the backup is incomplete"), "{}", stderr(&v));

    let child = start("s3://fleet/tar-stopped");
    let uploads_before = s3.open_uploads("fleet");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s3.keys("fleet", "tar-stopped/"), Vec::<String>::new(), "cleaned up");
    assert!(s3.open_uploads("fleet") < uploads_before, "the stopped backup's upload is aborted");
}

#[test]
fn bad_destinations_are_refused_before_the_standby_is_asked() {
    let s3 = S3Server::start();
    s3.bucket("fleet");
    s3.store("s3://fleet").put("used/somefile", b"x".to_vec()).unwrap();
    // No server listens there: a refusal must come before any connection.
    let standby = "host=127.0.0.1 port=1 connect_timeout=2";
    let run = |args: &[&str]| {
        let mut all = vec!["backup", "--standby", standby];
        all.extend_from_slice(args);
        s3.pgdrill(&all)
    };
    let out = run(&["--dest", "s3://fleet/used"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("s3://fleet/used: the target is not empty"), "{}", stderr(&out));
    assert_eq!(s3.keys("fleet", ""), ["used/somefile"], "nothing written");

    let out = run(&["--dest", "s3://no-such-bucket/x"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("s3://no-such-bucket: no such bucket"), "{}", stderr(&out));

    let out = run(&["--dest", "s3://fleet/a/../b"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("'..' segment"), "{}", stderr(&out));

    let out = run(&["--dest", "s3://fleet/x", "--s3-endpoint", "http://AKIA:hunter2@127.0.0.1:9"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("credentials do not belong in a URL"), "{}", stderr(&out));

    // An empty prefix passes the checks; then the standby is unreachable.
    let out = run(&["--dest", "s3://fleet/fresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    assert_eq!(s3.keys("fleet", "fresh"), Vec::<String>::new());
}

#[test]
fn credentials_come_from_a_profile_and_their_absence_is_named() {
    let s3 = S3Server::start();
    s3.bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[fleet-ro]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            "AKIAPROFILE", "profile-secret-xyz"
        ),
    )
    .unwrap();
    let standby = "host=127.0.0.1 port=1 connect_timeout=2";
    let run = |profile: Option<&Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"));
        for (k, v) in s3.env() {
            if !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET") {
                cmd.env(k, v);
            }
        }
        cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env_remove("AWS_SESSION_TOKEN");
        if let Some(p) = profile {
            cmd.env("AWS_SHARED_CREDENTIALS_FILE", p).env("AWS_PROFILE", "fleet-ro");
        }
        cmd.args(["backup", "--standby", standby, "--dest", "s3://fleet/p"]).output().unwrap()
    };
    // With the profile the store answers (the prefix is checked), and the
    // run goes on to the standby.
    let out = run(Some(&creds));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    // Without any credential: a clear error, exit 3.
    let out = run(None::<&PathBuf>.map(|p| p.as_path()));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("no AWS credentials"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("profile-secret-xyz"));
}

#[test]
fn a_store_that_never_answers_does_not_hold_up_a_signal() {
    // A listener that accepts connections and never says a word: every
    // request waits for its timeout, and the retries after it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming().take(20) {
            conns.push(c);
        }
    });
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .env("AWS_ACCESS_KEY_ID", crate::common::s3::KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", crate::common::s3::SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .args(["backup", "--standby", "host=127.0.0.1 port=1", "--dest", "s3://fleet/x"])
        .args(["--s3-endpoint", &format!("http://127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep_ms(1500);
    assert!(child.try_wait().unwrap().is_none(), "still waiting for the store");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let signalled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = signalled.elapsed();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(waited < Duration::from_secs(3), "stopped {waited:?} after the signal");
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"), "{}", String::from_utf8_lossy(&out.stderr));
    drop(held);
}
