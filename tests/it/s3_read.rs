//! Object storage as a source, against a real S3-compatible server (moto)
//! and real PostgreSQL servers: verify and inspect read a backup and its
//! WAL archive from S3 and check what they check locally; wal-keep lists
//! and removes in an archive in S3; wal-fetch serves the restored server
//! from it with handed-over credentials; faults (a deleted object, the
//! store stopped mid-verify) say what they are.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::s3::S3Server;
use crate::common::*;
use pgdrill::source::compress::{CompressSpec, Compression, Encoder};

/// Back up the ground's standby to `url`.
fn backup_to(s3: &S3Server, g: &pgdrill::ground::Ground, url: &str) {
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let out = s3.pgdrill(&["backup", "--standby", &standby, "--primary", &primary, "--dest", url, "--fast", "--json"]);
    assert_eq!(code(&out), 0, "backup to S3: {}", stderr(&out));
}

/// Copy the ground's WAL archive to `url`, the oldest segment gzip'd (an
/// archive_command that compresses), the rest as they are. Returns the
/// segment stored compressed.
fn upload_archive(s3: &S3Server, archive: &Path, url: &str) -> String {
    let store = s3.store(url);
    let mut names: Vec<String> =
        std::fs::read_dir(archive).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let first_segment = names.iter().find(|n| n.len() == 24).cloned().expect("a segment");
    for n in &names {
        let bytes = std::fs::read(archive.join(n)).unwrap();
        if *n == first_segment {
            let mut e =
                Encoder::new(CompressSpec { kind: Compression::Gzip, level: None, workers: 0 }, Vec::new()).unwrap();
            e.write_all(&bytes).unwrap();
            store.put(&format!("{n}.gz"), e.finish().unwrap()).unwrap();
        } else {
            store.put(n, bytes).unwrap();
        }
    }
    first_segment
}

/// `restore_cli`'s restore (and gate, up to 120 s), with the store's
/// credentials in the environment.
fn restore_from(s3: &S3Server, backup: &str, target: &str, archive: &str, port: &str) -> std::process::Output {
    let args = ["restore", backup, "--target", target, "--wal-archive", archive, "--port", port];
    s3.pgdrill(&[&args[..], &["--timeout", "120", "--no-sync", "--json"]].concat())
}

