//! Tar-format backups as pg_basebackup writes them (`-Ft`), in every
//! compression it offers on the client and on the server: `verify` reads
//! them in place (manifest, checksums, page checks, and the WAL in
//! `pg_wal.tar`), `inspect` shows them, and damage or hostile members are
//! named.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use pgdrill::ground::{Ground, LoadOptions};

/// Debian's PostgreSQL 15 pg_basebackup (the npm builds ship none).
const PG_BASEBACKUP: &str = "/usr/lib/postgresql/15/bin/pg_basebackup";

fn basebackup(g: &Ground, dest: &Path, extra: &[&str]) {
    let s = g.standby().unwrap();
    let out = Command::new(PG_BASEBACKUP)
        .args(["-h", s.socket_dir.to_str().unwrap(), "-p", &s.port.to_string(), "-U", "postgres"])
        .args(["-D", dest.to_str().unwrap(), "-Ft", "-c", "fast", "--no-sync"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_basebackup {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The offset of a relation file's data in an uncompressed tar, and its path.
fn a_relation_member(tar: &Path) -> (u64, String) {
    let mut a = tar::Archive::new(std::fs::File::open(tar).unwrap());
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p.starts_with("base/") && e.size() >= 8192 && p.rsplit('/').next().unwrap().parse::<u64>().is_ok() {
            return (e.raw_file_position(), p);
        }
    }
    panic!("no relation file in {}", tar.display());
}

/// A copy of an uncompressed tar with one more member: a symbolic link.
fn with_planted_link(src: &Path, dst: &Path) {
    let mut a = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(dst).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        b.append(&h, &mut e).unwrap();
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "log", "/etc").unwrap();
    b.finish().unwrap();
}

#[test]
fn pg_basebackup_tar_backups_in_every_compression() {
    if !Path::new(PG_BASEBACKUP).exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must install postgresql-client-15");
        eprintln!("skipped: {PG_BASEBACKUP} is not installed");
        return;
    }
    let g = with_standby();
    let major = g.bin.major;
    if !(13..=15).contains(&major) {
        eprintln!("skipped: pg_basebackup 15 writes manifests for servers 13 to 15, this is {major}");
        return;
    }
    let load = g.start_load(LoadOptions::default()).unwrap();
    sleep_ms(1000);
    let mut variants: Vec<(&str, Vec<&str>)> = vec![
        ("none", vec![]),
        ("client-gzip", vec!["--compress=client-gzip"]),
        ("client-lz4", vec!["--compress=client-lz4"]),
        ("client-zstd", vec!["--compress=client-zstd"]),
        ("fetch-gzip", vec!["-X", "fetch", "--compress=client-gzip"]),
    ];
    if major >= 15 {
        variants.push(("server-gzip", vec!["--compress=server-gzip"]));
        variants.push(("server-lz4", vec!["--compress=server-lz4"]));
        variants.push(("server-zstd", vec!["--compress=server-zstd"]));
    }
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    for (name, args) in &variants {
        let dest = g.dir.join(format!("tar-{name}"));
        basebackup(&g, &dest, args);
        dirs.push((name.to_string(), dest));
    }
    load.stop();

    for (name, dest) in &dirs {
        let files = files_in(dest);
        assert!(files.iter().any(|f| f.starts_with("base.tar")), "{name}: {files:?}");
        let (c, v) = run_json(&["verify", dest.to_str().unwrap(), "--json"]);
        assert_eq!(c, 0, "{name} ({files:?}): {:?}\n{v:#}", finding_kinds(&v));
        assert_eq!(v["manifest_status"], "applied", "{name}");
        assert_eq!(v["kind"], "label_backup");
        assert_eq!(v["backup_from"], "standby");
        assert!(v["checked"]["checksums"].as_u64().unwrap() > 500, "{name}: {v:#}");
        assert!(v["checked"]["relation_pages"].as_u64().unwrap() > 100, "{name}");
        assert_eq!(v["page_lsn"]["source"], "min_recovery_point", "{name}");
        // The WAL inside the backup (pg_wal.tar, or base.tar's pg_wal/).
        assert_eq!(v["wal"]["checked"], true, "{name}: {v:#}");
        assert!(lsn(&v["wal"]["reached"]) >= lsn(&v["wal"]["end"]), "{name}");

        let (c, i) = run_json(&["inspect", dest.to_str().unwrap(), "--json"]);
        assert_eq!(c, 0);
        assert_eq!(i["format"], "tar");
        assert_eq!(i["kind"], "label_backup");
        assert_eq!(i["control"]["crc_ok"], true);
        // "none", or the compression after "client-", "server-", "fetch-".
        let want = name.rsplit('-').next().unwrap();
        assert_eq!(i["compression"], want, "{name}");
        assert_eq!(i["manifest"]["manifest_checksum_ok"], true, "{name}");
    }

    // Damage in an uncompressed tar: one byte of a relation file.
    let plain = &dirs[0].1;
    let damaged = g.dir.join("tar-damaged");
    Command::new("cp").arg("-a").arg(plain).arg(&damaged).status().unwrap();
    let (offset, victim) = a_relation_member(&damaged.join("base.tar"));
    let mut bytes = std::fs::read(damaged.join("base.tar")).unwrap();
    bytes[offset as usize + 4000] ^= 0x40;
    std::fs::write(damaged.join("base.tar"), &bytes).unwrap();
    let (c, v) = run_json(&["verify", damaged.to_str().unwrap(), "--json"]);
    assert_eq!(c, 1);
    assert!(finding_kinds(&v).contains(&("file_checksum".to_string(), victim.clone())), "{:?}", finding_kinds(&v));

    // A compressed archive cut short: named, no panic.
    let cut = g.dir.join("tar-cut");
    Command::new("cp").arg("-a").arg(&dirs[3].1).arg(&cut).status().unwrap();
    let base = files_in(&cut).into_iter().find(|f| f.starts_with("base.tar")).unwrap();
    let b = std::fs::read(cut.join(&base)).unwrap();
    std::fs::write(cut.join(&base), &b[..b.len() / 2]).unwrap();
    let (c, v) = run_json(&["verify", cut.to_str().unwrap(), "--json"]);
    assert_eq!(c, 1);
    let k = finding_kinds(&v);
    assert!(k.iter().any(|(kind, _)| kind == "file_unreadable" || kind == "file_missing"), "{k:?}");

    // A hostile member: a symbolic link out of the data directory.
    let hostile = g.dir.join("tar-hostile");
    std::fs::create_dir_all(&hostile).unwrap();
    for f in files_in(plain) {
        if f != "base.tar" {
            std::fs::copy(plain.join(&f), hostile.join(&f)).unwrap();
        }
    }
    with_planted_link(&plain.join("base.tar"), &hostile.join("base.tar"));
    let (c, v) = run_json(&["verify", hostile.to_str().unwrap(), "--json"]);
    assert_eq!(c, 1);
    assert!(finding_kinds(&v).contains(&("entry_refused".to_string(), "log".to_string())), "{:?}", finding_kinds(&v));
}
