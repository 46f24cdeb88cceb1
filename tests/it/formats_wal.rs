//! WAL archives as people keep them: compressed with gzip, LZ4 or
//! Zstandard by the usual command-line tools, or behind a fetch command.
//! `verify`, `wal-fetch`, `wal-keep` and `restore` read them on real
//! servers; a damaged or missing file is named.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use pgdrill::ground::{invariant_sql, Ground, LoadOptions};
use pgdrill::pg::Lsn;
use serde_json::Value;

/// A copy of the ground's archive with every file compressed by `tool`
/// (`gzip`, `lz4`, `zstd`), named NAME.gz / .lz4 / .zst, owned by the
/// server's user.
fn compressed_archive(g: &Ground, tool: &str) -> PathBuf {
    let suffix = match tool {
        "gzip" => "gz",
        "lz4" => "lz4",
        _ => "zst",
    };
    let dir = g.dir.join(format!("archive-{tool}"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in archive_listing(g) {
        let src = g.archive.join(&name);
        let dst = dir.join(format!("{name}.{suffix}"));
        let out = Command::new(tool).args(["-q", "-c"]).arg(&src).output().unwrap();
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&dst, &out.stdout).unwrap();
    }
    Command::new("chown").args(["-R", &format!("{}:", g.user.name)]).arg(&dir).status().unwrap();
    dir
}

fn verify(path: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    run_json(&args)
}

fn needed_segments(v: &Value) -> (String, String) {
    let w = &v["wal"];
    (w["first_segment"].as_str().unwrap().to_string(), w["last_segment"].as_str().unwrap().to_string())
}

#[test]
fn compressed_archives_verify_fetch_keep_and_restore() {
    let (g, backup, end) = ground_with_backup("label");
    // The backup's own pg_wal is empty: every segment comes from the archive.
    let (code0, plain) = verify(&backup, &["--wal-archive", g.archive.to_str().unwrap()]);
    assert_eq!(code0, 0, "{plain:#}");
    let (first, last) = needed_segments(&plain);
    assert_ne!(first, last, "the backup's WAL should span several segments");

    for tool in ["gzip", "lz4", "zstd"] {
        let arch = compressed_archive(&g, tool);
        let (c, v) = verify(&backup, &["--wal-archive", arch.to_str().unwrap()]);
        assert_eq!(c, 0, "{tool}: {v:#}");
        assert_eq!(v["wal"]["checked"], true, "{tool}");
        assert!(lsn(&v["wal"]["reached"]).unwrap() >= end, "{tool}: {v:#}");
        assert_eq!(v["checked"]["wal_records"], plain["checked"]["wal_records"], "{tool}");

        // pgdrill as restore_command: the bytes PostgreSQL gets are the
        // original segment's; an absent file exits 1.
        let dest = g.dir.join(format!("fetched-{tool}"));
        let out = pgdrill(&["wal-fetch", &last, dest.to_str().unwrap(), "--archive", arch.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(g.archive.join(&last)).unwrap(), "{tool}");
        let out = pgdrill(&[
            "wal-fetch",
            "0000000100000000000000FF",
            dest.to_str().unwrap(),
            "--archive",
            arch.to_str().unwrap(),
        ]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(stderr(&out).contains("0000000100000000000000FF"), "{}", stderr(&out));
    }

    // Damage: a segment cut in half (as a copy interrupted mid-way), and
    // one missing. Both are named, by their stored names.
    let arch = compressed_archive(&g, "zstd");
    let victim = arch.join(format!("{last}.zst"));
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let (c, v) = verify(&backup, &["--wal-archive", arch.to_str().unwrap()]);
    assert_eq!(c, 1);
    let k = finding_kinds(&v);
    assert!(
        k.iter().any(|(kind, path)| (kind == "wal_unreadable" || kind == "wal_segment_truncated") && path.ends_with(".zst")),
        "{k:?}"
    );
    std::fs::remove_file(&victim).unwrap();
    let (c, v) = verify(&backup, &["--wal-archive", arch.to_str().unwrap()]);
    assert_eq!(c, 1);
    assert!(finding_kinds(&v).contains(&("wal_segment_missing".to_string(), last.clone())), "{:?}", finding_kinds(&v));
    std::fs::write(&victim, &bytes).unwrap();

    // Through a fetch command: the same result; a failing command is a
    // finding that names the segment and quotes the command's stderr.
    let cmd = format!("zstd -q -d -c {}/%f.zst > %p", arch.display());
    let (c, v) = verify(&backup, &["--restore-command", &cmd]);
    assert_eq!(c, 0, "{v:#}");
    assert_eq!(v["wal"]["restore_command"], cmd.as_str());
    assert_eq!(v["checked"]["wal_records"], plain["checked"]["wal_records"]);
    let failing = format!("echo 'archive unreachable' >&2; exit 3; cp {}/%f %p", g.archive.display());
    let (c, v) = verify(&backup, &["--restore-command", &failing]);
    assert_eq!(c, 1);
    let f = v["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "wal_segment_missing").unwrap().clone();
    assert_eq!(f["path"], first.as_str());
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("exited with status 3") && msg.contains("archive unreachable"), "{msg}");

    // wal-keep names and removes what the backup does not need, by the
    // names the files are stored under.
    let older: Vec<String> = archive_listing(&g)
        .into_iter()
        .filter(|n| n.len() == 24 && n.as_str() < first.as_str())
        .map(|n| format!("{n}.zst"))
        .collect();
    assert!(!older.is_empty(), "the archive holds no segment older than the backup's first");
    let out = pgdrill(&["wal-keep", backup.to_str().unwrap(), "--archive", arch.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    let listed: Vec<String> =
        r["removable"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect();
    for o in &older {
        assert!(listed.contains(o), "{o} not listed: {listed:?}");
    }
    assert!(listed.iter().all(|n| n.ends_with(".zst")), "{listed:?}");
    let out = pgdrill(&["wal-keep", backup.to_str().unwrap(), "--archive", arch.to_str().unwrap(), "--remove"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for o in &older {
        assert!(!arch.join(o).exists(), "{o} was not removed");
    }
    assert!(arch.join(format!("{first}.zst")).exists());
    // The backup still verifies against what is left.
    assert_eq!(verify(&backup, &["--wal-archive", arch.to_str().unwrap()]).0, 0);

    // A restore from the compressed archive needs nothing extra: pgdrill
    // serves itself as the restore_command.
    restore_from(&g, &backup, &arch, end);
}

/// Restore `backup` with WAL from `arch` and check the copy opens at the end.
/// The archive is given as a relative path, as a user in its parent
/// directory would type it: the restore_command the server runs from its
/// own data directory must still find it.
fn restore_from(g: &Ground, backup: &Path, arch: &Path, end: Lsn) {
    let target = g.dir.join("restored-from-compressed");
    let port = pgdrill::ground::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .current_dir(arch.parent().unwrap())
        .args([
            "restore",
            backup.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--wal-archive",
            arch.file_name().unwrap().to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--timeout",
            "120",
            "--json",
            "--no-sync",
        ])
        .output()
        .unwrap();
    assert_eq!(
        code(&out),
        0,
        "{}\n{}",
        stderr(&out),
        std::fs::read_to_string(target.join("log/pgdrill-postmaster.log")).unwrap_or_default()
    );
    let r = json(&out);
    let rc = r["restore_command"].as_str().unwrap();
    assert!(rc.contains(" wal-fetch %f %p --archive "), "{rc}");
    assert!(rc.starts_with('/') || rc.starts_with("'/"), "the binary is named by its absolute path: {rc}");
    assert!(lsn(&r["gate"]["opened_at_lsn"]).unwrap() >= end);
    let mut client = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres").connect().unwrap();
    let ok: bool = client.query_one(invariant_sql(LoadOptions::default().accounts).as_str(), &[]).unwrap().get(0);
    assert!(ok, "the load's invariant does not hold after opening");
    drop(client);
    // wal-fetch writes %p and nothing else: no temporary or compressed
    // files beside what the server itself keeps.
    let leftovers: Vec<String> = std::fs::read_dir(target.join("pg_wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.ends_with(".zst") || n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    stop_server(g, &target);
}

/// A fetch command that hangs: the first SIGINT stops verify (exit 3)
/// without waiting for the command (it sleeps 30 s; the bound is loose so
/// that a loaded machine does not fail the test), the command's process
/// group is killed, and the private directory it fetched into is gone.
#[test]
fn an_interrupt_stops_a_hanging_fetch_command() {
    let (g, backup, _) = ground_with_backup("label");
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("still-running");
    let cmd = format!("sleep 30; touch {}; cp {}/%f %p", marker.display(), g.archive.display());
    let child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["verify", backup.to_str().unwrap(), "--restore-command", &cmd, "--json"])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep_ms(1500);
    let sent = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sent.elapsed() < std::time::Duration::from_secs(20), "took {:?}", sent.elapsed());
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The commands' shells are gone (killed with their process groups).
    let needle = marker.display().to_string();
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
    assert!(!marker.exists());
}
