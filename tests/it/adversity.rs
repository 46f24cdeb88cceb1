//! The promise under adversity (issue #9): a refused command changes
//! nothing, no end target below the backup's own end is ever honoured, a
//! hostile backup restored as root touches nothing outside its target, a
//! backup that does not match its manifest is refused, the gate reads the
//! log in any language, a full disk is named, and a signal stops the gate at
//! once, closed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use pgdrill::ground::{free_port, Ground};
use pgdrill::pg::Lsn;

/// `pgdrill restore` in the background; returns once its server runs.
fn restore_in_background(b: &Path, target: &Path, archive: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["restore", b.to_str().unwrap(), "--target", target.to_str().unwrap()])
        .args(["--wal-archive", archive.to_str().unwrap(), "--port", &port.to_string()])
        .args(["--timeout", "300", "--stall-secs", "2", "--no-sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pgdrill::server::running_postmaster(target).is_none() {
        assert!(Instant::now() < deadline, "the restore never started the server");
        sleep_ms(25);
    }
    child
}

/// Issue #9, defect 1 and 2: a refused end-target change leaves the state
/// as it was, and the gate then opens at the backup's end, not below.
fn refused_change_then_resume(method: &str) {
    let (g, b, end) = ground_with_backup(method);
    let (partial, missing) = archive_without_end_segment(&g, end);
    let target = g.dir.join("t");
    let port = free_port();
    let tcp = Knocker::start(&g, "tcp", "127.0.0.1", port);
    let mut child = restore_in_background(&b, &target, &partial, port);
    sleep_ms(1500);
    child.kill().unwrap(); // kill -9 of pgdrill in the middle of the gate
    child.wait().unwrap();
    assert!(pgdrill::server::running_postmaster(&target).is_some(), "the locked server keeps running");

    let state = || std::fs::read(target.join("pgdrill_gate/state.json")).unwrap();
    let auto = || std::fs::read(target.join("postgresql.auto.conf")).unwrap();
    let (state_before, auto_before) = (state(), auto());
    let label_start = Lsn(end.0 - 1);
    let above = Lsn(end.0 + 8);
    for (asked, why) in [(label_start, "below the backup's own end point"), (above, "running with another end target")]
    {
        let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--end-lsn", &asked.to_string()]);
        assert_eq!(code(&out), 2, "{method} --end-lsn {asked}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{method}: {}", stderr(&out));
        assert_eq!(state(), state_before, "{method}: a refused command wrote the state");
        assert_eq!(auto(), auto_before, "{method}: a refused command wrote the configuration");
    }
    // The segment arrives; a plain gate resumes with the saved target.
    std::fs::copy(g.archive.join(&missing), partial.join(&missing)).unwrap();
    g.user.chown(&partial.join(&missing)).unwrap();
    let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--timeout", "120", "--json"]);
    assert_eq!(code(&out), 0, "{method}: {}", stderr(&out));
    let r = json(&out);
    assert_eq!(lsn(&r["end_lsn"]), Some(end), "{method}: the saved target, not a refused one");
    assert!(lsn(&r["opened_at_lsn"]).unwrap() >= end, "{method}: opened below the end");
    sleep_ms(500);
    let knocks = tcp.stop();
    let early: Vec<&Knock> = knocks.iter().filter(|k| k.ok && k.lsn.is_none_or(|l| l < end)).collect();
    assert!(early.is_empty(), "{method}: admitted before {end}: {early:?}");
    assert!(knocks.iter().any(|k| k.ok), "{method}: clients get in once open");
    assert!(knocks.iter().any(|k| !k.ok), "{method}: the knocker tried while the gate was shut");
    stop_server(&g, &target);
}

#[test]
fn a_refused_change_changes_nothing_and_the_gate_opens_at_the_end_label() {
    refused_change_then_resume("label");
}

#[test]
fn a_refused_change_changes_nothing_and_the_gate_opens_at_the_end_legacy() {
    refused_change_then_resume("legacy");
}

/// Names, kinds, owners, modes and contents of everything below `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let body = if m.is_file() {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
            } else {
                String::new()
            };
            out.insert(p.clone(), format!("{:o} {} {} {}", m.mode(), m.uid(), m.gid(), body));
            if m.is_dir() {
                walk(&p, out);
            }
        }
    }
    walk(dir, &mut out);
    out
}