/// A client of the ground connects to the opened copy on `port`.
fn assert_admits(g: &pgdrill::ground::Ground, port: &str) {
    let mut client =
        pgdrill::conn::ConnSpec::socket(&g.sockets, port.parse().unwrap(), "postgres", "postgres").connect().unwrap();
    let one: i32 = client.query_one("select 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

fn checked(v: &serde_json::Value) -> (u64, u64, u64) {
    let c = &v["checked"];
    (c["files"].as_u64().unwrap(), c["bytes"].as_u64().unwrap(), c["checksums"].as_u64().unwrap())
}

#[test]
fn verify_inspect_wal_keep_and_wal_fetch_read_from_s3() {
    let g = with_standby();
    let s3 = S3Server::start();
    s3.bucket("fleet");
    let base = "s3://fleet/db1/base";
    let wal = "s3://fleet/db1/wal";
    backup_to(&s3, &g, base);
    let gz = upload_archive(&s3, &g.archive, wal);

    // verify from S3: the backup's files and its WAL chain from the bucket,
    // the same checks as of the same backup on local disk.
    let v = s3.pgdrill(&["verify", base, "--wal-archive", wal, "--json"]);
    assert_eq!(code(&v), 0, "verify from S3: {}\n{}", stderr(&v), String::from_utf8_lossy(&v.stdout));
    let remote = json(&v);
    assert_eq!(remote["wal"]["checked"], true, "{remote}");
    let local_copy = g.dir.join("downloaded");
    crate::s3::download(&s3, base, &local_copy);
    let l = pgdrill(&["verify", local_copy.to_str().unwrap(), "--wal-archive", g.archive.to_str().unwrap(), "--json"]);
    assert_eq!(code(&l), 0, "{}", stderr(&l));
    let local = json(&l);
    assert_eq!(checked(&remote), checked(&local), "the same files, bytes and checksums");
    assert_eq!(remote["wal"]["end"], local["wal"]["end"]);
    assert_eq!(remote["checked"]["relation_pages"], local["checked"]["relation_pages"]);

    // Through a network that fails every third request (503 Slow Down or a
    // dropped connection): the retries hide it, the verdict is the same.
    let proxy = crate::common::s3::FaultProxy::start(s3.port, 3);
    let v = s3.pgdrill(&["verify", base, "--wal-archive", wal, "--s3-endpoint", &proxy.endpoint(), "--json"]);
    assert_eq!(code(&v), 0, "verify through faults: {}", stderr(&v));
    assert_eq!(checked(&json(&v)), checked(&local));
    assert!(proxy.faults.load(std::sync::atomic::Ordering::Relaxed) > 0, "faults were injected");
    drop(proxy);

    // inspect from S3.
    let i = s3.pgdrill(&["inspect", base, "--json"]);
    assert_eq!(code(&i), 0, "{}", stderr(&i));
    assert_eq!(
        json(&i)["system_identifier"],
        json(&pgdrill(&["inspect", local_copy.to_str().unwrap(), "--json"]))["system_identifier"]
    );

    // wal-fetch from S3, with the keys in a handed-over credential file
    // and none in the environment: plain and gzip'd segments, decompressed.
    let creds_dir = tempfile::tempdir().unwrap();
    let store = s3.store(wal);
    let dir = pgdrill::safefs::Dir::open(creds_dir.path()).unwrap();
    let file = pgdrill::objstore::handoff::write(&store.handoff().unwrap(), &dir, Path::new("s3.env"), None).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    for name in [gz.clone(), pgdrill::pg::wal::history_file_name(pgdrill::pg::TimelineId(1))] {
        let dest = out_dir.path().join("RECOVERYXLOG");
        let _ = std::fs::remove_file(&dest);
        let f = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["wal-fetch", &name, dest.to_str().unwrap(), "--archive", wal])
            .args(["--s3-credentials", file.to_str().unwrap()])
            .output()
            .unwrap();
        if name == gz {
            assert_eq!(code(&f), 0, "wal-fetch {name}: {}", stderr(&f));
            assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(g.archive.join(&gz)).unwrap());
        } else {
            // No history file on timeline 1: absent, exit 1, named.
            assert_eq!(code(&f), 1, "{}", stderr(&f));
            assert!(stderr(&f).contains(&name), "{}", stderr(&f));
        }
        assert!(!stderr(&f).contains(crate::common::s3::SECRET));
    }

    // wal-keep: the backup and the archive in S3; the dry run lists what
    // --remove then removes, by its stored name (the gzip'd one too).
    let k = s3.pgdrill(&["wal-keep", base, "--archive", wal, "--json"]);
    assert_eq!(code(&k), 0, "wal-keep: {}", stderr(&k));
    let listed: Vec<String> =
        json(&k)["removable"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    assert!(listed.contains(&format!("{gz}.gz")), "{listed:?}");
    let k = s3.pgdrill(&["wal-keep", base, "--archive", wal, "--remove", "--json"]);
    assert_eq!(code(&k), 0, "wal-keep --remove: {}", stderr(&k));
    assert_eq!(json(&k)["removed"], true);
    let left = s3.keys("fleet", "db1/wal/");
    for n in &listed {
        assert!(!left.contains(&format!("db1/wal/{n}")), "{n} removed");
    }
    assert!(!left.is_empty());
    // What the backup needs is still there.
    let v = s3.pgdrill(&["verify", base, "--wal-archive", wal, "--json"]);
    assert_eq!(code(&v), 0, "verify after wal-keep --remove: {}", stderr(&v));

    // A deleted object is a finding naming it (exit 1).
    let victim =
        s3.store(base).list("base").unwrap().into_iter().find(|o| o.size > 0).map(|o| o.name).expect("a relation file");
    s3.store(base).delete(&victim).unwrap();
    let v = s3.pgdrill(&["verify", base, "--wal-archive", wal, "--json"]);
    assert_eq!(code(&v), 1, "{}", stderr(&v));
    let findings = json(&v)["findings"].to_string();
    assert!(findings.contains(&victim), "{victim} named in {findings}");
}

#[test]
fn the_store_stopped_mid_verify_is_exit_3_with_a_clear_message() {
    let g = with_standby();
    let mut s3 = S3Server::start();
    s3.bucket("fleet");
    let base = "s3://fleet/db2/base";
    backup_to(&s3, &g, base);
    let lines_before = std::fs::read_to_string(&s3.log).unwrap().lines().count();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"));
    for (k, v) in s3.env() {
        cmd.env(k, v);
    }
    let child = cmd
        .args(["verify", base, "--no-wal", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the store as soon as the verify has listed the backup.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&s3.log).unwrap();
        if log.lines().skip(lines_before).any(|l| l.contains("GET /fleet")) {
            break;
        }
        assert!(Instant::now() < deadline, "verify never reached the store");
        std::thread::sleep(Duration::from_millis(5));
    }
    s3.stop();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    let err = json(&out).to_string();
    assert!(err.contains("s3://fleet/db2/base"), "names the store: {err}");
    assert!(started.elapsed() < Duration::from_secs(90), "gave up within the retry budget");
}

#[test]
fn restore_and_gate_from_s3_with_wal_fetched_from_s3() {
    let g = with_standby();
    let s3 = S3Server::start();
    s3.bucket("fleet");
    let base = "s3://fleet/db3/base";
    let wal = "s3://fleet/db3/wal";
    backup_to(&s3, &g, base);
    upload_archive(&s3, &g.archive, wal);
    let end = lsn(&json(&s3.pgdrill(&["inspect", base, "--json"]))["end_lsn"]).expect("end");
    // Only the WAL the backup itself carries is local; the rest must come
    // from the bucket.
    let target = g.dir.join("restored-from-s3");
    let port = pgdrill::ground::free_port().to_string();
    let t = target.to_str().unwrap();
    let out = restore_from(&s3, base, t, wal, &port);
    assert_eq!(
        code(&out),
        0,
        "restore from S3: {}\n{}",
        stderr(&out),
        std::fs::read_to_string(target.join("log/pgdrill-postmaster.log")).unwrap_or_default()
    );
    let r = json(&out);
    let rc = r["restore_command"].as_str().unwrap();
    assert!(rc.contains(&format!(" wal-fetch %f %p --archive {wal} --s3-credentials ")), "{rc}");
    assert!(lsn(&r["gate"]["opened_at_lsn"]).unwrap() >= end);
    // The server fetched WAL from the bucket, as its own OS user, with the
    // handed-over keys; nothing secret is in the copy or its command line,
    // and the credential file is gone once the gate opened.
    let log = std::fs::read_to_string(&s3.log).unwrap();
    assert!(log.lines().any(|l| l.contains("GET /fleet/db3/wal/0000000")), "WAL read from S3");
    let creds = pgdrill::restore::s3_credential_path(&target);
    assert!(!creds.exists(), "{} removed", creds.display());
    for f in ["postgresql.auto.conf", "postgresql.conf"] {
        let text = std::fs::read_to_string(target.join(f)).unwrap_or_default();
        assert!(!text.contains(crate::common::s3::SECRET), "{f}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains(crate::common::s3::SECRET));
    assert_admits(&g, &port);
    stop_server(&g, &target);
}

/// Mirror the ground's archive into `url` as it grows (what an
/// archive_command uploading to the bucket does), until dropped.
struct Mirror {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mirror {
    fn start(store: pgdrill::objstore::Store, archive: std::path::PathBuf) -> Mirror {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut done = std::collections::HashSet::new();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                for e in std::fs::read_dir(&archive).unwrap().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    // The ground's archive_command renames a whole file into place.
                    if n.starts_with('.') || done.contains(&n) {
                        continue;
                    }
                    store.put(&n, std::fs::read(e.path()).unwrap()).unwrap();
                    done.insert(n);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Mirror { stop, thread: Some(thread) }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_drill_end_to_end_through_s3() {
    let g = with_standby();
    let s3 = S3Server::start();
    s3.bucket("fleet");
    let wal = "s3://fleet/db4/wal";
    let base = "s3://fleet/db4/base";
    let _mirror = Mirror::start(s3.store(wal), g.archive.clone());
    let work = g.dir.join("work-s3");
    let out = s3.pgdrill(&[
        "drill",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--primary",
        &g.primary.conninfo(),
        "--work",
        work.to_str().unwrap(),
        "--wal-archive",
        wal,
        "--backup-dest",
        base,
        "--timeout",
        "120",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let r = json(&out);
    let steps: Vec<(&str, &str)> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert!(steps.iter().all(|(_, st)| *st == "pass"), "{steps:?}");
    assert!(lsn(&r["opened_at_lsn"]).unwrap() >= lsn(&r["end_lsn"]).unwrap());
    // The backup is in the bucket (and kept), the work copy is gone, and
    // so is the restored server's credential file.
    assert!(s3.keys("fleet", "db4/base/").iter().any(|k| k.ends_with("/backup_manifest")));
    assert!(!work.join("restore").exists());
    assert!(!pgdrill::restore::s3_credential_path(&work.join("restore")).exists());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(crate::common::s3::SECRET));
}

/// A tar backup (zstd) in S3: the archive and the manifest only, the
/// manifest written last; verify, inspect and restore read it where it is,
/// with the result a local copy of it gives; a damaged archive is a
/// finding, not a crash.
#[test]
fn a_tar_backup_in_s3_is_written_verified_inspected_and_restored() {
    let g = with_standby();
    let s3 = S3Server::start();
    s3.bucket("fleet");
    let base = "s3://fleet/db5/tar";
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let out = s3.pgdrill(&[
        "backup",
        "--standby",
        &standby,
        "--primary",
        &primary,
        "--dest",
        base,
        "--format",
        "tar",
        "--compress",
        "zstd",
        "--fast",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "tar backup to S3: {}", stderr(&out));
    let r = json(&out);
    assert_eq!((r["format"].as_str(), r["compression"].as_str()), (Some("tar"), Some("zstd")));
    let mut names: Vec<String> =
        s3.keys("fleet", "db5/tar/").iter().map(|k| k.strip_prefix("db5/tar/").unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, ["backup_manifest", "base.tar.zst"]);
    let store = s3.store(base);
    let sizes: u64 = store.list("").unwrap().iter().map(|o| o.size).sum();
    assert_eq!(r["stored_bytes"].as_u64(), Some(sizes), "stored_bytes is what is in the bucket");
    // The archive is completed before the manifest is written.
    let writes = crate::s3::writes_in_order(&s3, "fleet", "db5/tar/");
    let archive_done = writes.iter().rposition(|(_, k)| k == "base.tar.zst").unwrap();
    let manifest_at = writes.iter().position(|(w, k)| w == "put" && k == "backup_manifest").unwrap();
    assert!(archive_done < manifest_at, "{writes:?}");

    // verify from S3 checks what verify of a local copy checks.
    let archive = g.archive.to_str().unwrap();
    let v = s3.pgdrill(&["verify", base, "--wal-archive", archive, "--json"]);
    assert_eq!(code(&v), 0, "verify: {}\n{}", stderr(&v), String::from_utf8_lossy(&v.stdout));
    let local = g.dir.join("tar-from-s3");
    std::fs::create_dir(&local).unwrap();
    for n in &names {
        std::fs::write(local.join(n), store.read_small(n, 1 << 30).unwrap().unwrap()).unwrap();
    }
    let lv = pgdrill(&["verify", local.to_str().unwrap(), "--wal-archive", archive, "--json"]);
    assert_eq!(code(&lv), 0, "{}", stderr(&lv));
    let (files, bytes, checksums) = checked(&json(&v));
    assert!(files > 100 && checksums == files, "{files} files, {checksums} checksums");
    assert_eq!((files, bytes, checksums), checked(&json(&lv)));

    let i = json(&s3.pgdrill(&["inspect", base, "--json"]));
    assert_eq!((i["format"].as_str(), i["compression"].as_str()), (Some("tar"), Some("zstd")));
    assert_eq!(i["backup_method"], "label");

    // wal-keep (a dry run) reads the tar backup in S3 as the local copy.
    let keep = |backup: &str| {
        let k = s3.pgdrill(&["wal-keep", backup, "--archive", archive, "--json"]);
        assert_eq!(code(&k), 0, "wal-keep {backup}: {}", stderr(&k));
        let k = json(&k);
        (k["oldest_needed"].as_str().unwrap().to_string(), k["removable"].as_array().unwrap().len())
    };
    assert_eq!(keep(base), keep(local.to_str().unwrap()));

    // restore (and its gate) straight from the bucket.
    let target = g.dir.join("restored-tar-from-s3");
    let port = pgdrill::ground::free_port().to_string();
    let out = restore_from(&s3, base, target.to_str().unwrap(), archive, &port);
    assert_eq!(code(&out), 0, "restore of a tar backup from S3: {}", stderr(&out));
    let end = lsn(&i["end_lsn"]).expect("end");
    assert!(lsn(&json(&out)["gate"]["opened_at_lsn"]).unwrap() >= end);
    assert_admits(&g, &port);
    stop_server(&g, &target);

    // The archive cut in half: what a local copy cut alike gives (a
    // finding, exit 1), never a pass or a crash.
    let whole = store.read_small("base.tar.zst", 1 << 30).unwrap().unwrap();
    store.put("base.tar.zst", whole[..whole.len() / 2].to_vec()).unwrap();
    std::fs::write(local.join("base.tar.zst"), &whole[..whole.len() / 2]).unwrap();
    let bad = s3.pgdrill(&["verify", base, "--wal-archive", archive, "--json"]);
    let local_bad = pgdrill(&["verify", local.to_str().unwrap(), "--wal-archive", archive, "--json"]);
    assert_eq!(code(&local_bad), 1, "{}\n{}", stderr(&local_bad), String::from_utf8_lossy(&local_bad.stdout));
    assert_eq!(code(&bad), 1, "{}\n{}", stderr(&bad), String::from_utf8_lossy(&bad.stdout));
    let kinds = |o: &std::process::Output| {
        let mut k: Vec<String> = finding_kinds(&json(o)).into_iter().map(|(kind, _)| kind).collect();
        k.sort();
        k.dedup();
        k
    };
    assert!(kinds(&bad).contains(&"file_unreadable".to_string()), "{:?}", kinds(&bad));
    assert_eq!(kinds(&bad), kinds(&local_bad));
}
