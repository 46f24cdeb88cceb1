//! Restoring tar-format backups: pgdrill's own (`backup --format tar
//! --compress zstd`) and pg_basebackup's (`-Ft`, its WAL in pg_wal.tar),
//! extracted through no-follow handles, then gated as usual. A hostile
//! archive is refused before anything is written.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use pgdrill::ground::{free_port, invariant_sql, Ground, LoadOptions};
use pgdrill::pg::Lsn;

fn restore(g: &Ground, backup: &Path, target: &Path, extra: &[&str]) -> std::process::Output {
    let port = free_port().to_string();
    let mut args = vec!["restore", backup.to_str().unwrap(), "--target", target.to_str().unwrap(), "--port", &port];
    args.extend_from_slice(&["--timeout", "120", "--json", "--no-sync"]);
    args.extend_from_slice(extra);
    let _ = g;
    pgdrill(&args)
}

fn opened_and_consistent(g: &Ground, out: &std::process::Output, target: &Path, end: Option<Lsn>) {
    assert_eq!(
        code(out),
        0,
        "{}\n{}",
        stderr(out),
        std::fs::read_to_string(target.join("log/pgdrill-postmaster.log")).unwrap_or_default()
    );
    let r = json(out);
    let opened = lsn(&r["gate"]["opened_at_lsn"]).expect("opened");
    if let Some(end) = end {
        assert!(opened >= end);
    }
    let port = r["port"].as_u64().unwrap() as u16;
    let mut c = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres").connect().unwrap();
    let ok: bool = c.query_one(invariant_sql(LoadOptions::default().accounts).as_str(), &[]).unwrap().get(0);
    assert!(ok, "the load's invariant does not hold after opening");
    drop(c);
    stop_server(g, target);
}

#[test]
fn tar_backups_restore_behind_the_gate() {
    let g = with_standby();
    let load = g.start_load(LoadOptions { filler_bytes: 4000, ..LoadOptions::default() }).unwrap();
    sleep_ms(1000);
    let ours = g.dir.join("tar-zstd");
    let r = backup_cli(&g, "label", &ours, &["--format", "tar", "--compress", "zstd"]);
    let end: Lsn = r["end_lsn"].as_str().unwrap().parse().unwrap();
    let pgbb = g.dir.join("pgbb-tar");
    let has_pgbb = Path::new("/usr/lib/postgresql/15/bin/pg_basebackup").exists() && (13..=15).contains(&g.bin.major);
    if has_pgbb {
        let s = g.standby().unwrap();
        let out = Command::new("/usr/lib/postgresql/15/bin/pg_basebackup")
            .args(["-h", s.socket_dir.to_str().unwrap(), "-p", &s.port.to_string(), "-U", "postgres"])
            .args(["-D", pgbb.to_str().unwrap(), "-Ft", "-X", "stream", "-c", "fast", "--no-sync"])
            .args(["--compress=client-gzip"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    load.stop();

    // pgdrill's own tar, WAL from the archive.
    let t1 = g.dir.join("restored-ours");
    let out = restore(&g, &ours, &t1, &["--wal-archive", g.archive.to_str().unwrap()]);
    opened_and_consistent(&g, &out, &t1, Some(end));
    assert!(!t1.join("base.tar.zst").exists());
    assert!(t1.join("global/pg_control").is_file());

    // pg_basebackup's, with no archive at all: its WAL is in pg_wal.tar.
    if has_pgbb {
        let t2 = g.dir.join("restored-pgbb");
        let out = restore(&g, &pgbb, &t2, &[]);
        opened_and_consistent(&g, &out, &t2, None);
    }

    // A hostile archive (a member climbing out of the target) is refused,
    // and nothing is left at the target.
    let evil = g.dir.join("tar-evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::copy(ours.join("backup_manifest"), evil.join("backup_manifest")).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc {}/base.tar.zst > {}/base.tar", ours.display(), evil.display()))
        .status()
        .unwrap();
    assert!(st.success());
    {
        // Replace the archive's end with one more member named ../escape.
        let tar_path = evil.join("base.tar");
        let mut a = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        let out_path = evil.join("base.tar.new");
        let mut b = tar::Builder::new(std::fs::File::create(&out_path).unwrap());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            b.append(&h, &mut e).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(2);
        h.set_mode(0o644);
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x\n"[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        std::fs::rename(&out_path, &tar_path).unwrap();
    }
    let t3 = g.dir.join("restored-evil");
    let out = restore(&g, &evil, &t3, &["--wal-archive", g.archive.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("../escape"), "{}", stderr(&out));
    assert!(!t3.exists() || std::fs::read_dir(&t3).unwrap().next().is_none());
    assert!(!g.dir.join("escape").exists());
}