/// Issue #9, defect 3: each link the issue found, and a FIFO, planted in a
/// real backup restored as root: refused before anything is written, and
/// nothing outside the target is created, changed or read into the copy.
#[test]
fn a_hostile_backup_restored_as_root_touches_nothing_outside() {
    if !pgdrill::server::OsUser::running_as_root() {
        eprintln!("needs root: the privilege boundary exists only when pgdrill runs as root");
        return;
    }
    let g = with_standby();
    let (b, _end) = backup(&g, "label", &[]);
    let outside = g.dir.join("outside");
    let secret_dir = outside.join("root-only");
    std::fs::create_dir_all(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("secret"), "root's secret").unwrap();
    std::fs::write(outside.join("victim.conf"), "untouched").unwrap();
    Command::new("chmod").args(["-R", "go-rwx"]).arg(&outside).status().unwrap();
    let before = snapshot(&outside);
    let link = |to: PathBuf| move |p: &Path| std::os::unix::fs::symlink(&to, p).unwrap();
    type Plant = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Plant)> = vec![
        ("postgresql.conf", Box::new(link(outside.join("victim.conf")))),
        ("pg_ident.conf", Box::new(link(outside.join("created-by-root")))),
        ("pg_hba.conf", Box::new(link(secret_dir.join("secret")))),
        ("postgresql.auto.conf", Box::new(link(secret_dir.join("secret")))),
        ("log", Box::new(link(outside.clone()))),
        ("pgdrill_gate", Box::new(link(outside.clone()))),
        ("pg_tblspc/99998", Box::new(link(secret_dir.clone()))),
        (
            "base/1/fifo",
            Box::new(|p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()),
        ),
    ];
    for (i, (name, plant)) in cases.iter().enumerate() {
        let copy = g.dir.join(format!("hostile-{i}"));
        assert!(Command::new("cp").arg("-a").arg(&b).arg(&copy).status().unwrap().success());
        let at = copy.join(name);
        let _ = std::fs::remove_file(&at);
        let _ = std::fs::remove_dir_all(&at);
        plant(&at);
        let target = g.dir.join(format!("hostile-target-{i}"));
        let out = restore_cli(
            copy.to_str().unwrap(),
            target.to_str().unwrap(),
            g.archive.to_str().unwrap(),
            &free_port().to_string(),
            &["--timeout", "60"],
        );
        assert_eq!(code(&out), 1, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(&format!("{}:", at.display())), "{name}: the message names it: {}", stderr(&out));
        assert!(!target.exists(), "{name}: a refused restore leaves no target behind");
        assert_eq!(snapshot(&outside), before, "{name}: something outside changed");
    }
    // A planted gate state directory (a real one, naming a file outside) is
    // never restored and never used, even with the manifest check off.
    let copy = g.dir.join("hostile-state");
    assert!(Command::new("cp").arg("-a").arg(&b).arg(&copy).status().unwrap().success());
    std::fs::create_dir_all(copy.join("pgdrill_gate")).unwrap();
    let planted = format!(
        r#"{{"version":1,"end_lsn":"0/1","then":"pause","hba_file":"{0}/victim.conf","ident_file":"{0}/victim.conf","hba_mode":420,"ident_mode":420,"admit_os_user":"root","roles":["postgres"],"started_at":""}}"#,
        outside.display()
    );
    std::fs::write(copy.join("pgdrill_gate/state.json"), planted).unwrap();
    let target = g.dir.join("hostile-state-target");
    let port = free_port();
    let out = restore_cli(
        copy.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--timeout", "120", "--skip-manifest-check"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(snapshot(&outside), before, "the planted state reached outside");
    stop_server(&g, &target);
}

/// Issue #9, defect 5: restore checks the backup against its manifest and
/// pg_control's CRC before any server starts, names the files, and leaves
/// nothing behind; an explicit option skips the manifest check.
#[test]
fn restore_refuses_a_backup_that_does_not_match_its_manifest() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE heap_to_lose AS SELECT g FROM generate_series(1, 20000) g").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
    let heap = {
        let mut c = g.primary.client().unwrap();
        one(&mut c, "SELECT pg_relation_filepath('heap_to_lose')")
    };
    let (b, _end) = backup(&g, "label", &[]);
    let flip = |p: &Path, at: u64| {
        let mut bytes = std::fs::read(p).unwrap();
        let i = (at as usize).min(bytes.len() - 1);
        bytes[i] ^= 0x40;
        std::fs::write(p, bytes).unwrap();
    };
    let huge_manifest = |copy: &Path| {
        use pgdrill::pg::manifest::{Manifest, ManifestFile};
        let path = copy.join("backup_manifest");
        let m = Manifest::parse(&std::fs::read(&path).unwrap()).unwrap();
        let mut files = m.files.clone();
        for i in 0..200_000 {
            files.push(ManifestFile {
                path: format!("base/1/missing_{i}").into_bytes(),
                size: 8192,
                last_modified: "2026-01-01 00:00:00 GMT".into(),
                checksum: None,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        std::fs::write(&path, Manifest::render(m.version, m.system_identifier.unwrap_or(0), &files, &m.wal_ranges))
            .unwrap();
    };
    type Damage<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        ("heap removed", Box::new(|c: &Path| std::fs::remove_file(c.join(&heap)).unwrap()), "missing from the backup"),
        (
            "a file not in the manifest",
            Box::new(|c: &Path| std::fs::write(c.join("base/1/99999"), b"x").unwrap()),
            "base/1/99999: not in the backup manifest",
        ),
        ("200k files missing", Box::new(huge_manifest), "and 199990 more"),
        (
            "manifest checksum",
            Box::new(|c: &Path| {
                let p = c.join("backup_manifest");
                let t = std::fs::read_to_string(&p).unwrap();
                let i = t.rfind("\"Manifest-Checksum\": \"").unwrap() + 22;
                let mut b = t.into_bytes();
                b[i] = if b[i] == b'0' { b'1' } else { b'0' };
                std::fs::write(&p, b).unwrap();
            }),
            "its own checksum does not match",
        ),
        ("pg_control bit", Box::new(|c: &Path| flip(&c.join("global/pg_control"), 100)), "CRC of pg_control"),
        ("same size, other bytes", Box::new(|c: &Path| flip(&c.join(&heap), 5000)), "checksum differs"),
    ];
    for (i, (what, damage, says)) in cases.iter().enumerate() {
        let copy = g.dir.join(format!("damaged-{i}"));
        assert!(Command::new("cp").arg("-a").arg(&b).arg(&copy).status().unwrap().success());
        damage(&copy);
        let target = g.dir.join(format!("damaged-target-{i}"));
        let started = Instant::now();
        let out = pgdrill(&[
            "restore",
            copy.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--no-start",
            "--no-sync",
        ]);
        assert_eq!(code(&out), 1, "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{what}: {}", stderr(&out));
        assert!(!target.exists(), "{what}: nothing is left behind");
        eprintln!("{what}: refused in {:.1} s", started.elapsed().as_secs_f64());
    }
    // The explicit option restores the heap-less copy anyway (the user's call).
    let copy = g.dir.join("damaged-0");
    let target = g.dir.join("skipped-check");
    let out = pgdrill(&[
        "restore",
        copy.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--no-start",
        "--no-sync",
        "--skip-manifest-check",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// Issue #9, defect 7: a backup whose configuration speaks German gates as
/// in English: the gate pins lc_messages = 'C', so it still reads the
/// server's consistency point and reload messages from the log.
#[test]
fn a_backup_configured_for_another_language_gates_as_in_english() {
    // The server can only use a locale the system has: make one.
    let made = Command::new("localedef").args(["-i", "de_DE", "-f", "UTF-8", "de_DE.UTF-8"]).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("localedef could not make de_DE.UTF-8; the override is still checked below");
    }
    let (g, b, end) = ground_with_backup("legacy");
    let conf = b.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nlc_messages = 'de_DE.UTF-8'\n");
    std::fs::write(&conf, text).unwrap();
    // The configuration was edited after the backup: the manifest agrees.
    refresh_in_manifest(&b, "postgresql.conf");
    let target = g.dir.join("t");
    let port = free_port();
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--timeout", "120", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gate = json(&out)["gate"].clone();
    assert!(lsn(&gate["opened_at_lsn"]).unwrap() >= end);
    assert!(lsn(&gate["server_consistent_lsn"]).is_some(), "the consistency line was read from the log: {gate}");
    let mut c = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres").connect().unwrap();
    assert_eq!(one(&mut c, "SELECT current_setting('lc_messages')"), "C");
    drop(c);
    stop_server(&g, &target);
}

/// Issue #9, defect 8: a restore whose file system fills up while WAL is
/// restored says so, instead of asking for WAL that is in the archive.
#[test]
fn a_full_disk_during_replay_is_named() {
    let (g, b, end) = ground_with_backup("label");
    let size_mb = {
        let out = Command::new("du").args(["-sm"]).arg(&b).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse::<u64>().unwrap()
    };
    let mnt = g.dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    // Room for the copy, not for one 16 MB WAL segment more.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={}M", size_mb + 8), "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a small tmpfs here; skipped");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    std::fs::set_permissions(&mnt, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let target = mnt.join("t");
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &free_port().to_string(),
        &["--timeout", "30", "--stall-secs", "3"],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), 4, "{err}");
    assert!(err.contains("is full"), "the full disk is named, not a missing segment ({end}): {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("provide the missing WAL"), "{err}");
    assert!(err.contains("free space"), "{err}");
}

/// Issue #9, defect 9: the first SIGINT or SIGTERM stops the gate within
/// about a second, exit 3, the server stopped and the lock in place.
#[test]
fn the_first_signal_stops_the_gate_at_once_and_closed() {
    let (g, b, end) = ground_with_backup("label");
    let (partial, _missing) = archive_without_end_segment(&g, end);
    for (i, sig) in [nix::sys::signal::Signal::SIGINT, nix::sys::signal::Signal::SIGTERM].into_iter().enumerate() {
        let target = g.dir.join(format!("t{i}"));
        let child = restore_in_background(&b, &target, &partial, free_port());
        sleep_ms(1000);
        let sent = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let took = sent.elapsed();
        assert_eq!(out.status.code(), Some(3), "{sig}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(took < Duration::from_secs(3), "{sig}: took {took:?} (the server's stop included)");
        assert!(pgdrill::server::running_postmaster(&target).is_none(), "{sig}: the server is stopped");
        assert!(
            std::fs::read_to_string(target.join("pg_hba.conf")).unwrap().contains("pgdrill consistency gate"),
            "{sig}: still locked"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("pgdrill gate --pgdata"), "{sig}: the hint says how to resume: {err}");
    }
    let _: &Ground = &g;
}

/// Issue #9, defect 9, for calls that do not poll: a connection attempt to
/// a server that never answers. The first signal ends it in about a second
/// with exit 3, not after the connect timeout.
#[test]
fn the_first_signal_stops_a_blocked_connection_in_about_a_second() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold connections without ever answering the startup.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["preflight", "--standby", &format!("host=127.0.0.1 port={port} user=x connect_timeout=60")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sleep_ms(1000);
    let sent = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sent.elapsed() < Duration::from_secs(3), "took {:?}", sent.elapsed());
}

/// A restore interrupted before its copy is whole leaves nothing behind,
/// so "run the command again" (its hint) works.
#[test]
fn an_interrupted_restore_leaves_nothing_and_runs_again() {
    let (g, b, end) = ground_with_backup("label");
    let target = g.dir.join("t");
    let args = |port: &str| {
        vec![
            "restore".to_string(),
            b.display().to_string(),
            "--target".into(),
            target.display().to_string(),
            "--wal-archive".into(),
            g.archive.display().to_string(),
            "--port".into(),
            port.into(),
            "--timeout".into(),
            "120".into(),
            "--no-sync".into(),
            "--json".into(),
        ]
    };
    let port = free_port().to_string();
    for delay in [20, 60, 150] {
        let child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
            .args(args(&port))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        sleep_ms(delay);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            // It finished before the signal: the copy is complete and open.
            stop_server(&g, &target);
            std::fs::remove_dir_all(&target).unwrap();
            continue;
        }
        if out.status.code().is_none() {
            // Killed before its handlers were installed: it wrote nothing.
            assert!(!target.exists(), "a restore killed at its start left {}", target.display());
            continue;
        }
        assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
        let left = target.exists() && std::fs::read_dir(&target).unwrap().next().is_some();
        let locked = target.join("global/pg_control").exists();
        assert!(!left || locked, "after {delay} ms: a half copy without pg_control was left behind");
        if locked {
            // Interrupted in the gate: the copy is whole and locked; resume.
            assert!(pgdrill::server::running_postmaster(&target).is_none());
            stop_server(&g, &target);
            std::fs::remove_dir_all(&target).unwrap();
        }
    }
    let out = pgdrill(&args(&port).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(lsn(&json(&out)["gate"]["opened_at_lsn"]).unwrap() >= end);
    stop_server(&g, &target);
}
