//! `pgdrill verify` against real backups, archives and data directories:
//! good ones pass, and every class of damage is caught and named. Where
//! PostgreSQL 15's pg_verifybackup is installed, pgdrill must flag at least
//! every file it flags.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use pgdrill::ground::{Cluster, Ground, GroundOptions, LoadOptions};
use pgdrill::pg::manifest::{Checksummer, Manifest, ManifestFile};
use pgdrill::pg::{Lsn, WalSegSize};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Run `pgdrill verify PATH --json [extra...]`: the exit code and the report.
fn verify(path: &Path, archive: Option<&Path>, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify".to_string(), path.display().to_string(), "--json".to_string()];
    if let Some(a) = archive {
        args.push("--wal-archive".into());
        args.push(a.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = pgdrill(&refs);
    let c = code(&out);
    assert!(c == 0 || c == 1, "verify {}: exit {c}\n{}", path.display(), stderr(&out));
    (c, json(&out))
}

fn findings(v: &Value) -> Vec<(String, String, Option<String>)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
                f["path"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn error_kinds(v: &Value) -> BTreeSet<String> {
    findings(v).into_iter().filter(|f| f.0 == "error").map(|f| f.1).collect()
}

/// Assert a report failed with a finding of `kind` whose path ends with `path`.
fn assert_flags(code: i32, v: &Value, kind: &str, path: &str) {
    assert_eq!(code, 1, "expected failure with {kind} {path}: {v:#}");
    assert_eq!(v["ok"], false);
    let hit = findings(v)
        .iter()
        .any(|(s, k, p)| s == "error" && k == kind && p.as_deref().is_some_and(|p| p.ends_with(path)));
    assert!(hit, "no {kind} finding for {path}: {:#?}", findings(v));
}

fn assert_clean(code: i32, v: &Value, what: &str) {
    assert_eq!(code, 0, "{what}: {:#?}", findings(v));
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], 0);
}

fn lsn(v: &Value) -> Lsn {
    v.as_str().unwrap_or_else(|| panic!("not an LSN: {v}")).parse().unwrap()
}

fn copy_tree(src: &Path, dst: &Path) {
    let st = Command::new("cp").arg("-a").arg(src).arg(dst).status().unwrap();
    assert!(st.success(), "cp -a {} {}", src.display(), dst.display());
}

fn flip_byte(path: &Path, offset: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[offset] ^= 0x5A;
    std::fs::write(path, b).unwrap();
}

/// Take a backup with the CLI from the ground's standby; `--primary` makes
/// sure the end segment reaches the archive.
fn take_backup(g: &Ground, method: &str, name: &str) -> PathBuf {
    let dest = g.dir.join(name);
    let r = backup_cli(g, method, &dest, &["--wal-archive", g.archive.to_str().unwrap()]);
    assert_eq!(r["wal_switch"]["archived"], true);
    dest
}

/// The relation files (numeric names) under a directory's base/.
fn relation_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("base"), &mut out);
    out
}

/// The highest pd_lsn of any relation page under base/.
fn max_page_lsn(root: &Path) -> Lsn {
    let mut max = Lsn(0);
    for f in relation_files(root) {
        let b = std::fs::read(&f).unwrap();
        for p in b.chunks_exact(8192) {
            let hi = u32::from_le_bytes(p[0..4].try_into().unwrap()) as u64;
            let lo = u32::from_le_bytes(p[4..8].try_into().unwrap()) as u64;
            max = max.max(Lsn((hi << 32) | lo));
        }
    }
    max
}

/// Rewrite a manifest so that `rel` matches its current bytes (CRC32C).
fn refresh_manifest_entry(backup: &Path, rel: &str) {
    let text = std::fs::read(backup.join("backup_manifest")).unwrap();
    let m = Manifest::parse(&text).unwrap();
    let bytes = std::fs::read(backup.join(rel)).unwrap();
    let files: Vec<ManifestFile> = m
        .files
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.path == rel.as_bytes() {
                let (alg, _) = f.checksum.clone().unwrap();
                let mut c = Checksummer::new(alg);
                c.update(&bytes);
                f.checksum = Some((alg, c.finish()));
                f.size = bytes.len() as u64;
            }
            f
        })
        .collect();
    let sysid = pgdrill::pg::control::ControlFile::parse(&std::fs::read(backup.join("global/pg_control")).unwrap())
        .unwrap()
        .system_identifier;
    std::fs::write(backup.join("backup_manifest"), Manifest::render(m.version, sysid, &files, &m.wal_ranges)).unwrap();
}

/// File names pg_verifybackup (15) complains about, relative to `dir`;
/// `None` when it is not installed or cannot read this manifest version.
fn pg_verifybackup_flags(dir: &Path, major: u32, wal: Option<&Path>) -> Option<(bool, BTreeSet<String>)> {
    let bin = pg_verifybackup()?;
    if major >= 17 {
        return None; // version 2 manifests are beyond pg_verifybackup 15
    }
    let mut cmd = Command::new(bin);
    match wal {
        Some(a) => cmd.arg("-w").arg(a),
        None => cmd.arg("-n"),
    };
    let o = cmd.arg(dir).output().unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned();
    let prefix = format!("{}/", dir.display());
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| l.contains("error")) {
        // Names are the double-quoted parts: "base/5/16384" has size ...
        for (i, part) in line.split('"').enumerate() {
            if i % 2 == 1 && !part.is_empty() {
                names.insert(part.strip_prefix(&prefix).unwrap_or(part).to_string());
            }
        }
    }
    Some((o.status.success(), names))
}

/// pgdrill must flag (with some finding) every file pg_verifybackup flags,
/// and fail whenever it fails.
fn agrees_with_pg_verifybackup(dir: &Path, major: u32, wal: Option<&Path>, code: i32, v: &Value) {
    let Some((ok, names)) = pg_verifybackup_flags(dir, major, wal) else { return };
    if !ok {
        assert_eq!(code, 1, "pg_verifybackup fails on {} but pgdrill passes", dir.display());
    }
    let ours: BTreeSet<String> = findings(v).into_iter().filter_map(|f| f.2).collect();
    for n in &names {
        assert!(ours.contains(n), "pg_verifybackup flags {n:?} in {}, pgdrill does not: {ours:?}", dir.display());
    }
}

/// Find a page in `segment` (a copy in an archive) after `from` and before
/// `to` that continues a record begun on an earlier page by more than 200
/// bytes; flip a payload byte there. Returns the page's LSN.
fn break_a_record(segment: &Path, seg_start: Lsn, from: Lsn, to: Lsn) -> Option<Lsn> {
    let mut bytes = std::fs::read(segment).unwrap();
    for (i, page) in bytes.chunks_exact(8192).enumerate() {
        let at = Lsn(seg_start.0 + (i as u64) * 8192);
        let info = u16::from_le_bytes([page[2], page[3]]);
        let rem = u32::from_le_bytes(page[16..20].try_into().unwrap());
        if at > from && at.0 + 8192 < to.0 && info & 0x0003 == 0x0001 && rem > 200 {
            bytes[i * 8192 + 24 + 100] ^= 0x01;
            std::fs::write(segment, bytes).unwrap();
            return Some(at);
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Our backups (both methods) pass; each class of damage to a copy is caught
/// and named; pg_verifybackup never flags a file pgdrill misses.
#[test]
fn backups_pass_and_each_kind_of_damage_is_named() {
    let g = with_standby();
    let major = g.bin.major;
    // A checkpoint, then writes: the backups start at that checkpoint's redo
    // point (the standby's restartpoint), their WAL ranges span the writes,
    // and the restartpoint at the backup start writes pages newer than it.
    g.primary_exec("CREATE TABLE verify_old AS SELECT g FROM generate_series(1, 1000) g").unwrap();
    g.primary_exec("CHECKPOINT").unwrap();
    g.primary_exec("CREATE TABLE verify_t AS SELECT g, repeat('v', 300) AS pad FROM generate_series(1, 30000) g")
        .unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
    let rel = one(&mut g.standby().unwrap().client().unwrap(), "SELECT pg_relation_filepath('verify_t')");
    let load = g.start_load(LoadOptions::default()).unwrap();
    sleep_ms(300);
    let label = take_backup(&g, "label", "b-label");
    let legacy = take_backup(&g, "legacy", "b-legacy");
    load.stop();
    let archive = g.archive.as_path();

    // Both methods pass, with a WAL chain proven to their end.
    let mut good = Value::Null;
    for (b, method) in [(&label, "label"), (&legacy, "legacy")] {
        let (c, v) = verify(b, Some(archive), &[]);
        assert_clean(c, &v, method);
        assert_eq!(v["backup_method"], method);
        assert_eq!(v["wal"]["checked"], true);
        assert!(lsn(&v["wal"]["reached"]) >= lsn(&v["wal"]["end"]), "{v:#}");
        assert!(v["checked"]["checksums"].as_u64().unwrap() > 100);
        assert!(v["checked"]["relation_pages"].as_u64().unwrap() > 100);
        assert!(v["checked"]["wal_records"].as_u64().unwrap() > 0);
        assert_eq!(v["page_lsn"]["source"], if method == "label" { "min_recovery_point" } else { "end_location" });
        agrees_with_pg_verifybackup(b, major, None, c, &v);
        if method == "label" {
            good = v;
        }
    }
    // The human form ends with the verdict.
    let out = pgdrill(&["verify", label.to_str().unwrap(), "--wal-archive", archive.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK: no errors found"));
    // Without WAL, the walk is skipped and says so.
    let (c, v) = verify(&label, None, &["--no-wal"]);
    assert_clean(c, &v, "--no-wal");
    assert_eq!(v["wal"]["skipped"], "--no-wal");
    assert_eq!(v["wal"]["reached"], Value::Null);

    // Damage to copies of the label backup.
    let mut n = 0;
    let mut damaged = |what: &str, damage: &dyn Fn(&Path)| -> (PathBuf, i32, Value) {
        n += 1;
        let dir = g.dir.join(format!("damaged-{n}-{what}"));
        copy_tree(&label, &dir);
        damage(&dir);
        let (c, v) = verify(&dir, Some(archive), &[]);
        agrees_with_pg_verifybackup(&dir, major, None, c, &v);
        (dir, c, v)
    };
    let (dir, c, v) = damaged("flipped", &|d| flip_byte(&d.join(&rel), 8192 + 4000));
    assert_flags(c, &v, "file_checksum", &rel);
    // The comparison with pg_verifybackup is not vacuous: it names the file too.
    if let Some((ok, names)) = pg_verifybackup_flags(&dir, major, None) {
        assert!(!ok && names.contains(&rel), "pg_verifybackup: {names:?}");
    }
    let (_, c, v) = damaged("missing", &|d| std::fs::remove_file(d.join(&rel)).unwrap());
    assert_flags(c, &v, "file_missing", &rel);
    let (_, c, v) = damaged("extra", &|d| std::fs::write(d.join("base/extra_file"), "x").unwrap());
    assert_flags(c, &v, "file_extra", "base/extra_file");
    let (_, c, v) = damaged("truncated", &|d| {
        let f = std::fs::OpenOptions::new().write(true).open(d.join(&rel)).unwrap();
        f.set_len(8192).unwrap();
    });
    assert_flags(c, &v, "file_size", &rel);
    let (_, c, v) = damaged("manifest", &|d| {
        let p = d.join("backup_manifest");
        let text = std::fs::read_to_string(&p).unwrap();
        let i = text.rfind("\"Manifest-Checksum\": \"").unwrap() + 22;
        let mut b = text.into_bytes();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        std::fs::write(&p, b).unwrap();
    });
    assert_flags(c, &v, "manifest_checksum", "backup_manifest");
    let (_, c, v) = damaged("control", &|d| flip_byte(&d.join("global/pg_control"), 100));
    assert_flags(c, &v, "control_crc", "global/pg_control");
    assert_flags(c, &v, "file_checksum", "global/pg_control");
    let (_, c, v) = damaged("label", &|d| {
        let p = d.join("backup_label");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for l in &mut lines {
            if l.starts_with("CHECKPOINT LOCATION: ") {
                *l = "CHECKPOINT LOCATION: 0/10".into();
            } else if l.starts_with("START TIMELINE: ") {
                *l = "START TIMELINE: 7".into();
            }
        }
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    });
    assert_flags(c, &v, "label_checkpoint_before_start", "backup_label");
    assert_flags(c, &v, "file_size", "backup_label");
    if major >= 11 {
        assert_flags(c, &v, "label_timeline_mismatch", "backup_label");
    }
    let (_, c, v) =
        damaged("tablespace-map", &|d| std::fs::write(d.join("tablespace_map"), "16999 /srv/ts\n").unwrap());
    assert_flags(c, &v, "tablespace_map_mismatch", "pg_tblspc/16999");
    assert_flags(c, &v, "file_extra", "tablespace_map");
    let (_, c, v) = damaged("incomplete", &|d| std::fs::write(d.join("pgdrill_backup_incomplete"), "").unwrap());
    assert_flags(c, &v, "incomplete_backup", "pgdrill_backup_incomplete");
    assert_eq!(error_kinds(&v).len(), 1, "{:#?}", findings(&v));

    // A legacy backup whose end_location lies before its pg_control's redo.
    let legacy_bad = g.dir.join("damaged-legacy-end");
    copy_tree(&legacy, &legacy_bad);
    std::fs::write(legacy_bad.join("end_location"), "0/10\n").unwrap();
    let (c, v) = verify(&legacy_bad, Some(archive), &[]);
    assert_flags(c, &v, "legacy_end_before_redo", "end_location");
    assert_flags(c, &v, "page_lsn_beyond_end", &rel);

    // pg_control copied too early, in the way PostgreSQL cannot notice: its
    // minRecoveryPoint still satisfies the label (>= START WAL LOCATION) and
    // the manifest matches, but pages were written after it.
    let start = lsn(&good["wal"]["start"]);
    let max = max_page_lsn(&label);
    assert!(max > start, "no page newer than the start {start} to test with (max {max})");
    let (_, c, v) = damaged("early-control", &|d| {
        let p = d.join("global/pg_control");
        let mut b = std::fs::read(&p).unwrap();
        let layout = pgdrill::pg::layout::Layout::of(pgdrill::pg::version::by_major(major).unwrap().control);
        let (mrp, crc_at) = (layout.offset("minRecoveryPoint").unwrap(), layout.offset("crc").unwrap());
        b[mrp..mrp + 8].copy_from_slice(&start.0.to_le_bytes());
        let crc = pgdrill::pg::control::compute_crc(&b, crc_at);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&p, b).unwrap();
        refresh_manifest_entry(d, "global/pg_control");
    });
    assert_eq!(c, 1);
    assert_eq!(error_kinds(&v), BTreeSet::from(["page_lsn_beyond_end".to_string()]), "{:#?}", findings(&v));
    assert_eq!(v["page_lsn"]["bound"].as_str(), Some(start.to_string().as_str()));

    // WAL damage, in copies of the archive.
    let first = good["wal"]["first_segment"].as_str().unwrap().to_string();
    let last = good["wal"]["last_segment"].as_str().unwrap().to_string();
    let end = lsn(&good["wal"]["end"]);
    let mut m = 0;
    let mut with_archive = |what: &str, damage: &dyn Fn(&Path)| -> (PathBuf, i32, Value) {
        m += 1;
        let a = g.dir.join(format!("archive-{m}-{what}"));
        copy_tree(archive, &a);
        damage(&a);
        let (c, v) = verify(&label, Some(&a), &[]);
        if major == 15 {
            // pg_waldump 15 reads only 15's WAL.
            agrees_with_pg_verifybackup(&label, major, Some(&a), c, &v);
        }
        (a, c, v)
    };
    let gone = if first != last { last.clone() } else { first.clone() };
    let (_, c, v) = with_archive("missing", &|a| std::fs::remove_file(a.join(&gone)).unwrap());
    assert_flags(c, &v, "wal_segment_missing", &gone);
    // Short of the end, or nothing verified at all (null) when the only
    // segment is the missing one.
    assert!(v["wal"]["reached"].is_null() || lsn(&v["wal"]["reached"]) < end, "{v:#}");

    let seg = WalSegSize::DEFAULT;
    let seg_start =
        |name: &str| Lsn::from_segment(pgdrill::pg::wal::SegmentName::parse(name, seg).unwrap().segno, seg).unwrap();
    // A record in the middle of the range: after the first page walked and
    // the record continuing onto it, before the end.
    let from = Lsn(start.0 - start.0 % 8192 + 2 * 8192 + 64 * 1024);
    let (_, c, v) = with_archive("crc", &|a| {
        let hit = [&first, &last].iter().find_map(|s| break_a_record(&a.join(s), seg_start(s), from, end));
        assert!(hit.is_some(), "no continued record between {from} and {end} to break");
    });
    let crc = findings(&v).into_iter().find(|f| f.1 == "wal_record_crc");
    assert_eq!(c, 1);
    assert!(crc.is_some(), "{:#?}", findings(&v));
    let crc_path = crc.unwrap().2.unwrap();
    assert!(crc_path.ends_with(&first) || crc_path.ends_with(&last), "{crc_path}");
    assert!(lsn(&v["wal"]["reached"]) < end);

    // A segment of another system under the name of a needed one.
    let other = Ground::new(GroundOptions { fresh_initdb: true, ..GroundOptions::new(bin()) }).unwrap();
    let foreign = other.primary.pgdata.join("pg_wal/000000010000000000000001");
    assert!(foreign.is_file());
    let (_, c, v) = with_archive("foreign", &|a| std::fs::copy(&foreign, a.join(&first)).map(|_| ()).unwrap());
    assert_flags(c, &v, "wal_wrong_system", &first);
    drop(other);

    // pg_basebackup's own plain backup from the standby, with its manifest.
    if major == 15 {
        pg_basebackup_from_standby_passes(&g);
    } else {
        eprintln!("pg_basebackup is PostgreSQL 15's only; skipped for {major}");
    }
}

fn pg_basebackup_from_standby_passes(g: &Ground) {
    let s = g.standby().unwrap();
    let dir = g.dir.join("pgbb");
    let out = Command::new("/usr/lib/postgresql/15/bin/pg_basebackup")
        .arg("-D")
        .arg(&dir)
        .args(["-Fp", "-X", "none", "-c", "fast", "-h"])
        .arg(&s.socket_dir)
        .args(["-p", &s.port.to_string(), "-U", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_basebackup: {}", stderr(&out));
    // Push the end segment into the archive.
    let m = Manifest::parse(&std::fs::read(dir.join("backup_manifest")).unwrap()).unwrap();
    let end = m.wal_ranges.iter().map(|r| r.end).max().unwrap();
    let seg = WalSegSize::DEFAULT;
    let name =
        pgdrill::pg::wal::SegmentName::new(m.wal_ranges[0].timeline, end.prev_segment_number(seg)).file_name(seg);
    g.primary_exec("SELECT pg_switch_wal()").unwrap();
    for _ in 0..300 {
        if g.archive.join(&name).exists() {
            break;
        }
        sleep_ms(100);
    }
    let (c, v) = verify(&dir, Some(&g.archive), &[]);
    assert_clean(c, &v, "pg_basebackup");
    assert_eq!(v["backup_from"], "standby");
    assert_eq!(v["manifest"]["checksum_algorithms"][0], "CRC32C");
    assert!(lsn(&v["wal"]["reached"]) >= end);
    agrees_with_pg_verifybackup(&dir, 15, Some(&g.archive), c, &v);
    // t/002_algorithm.pl and t/006_encoding.pl: every checksum algorithm,
    // and every path hex-encoded.
    for (i, extra) in [
        &["--manifest-checksums=NONE"][..],
        &["--manifest-checksums=SHA224"],
        &["--manifest-checksums=SHA256"],
        &["--manifest-checksums=SHA384"],
        &["--manifest-checksums=SHA512"],
        &["--manifest-force-encode"],
    ]
    .iter()
    .enumerate()
    {
        let d = g.dir.join(format!("pgbb-{i}"));
        let out = Command::new("/usr/lib/postgresql/15/bin/pg_basebackup")
            .arg("-D")
            .arg(&d)
            .args(["-Fp", "-X", "none", "-c", "fast", "-h"])
            .arg(&s.socket_dir)
            .args(["-p", &s.port.to_string(), "-U", "postgres"])
            .args(*extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_basebackup {extra:?}: {}", stderr(&out));
        let (c, v) = verify(&d, None, &["--no-wal"]);
        assert_clean(c, &v, &format!("pg_basebackup {extra:?}"));
        assert_eq!(v["manifest_status"], "applied");
        let checked = v["checked"]["checksums"].as_u64().unwrap();
        assert_eq!(checked == 0, extra[0].ends_with("NONE"), "{extra:?}: {checked} checksums compared");
    }
    // Damage one of its files: both tools name it.
    let rel = relation_files(&dir).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    flip_byte(&rel, 100);
    let (c, v) = verify(&dir, Some(&g.archive), &["--no-wal"]);
    let rel = rel.strip_prefix(&dir).unwrap().to_str().unwrap().to_string();
    assert_flags(c, &v, "file_checksum", &rel);
    agrees_with_pg_verifybackup(&dir, 15, None, c, &v);
}

/// A stopped cascading standby whose WAL crosses a timeline switch verifies
/// with the history file and fails without it; a stopped primary verifies.
#[test]
fn a_timeline_switch_needs_its_history_file() {
    let mut g = with_standby();
    let mut cascade: Cluster = g.new_standby_of(g.standby().unwrap(), "cascade").unwrap();
    // Dirty many buffers on the middle standby, so the checkpoint that
    // follows its promotion takes a while: the cascade then shuts down with
    // its restartpoint still on timeline 1.
    g.primary_exec("CREATE TABLE tl_t AS SELECT g, repeat('t', 200) AS pad FROM generate_series(1, 60000) g").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
    let mut p = g.primary.client().unwrap();
    let target: Lsn = one(&mut p, "SELECT pg_current_wal_lsn()::text").parse().unwrap();
    wait_replay(&cascade, target);
    g.standby_mut().unwrap().promote().unwrap();
    let promoted = g.standby().unwrap();
    let mut c = promoted.client().unwrap();
    c.batch_execute("CREATE TABLE after_switch AS SELECT g FROM generate_series(1, 1000) g").unwrap();
    let target: Lsn = one(&mut c, "SELECT pg_current_wal_lsn()::text").parse().unwrap();
    wait_replay(&cascade, target);
    cascade.stop();
    g.primary.stop();

    let (code, v) = verify(&cascade.pgdata, None, &[]);
    assert_clean(code, &v, "stopped cascading standby");
    assert_eq!(v["kind"], "data_directory");
    assert_eq!(v["wal"]["start_timeline"], 1, "the restartpoint moved to timeline 2 too early: {v:#}");
    assert_eq!(v["wal"]["end_timeline"], 2);
    assert_eq!(v["wal"]["timelines"].as_array().unwrap().len(), 2);
    assert_eq!(v["checked"]["history_files"], 1);
    assert!(lsn(&v["wal"]["reached"]) >= lsn(&v["wal"]["end"]));
    assert!(v["wal"]["last_segment"].as_str().unwrap().starts_with("00000002"));
    // With the shared archive too (it holds the history file and the
    // promoted server's segments).
    let (code, v) = verify(&cascade.pgdata, Some(&g.archive), &[]);
    assert_clean(code, &v, "with the archive");

    // Without the history file, in pg_wal and in the archive.
    let copy = g.dir.join("cascade-no-history");
    copy_tree(&cascade.pgdata, &copy);
    std::fs::remove_file(copy.join("pg_wal/00000002.history")).unwrap();
    let a = g.dir.join("archive-no-history");
    copy_tree(&g.archive, &a);
    let _ = std::fs::remove_file(a.join("00000002.history"));
    let (code, v) = verify(&copy, Some(&a), &[]);
    assert_flags(code, &v, "wal_history_missing", "00000002.history");
    assert_eq!(v["wal"]["reached"], Value::Null);

    // The stopped primary (timeline 1, shut down cleanly) verifies too.
    let (code, v) = verify(&g.primary.pgdata, None, &[]);
    assert_clean(code, &v, "stopped primary");
    assert_eq!(v["page_lsn"]["source"], "checkpoint");
    assert!(v["checked"]["relation_pages"].as_u64().unwrap() > 100);
    assert!(findings(&v).is_empty(), "{:#?}", findings(&v));
    // A flipped pd_lsn high byte in one of its pages is caught.
    let f =
        relation_files(&g.primary.pgdata).into_iter().find(|p| std::fs::metadata(p).unwrap().len() >= 8192).unwrap();
    let primary_copy = g.dir.join("primary-copy");
    copy_tree(&g.primary.pgdata, &primary_copy);
    let rel = f.strip_prefix(&g.primary.pgdata).unwrap();
    flip_byte(&primary_copy.join(rel), 3);
    let (code, v) = verify(&primary_copy, None, &["--no-wal"]);
    assert_flags(code, &v, "page_lsn_beyond_end", rel.to_str().unwrap());
}

fn wait_replay(c: &Cluster, target: Lsn) {
    let mut client = c.client().unwrap();
    for _ in 0..600 {
        let r: Option<String> = client.query_one("SELECT pg_last_wal_replay_lsn()::text", &[]).unwrap().get(0);
        if r.and_then(|r| r.parse::<Lsn>().ok()).is_some_and(|r| r >= target) {
            return;
        }
        sleep_ms(100);
    }
    panic!("{} did not replay up to {target}", c.name);
}

/// What is not a backup, or cannot be read, exits 2; so does an incremental
/// backup.
#[test]
fn refuses_what_is_not_a_backup() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for p in [d.path().join("nonexistent"), file, d.path().to_path_buf()] {
        let out = pgdrill(&["verify", p.to_str().unwrap(), "--json"]);
        assert_eq!(code(&out), 2, "{}: {}", p.display(), stderr(&out));
        assert_eq!(json(&out)["ok"], false);
    }
    // A real pg_control with an incremental backup_label.
    let inc = d.path().join("incremental");
    std::fs::create_dir_all(inc.join("global")).unwrap();
    std::fs::copy("testdata/control/pg17/pg_control", inc.join("global/pg_control")).unwrap();
    std::fs::write(
        inc.join("backup_label"),
        "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000080\n\
         BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-01-01 00:00:00 UTC\nLABEL: x\n\
         START TIMELINE: 1\nINCREMENTAL FROM LSN: 0/1000028\nINCREMENTAL FROM TLI: 1\n",
    )
    .unwrap();
    let out = pgdrill(&["verify", inc.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("incremental"), "{}", stderr(&out));
    // A missing WAL archive is bad input too.
    let out = pgdrill(&["verify", inc.to_str().unwrap(), "--wal-archive", "/nonexistent/pgdrill"]);
    assert_eq!(code(&out), 2);
}

// ---------------------------------------------------------------------------
// As strict as pg_verifybackup, bounded on any input, honest about what was
// checked (issue #11)
// ---------------------------------------------------------------------------

/// Replace a manifest's last line with the checksum of what precedes it, as
/// someone who tampered with it would.
fn reseal(text: &str) -> String {
    let body_end = text[..text.len() - 1].rfind('\n').unwrap() + 1;
    let body = &text[..body_end];
    let draft = format!("{body}\"Manifest-Checksum\": \"x\"}}\n");
    let sum = pgdrill::pg::manifest::compute_manifest_checksum(draft.as_bytes()).unwrap();
    format!("{body}\"Manifest-Checksum\": \"{sum}\"}}\n")
}

/// Edit the manifest line of `rel` with `edit`, then reseal the manifest.
fn tamper_manifest_line(dir: &Path, rel: &str, edit: &dyn Fn(&str) -> String) {
    let p = dir.join("backup_manifest");
    let text = std::fs::read_to_string(&p).unwrap();
    let needle = format!("\"Path\": \"{rel}\"");
    let out: Vec<String> = text.lines().map(|l| if l.contains(&needle) { edit(l) } else { l.to_string() }).collect();
    assert_ne!(out.join("\n") + "\n", text, "no manifest line for {rel}");
    std::fs::write(&p, reseal(&(out.join("\n") + "\n"))).unwrap();
}

/// Run `pgdrill verify` as the ground's server user (the permission cases
/// of pg_verifybackup's tests mean nothing to root).
fn verify_as_server_user(g: &Ground, dir: &Path) -> (i32, Value) {
    let out = g
        .user
        .command(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["verify", dir.to_str().unwrap(), "--json", "--no-wal"])
        .output()
        .unwrap();
    let c = code(&out);
    assert!(c == 0 || c == 1, "verify {}: exit {c}\n{}", dir.display(), stderr(&out));
    (c, json(&out))
}

/// `pgdrill verify` with the address space capped (a huge allocation fails
/// instead of swapping) and a deadline (a loop in proportion to a claimed
/// LSN would blow it): the exit code and the report.
fn verify_bounded(path: &Path, archive: &Path) -> (i32, Value) {
    let cmd = format!(
        "ulimit -v 2000000; exec timeout 300 {} verify {} --wal-archive {} --json",
        env!("CARGO_BIN_EXE_pgdrill"),
        path.display(),
        archive.display()
    );
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    let c = code(&out);
    assert!(
        c == 0 || c == 1,
        "verify {}: exit {c} (134: aborted, 124: ran out of time)\n{}",
        path.display(),
        stderr(&out)
    );
    (c, json(&out))
}

fn has_finding(v: &Value, kind: &str, path: &str) -> bool {
    findings(v).iter().any(|(_, k, p)| k == kind && p.as_deref().is_some_and(|p| p.ends_with(path)))
}

/// Every scenario of PostgreSQL's pg_verifybackup tests that applies to a
/// plain backup (t/003_corruption.pl, the missing manifest of
/// t/004_options.pl, a bad manifest as in t/005_bad_manifest.pl), on a
/// pgdrill backup; then the manifest tampering pg_verifybackup misses, a
/// damaged pg_control, claimed end points that would size huge work, and
/// what the JSON says was checked.
#[test]
fn strict_as_pg_verifybackup_bounded_and_honest() {
    let g = with_standby();
    let major = g.bin.major;
    let in_place_tablespaces = major >= 15;
    if in_place_tablespaces {
        // A tablespace inside the data directory, as PostgreSQL's own tests
        // use on one host.
        let mut c = g.primary.client().unwrap();
        c.batch_execute("SET allow_in_place_tablespaces = on").unwrap();
        c.batch_execute("CREATE TABLESPACE ts1 LOCATION ''").unwrap();
        c.batch_execute("CREATE TABLE x2 (a int) TABLESPACE ts1; INSERT INTO x2 VALUES (222)").unwrap();
    }
    g.primary_exec("CREATE TABLE strict_t AS SELECT g, repeat('s', 100) AS pad FROM generate_series(1, 20000) g")
        .unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
    let rel = one(&mut g.standby().unwrap().client().unwrap(), "SELECT pg_relation_filepath('strict_t')");
    let label = take_backup(&g, "label", "s-label");
    let legacy = take_backup(&g, "legacy", "s-legacy");
    let archive = g.archive.clone();
    let (c, good) = verify(&label, Some(&archive), &[]);
    assert_clean(c, &good, "the label backup");
    assert_eq!(good["manifest_status"], "applied");

    let mut n = 0;
    let mut copy = |what: &str, from: &Path| -> PathBuf {
        n += 1;
        let dir = g.dir.join(format!("strict-{n}-{what}"));
        copy_tree(from, &dir);
        dir
    };

    // --- t/003_corruption.pl
    let d = copy("extra_file", &label);
    std::fs::write(d.join("extra_file"), "This is an extra file.\n").unwrap();
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "file_extra", "extra_file");

    let d = copy("missing_file", &label);
    std::fs::remove_file(d.join("pg_xact/0000")).unwrap();
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "file_missing", "pg_xact/0000");

    let d = copy("append_to_file", &label);
    let mut control = std::fs::read(d.join("global/pg_control")).unwrap();
    control.push(b'x');
    std::fs::write(d.join("global/pg_control"), &control).unwrap();
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "file_size", "global/pg_control");
    assert_flags(c, &v, "control_size", "global/pg_control");

    // An empty or truncated pg_control is corruption (exit 1, not 2), and
    // the other checks still run.
    for (what, len) in [("truncate_file", 0usize), ("truncated_control", 100)] {
        let d = copy(what, &label);
        let p = d.join("global/pg_control");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..len]).unwrap();
        let (c, v) = verify(&d, Some(&archive), &[]);
        assert_flags(c, &v, "control_unreadable", "global/pg_control");
        assert_flags(c, &v, "file_size", "global/pg_control");
        assert_eq!(v["pg_major"], major);
        assert!(v["checked"]["checksums"].as_u64().unwrap() > 100, "the files were still checked: {v:#}");
        assert_eq!(v["wal"]["checked"], false);
        assert!(v["wal"]["skipped"].as_str().unwrap().contains("pg_control"), "{v:#}");
    }

    let d = copy("replace_file", &label);
    let len = std::fs::metadata(d.join("PG_VERSION")).unwrap().len() as usize;
    std::fs::write(d.join("PG_VERSION"), "q".repeat(len)).unwrap();
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "file_checksum", "PG_VERSION");

    let d = copy("bad_manifest", &label);
    let mut m = std::fs::read(d.join("backup_manifest")).unwrap();
    m.push(b'\n');
    std::fs::write(d.join("backup_manifest"), m).unwrap();
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "manifest_checksum", "backup_manifest");

    // Permissions, as a user they apply to.
    let chown = |d: &Path| {
        let st = Command::new("chown").args(["-R", &format!("{}:", g.user.name)]).arg(d).status().unwrap();
        assert!(st.success());
    };
    if g.user.is_root() {
        eprintln!("the server user is root: the permission scenarios are skipped");
    } else {
        use std::os::unix::fs::PermissionsExt;
        let perm = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        for (what, path, mode, flagged) in [
            ("open_file_fails", "PG_VERSION", 0o000, "PG_VERSION"),
            ("open_directory_fails", "pg_subtrans", 0o000, "pg_subtrans"),
            ("search_directory_fails", "base", 0o400, "base/"),
        ] {
            let d = copy(what, &label);
            chown(&d);
            perm(&d.join(path), mode);
            let (c, v) = verify_as_server_user(&g, &d);
            perm(&d.join(path), 0o700);
            assert_eq!(c, 1, "{what}: {v:#}");
            let hit = findings(&v)
                .iter()
                .any(|(_, k, p)| k == "file_unreadable" && p.as_deref().is_some_and(|p| p.starts_with(flagged)));
            assert!(hit, "{what}: {:#?}", findings(&v));
        }
    }

    if in_place_tablespaces {
        let ts = std::fs::read_dir(label.join("pg_tblspc")).unwrap().next().unwrap().unwrap().file_name();
        let ts = format!("pg_tblspc/{}", ts.to_string_lossy());
        let d = copy("extra_tablespace_file", &label);
        let catv = std::fs::read_dir(d.join(&ts)).unwrap().next().unwrap().unwrap().file_name();
        let db_dir = std::fs::read_dir(d.join(&ts).join(&catv)).unwrap().next().unwrap().unwrap().path();
        std::fs::write(db_dir.join("extra_ts_file"), "x").unwrap();
        let (c, v) = verify(&d, None, &["--no-wal"]);
        assert_flags(c, &v, "file_extra", "extra_ts_file");
        let d = copy("missing_tablespace", &label);
        std::fs::remove_dir_all(d.join(&ts)).unwrap();
        let (c, v) = verify(&d, None, &["--no-wal"]);
        assert_eq!(c, 1);
        assert!(findings(&v).iter().any(|(_, k, p)| k == "file_missing" && p.as_deref().unwrap().starts_with(&ts)));
    }

    // --- t/004_options.pl: no manifest. Ours always have one.
    for (what, b) in [("label", &label), ("legacy", &legacy)] {
        let d = copy(&format!("no_manifest_{what}"), b);
        std::fs::remove_file(d.join("backup_manifest")).unwrap();
        let (c, v) = verify(&d, Some(&archive), &[]);
        assert_flags(c, &v, "manifest_missing", "backup_manifest");
        assert_eq!(v["manifest_status"], "missing");
        let (c, v) = verify(&d, Some(&archive), &["--allow-missing-manifest"]);
        assert_clean(c, &v, "--allow-missing-manifest");
        assert_eq!(v["manifest_status"], "missing_allowed");
        assert_eq!(v["checked"]["checksums"], 0);
    }

    // --- t/005_bad_manifest.pl (each case is a unit test of the parser;
    // here, that an unparsable manifest is a finding and the rest runs).
    let d = copy("unparsable_manifest", &label);
    std::fs::write(d.join("backup_manifest"), "{\"PostgreSQL-Backup-Manifest-Version\": 1, \"Oops\": 1}\n").unwrap();
    let (c, v) = verify(&d, Some(&archive), &[]);
    assert_flags(c, &v, "manifest_invalid", "backup_manifest");
    assert_eq!(v["manifest_status"], "invalid");
    assert_eq!(v["wal"]["checked"], true);

    // --- Tampering: an entry's algorithm removed, the manifest resealed,
    // the file changed. pg_verifybackup rejects the manifest too.
    let d = copy("checksum_without_algorithm", &label);
    tamper_manifest_line(&d, &rel, &|l| l.replace("\"Checksum-Algorithm\": \"CRC32C\", ", ""));
    flip_byte(&d.join(&rel), 8192 + 100);
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "manifest_invalid", "backup_manifest");
    assert!(findings(&v).iter().any(|f| f.1 == "manifest_invalid"), "{v:#}");
    // Both fields removed: pg_verifybackup accepts that manifest and never
    // looks at the file's contents; pgdrill does not.
    let d = copy("checksum_removed", &label);
    tamper_manifest_line(&d, &rel, &|l| {
        let i = l.find(", \"Checksum-Algorithm\"").unwrap();
        format!("{} }}{}", &l[..i], if l.ends_with(',') { "," } else { "" })
    });
    flip_byte(&d.join(&rel), 8192 + 100);
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "manifest_invalid", "backup_manifest");
    if let Some((ok, _)) = pg_verifybackup_flags(&d, major, None) {
        assert!(ok, "pg_verifybackup was expected to miss this one");
    }

    // A version 2 manifest without System-Identifier, and one of another
    // system.
    let text = std::fs::read(label.join("backup_manifest")).unwrap();
    let m = Manifest::parse(&text).unwrap();
    let sysid: u64 = good["system_identifier"].as_str().unwrap().parse().unwrap();
    let d = copy("v2_without_sysid", &label);
    let v2 = Manifest::render(2, sysid, &m.files, &m.wal_ranges);
    let without: String =
        v2.lines().filter(|l| !l.starts_with("\"System-Identifier\"")).map(|l| format!("{l}\n")).collect();
    std::fs::write(d.join("backup_manifest"), reseal(&without)).unwrap();
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "manifest_invalid", "backup_manifest");
    let d = copy("v2_other_system", &label);
    std::fs::write(d.join("backup_manifest"), Manifest::render(2, sysid + 1, &m.files, &m.wal_ranges)).unwrap();
    let (c, v) = verify(&d, None, &["--no-wal"]);
    assert_flags(c, &v, "manifest_system_identifier", "backup_manifest");

    // --- Claimed end points that would size huge work: a finding, fast,
    // in little memory.
    for end in ["FFFFFFFF/7000000", "10000/7000000"] {
        let d = copy("far_end", &legacy);
        std::fs::write(d.join("end_location"), format!("{end}\n")).unwrap();
        let (c, v) = verify_bounded(&d, &archive);
        assert_eq!(c, 1);
        let missing = findings(&v).iter().filter(|f| f.1 == "wal_segment_missing").count();
        assert!((1..=3).contains(&missing), "{:#?}", findings(&v));
        assert_eq!(v["findings_omitted"], 0);
        assert!(has_finding(&v, "file_checksum", "end_location") || has_finding(&v, "file_size", "end_location"));
    }
    // A flipped bit in pg_control's minRecoveryPoint: the CRC fails, and
    // nothing in it sizes any work.
    let d = copy("flipped_min_recovery", &label);
    let layout = pgdrill::pg::layout::Layout::of(pgdrill::pg::version::by_major(major).unwrap().control);
    flip_byte(&d.join("global/pg_control"), layout.offset("minRecoveryPoint").unwrap() + 6);
    let (c, v) = verify_bounded(&d, &archive);
    assert_flags(c, &v, "control_crc", "global/pg_control");
    assert_eq!(v["wal"]["checked"], false);
    assert!(v["page_lsn"]["skipped"].as_str().unwrap().contains("CRC"), "{v:#}");

    // --- The JSON says what was checked.
    let a = g.dir.join("archive-without-first");
    copy_tree(&archive, &a);
    let first = good["wal"]["first_segment"].as_str().unwrap();
    std::fs::remove_file(a.join(first)).unwrap();
    let d = copy("no_first_segment", &label);
    let _ = std::fs::remove_file(d.join("pg_wal").join(first));
    let (c, v) = verify(&d, Some(&a), &[]);
    assert_flags(c, &v, "wal_segment_missing", first);
    assert_eq!(v["wal"]["checked"], false, "{v:#}");
    assert_eq!(v["wal"]["reached"], Value::Null);
    assert_eq!(v["wal"]["skipped"], "no record could be verified (see the findings)");
    json_keys_are_documented(&good);
}

/// Every key of the report, and of its objects, is in docs/verify.md's
/// tables, and every key documented there is in the report.
fn json_keys_are_documented(v: &Value) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/verify.md")).unwrap();
    let json = doc.split("## JSON (`--json`)").nth(1).unwrap();
    let documented = |section: &str| -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for line in section.lines() {
            if let Some(cell) = line.strip_prefix("| `") {
                let names = cell.split(" |").next().unwrap();
                for k in names.split(", ") {
                    keys.insert(k.trim_matches('`').to_string());
                }
            }
        }
        keys
    };
    let ours = |o: &Value| -> BTreeSet<String> { o.as_object().unwrap().keys().cloned().collect() };
    let top = json.split("\n`checked`").next().unwrap();
    assert_eq!(documented(top), ours(v), "top-level keys");
    let wal = json.split("`wal`:").nth(1).unwrap().split("\nExample").next().unwrap();
    assert_eq!(documented(wal), ours(&v["wal"]), "wal keys");
    // The prose lists of `checked`, `page_lsn` and `page_checksums` keys.
    for (obj, intro) in [("checked", "`checked`:"), ("page_checksums", "`page_checksums`:")] {
        let text = json.split(intro).nth(1).unwrap().split("\n\n").next().unwrap();
        for k in ours(&v[obj]) {
            assert!(text.contains(&format!("`{k}`")), "{obj}.{k} is not documented");
        }
    }
}

/// A data directory made by `pg_basebackup -R`, run as a standby and
/// stopped (it keeps the stale backup_manifest pg_basebackup wrote).
fn pg_basebackup_standby(g: &Ground) -> PathBuf {
    let dir = g.dir.join("pgbb-standby");
    let out = g
        .user
        .command("/usr/lib/postgresql/15/bin/pg_basebackup")
        .arg("-D")
        .arg(&dir)
        .args(["-R", "-X", "stream", "-c", "fast", "-h"])
        .arg(&g.primary.socket_dir)
        .args(["-p", &g.primary.port.to_string(), "-U", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_basebackup: {}", stderr(&out));
    let port = pgdrill::ground::free_port();
    let mut auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
    auto.push_str(&format!("\nport = {port}\nlisten_addresses = ''\narchive_mode = off\n"));
    std::fs::write(dir.join("postgresql.auto.conf"), auto).unwrap();
    let pg_ctl = g.bin.program("pg_ctl");
    let log = g.dir.join("pgbb-standby.log");
    let out = g.user.command(&pg_ctl).args(["start", "-w", "-t", "120", "-D"]).arg(&dir).arg("-l").arg(&log).output();
    assert!(out.unwrap().status.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    g.primary_exec("CREATE TABLE after_standby AS SELECT g FROM generate_series(1, 5000) g").unwrap();
    g.primary_exec("CHECKPOINT").unwrap();
    sleep_ms(1500);
    let out = g.user.command(&pg_ctl).args(["stop", "-w", "-m", "fast", "-D"]).arg(&dir).output().unwrap();
    assert!(out.status.success());
    dir
}

/// Data checksums of a stopped cluster that has them: clean as it is; a
/// corrupt page with an LSN before the start is named with its block; a
/// corrupt page at or after the start is a torn page replay rewrites.
fn checksum_scenarios(g: &Ground, dir: &Path, rel: &str) {
    let (c, v) = verify(dir, None, &[]);
    assert_clean(c, &v, "a cluster with data checksums");
    assert_eq!(v["page_checksums"]["checked"], true, "{v:#}");
    let pages = v["checked"]["page_checksums"].as_u64().unwrap();
    assert!(pages > 100, "{v:#}");
    let torn = v["checked"]["torn_pages"].as_u64().unwrap();
    let start = lsn(&v["page_checksums"]["torn_from"]);

    let bad = g.dir.join("checksum-bad");
    copy_tree(dir, &bad);
    let page_lsn = |b: &[u8], blk: usize| {
        let p = &b[blk * 8192..];
        Lsn((u64::from(u32::from_le_bytes(p[0..4].try_into().unwrap())) << 32)
            | u64::from(u32::from_le_bytes(p[4..8].try_into().unwrap())))
    };
    let b = std::fs::read(bad.join(rel)).unwrap();
    assert!(page_lsn(&b, 1) < start, "block 1 was written after the start");
    flip_byte(&bad.join(rel), 8192 + 4000);
    let (c, v) = verify(&bad, None, &["--no-wal"]);
    assert_flags(c, &v, "page_checksum", rel);
    let f = v["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "page_checksum").unwrap();
    assert!(f["message"].as_str().unwrap().starts_with("block 1 "), "{f}");

    let torn_dir = g.dir.join("checksum-torn");
    copy_tree(dir, &torn_dir);
    let p = torn_dir.join(rel);
    let mut b = std::fs::read(&p).unwrap();
    b[2 * 8192..2 * 8192 + 4].copy_from_slice(&((start.0 >> 32) as u32).to_le_bytes());
    b[2 * 8192 + 4..2 * 8192 + 8].copy_from_slice(&(start.0 as u32).to_le_bytes());
    b[2 * 8192 + 5000] ^= 0x5A;
    std::fs::write(&p, b).unwrap();
    let (c, v) = verify(&torn_dir, None, &["--no-wal"]);
    assert_clean(c, &v, "a torn page");
    assert_eq!(v["checked"]["torn_pages"].as_u64().unwrap(), torn + 1);
}

/// A stopped standby made by `pg_basebackup -R` verifies as the data
/// directory it is (its backup_manifest is stale and not applied); data
/// page checksums are verified offline, with the torn-page rule.
#[test]
fn a_stopped_standby_and_data_checksums() {
    let mut g = primary();
    let major = g.bin.major;
    g.primary_exec("CREATE TABLE ck AS SELECT g, repeat('c', 200) AS pad FROM generate_series(1, 20000) g").unwrap();
    g.primary_exec("CHECKPOINT").unwrap();
    let rel = one(&mut g.primary.client().unwrap(), "SELECT pg_relation_filepath('ck')");
    if major == 15 {
        let dir = pg_basebackup_standby(&g);
        assert!(dir.join("backup_manifest").exists() && dir.join("backup_label.old").exists());
        let (c, v) = verify(&dir, None, &[]);
        assert_clean(c, &v, "a stopped pg_basebackup -R standby");
        assert_eq!(v["kind"], "data_directory");
        assert_eq!(v["manifest_status"], "stale");
        assert_eq!(error_kinds(&v), BTreeSet::new());
        assert!(findings(&v).iter().any(|f| f.1 == "manifest_stale"), "{:#?}", findings(&v));
        assert_eq!(v["wal"]["checked"], true);
        // Debian's pg_checksums turns data checksums on in the stopped copy.
        let out = g
            .user
            .command("/usr/lib/postgresql/15/bin/pg_checksums")
            .args(["--enable", "--no-sync", "-D"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_checksums: {}", stderr(&out));
        checksum_scenarios(&g, &dir, &rel);
    }
    g.primary.stop();
    let (_, v) = verify(&g.primary.pgdata, None, &[]);
    if v["page_checksums"]["checked"] == true {
        checksum_scenarios(&g, &g.primary.pgdata, &rel);
    } else {
        assert_eq!(v["page_checksums"]["skipped"], "the cluster has no data checksums");
        eprintln!("PostgreSQL {major}'s initdb made no data checksums here");
    }
}

/// Start `pgdrill verify` on `dir`, wait until it has a file open whose
/// path contains `marker` (so it is in the phase that reads it), send
/// `signal`, and return the exit code and how long it took to stop.
fn interrupt_when_reading(
    dir: &Path,
    extra: &[&str],
    marker: &str,
    signal: nix::sys::signal::Signal,
) -> (i32, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .arg("verify")
        .arg(dir)
        .args(extra)
        .arg("--json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let fds = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut reading = false;
    for _ in 0..3000 {
        reading = std::fs::read_dir(&fds)
            .map(|rd| {
                rd.flatten().any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(marker)))
            })
            .unwrap_or(false);
        if reading || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(reading, "verify never read {marker} (it exited {:?})", child.try_wait().unwrap());
    let sent = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), sent.elapsed())
}

/// The first SIGINT or SIGTERM stops verify promptly with exit 3 in each
/// long phase: reading the manifest, reading the files, walking the WAL.
#[test]
fn an_interrupt_stops_every_phase() {
    use nix::sys::signal::Signal;
    let g = with_standby();
    let label = take_backup(&g, "legacy", "i-legacy");
    // WAL to walk: written after the backup started, reached through a
    // later end_location.
    g.primary_exec("CREATE TABLE i_t AS SELECT g, repeat('i', 800) AS pad FROM generate_series(1, 150000) g").unwrap();
    let end = one(&mut g.primary.client().unwrap(), "SELECT pg_current_wal_lsn()::text");
    g.primary_exec("SELECT pg_switch_wal()").unwrap();
    let end: Lsn = end.parse().unwrap();
    let last =
        pgdrill::pg::wal::SegmentName::new(pgdrill::pg::TimelineId(1), end.prev_segment_number(WalSegSize::DEFAULT))
            .file_name(WalSegSize::DEFAULT);
    for _ in 0..600 {
        if g.archive.join(&last).exists() {
            break;
        }
        sleep_ms(100);
    }
    let archive = g.archive.to_str().unwrap().to_string();

    // The manifest: a copy with a manifest of two million lines.
    let big = g.dir.join("interrupt-manifest");
    copy_tree(&label, &big);
    {
        use std::io::Write;
        let f = std::fs::File::create(big.join("backup_manifest")).unwrap();
        let mut w = std::io::BufWriter::new(f);
        writeln!(w, "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [").unwrap();
        for i in 0..2_000_000u32 {
            writeln!(w, "{{ \"Path\": \"base/1/{i}\", \"Size\": 0, \"Last-Modified\": \"2026-11-21 07:28:38 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"00000000\" }},").unwrap();
        }
        writeln!(w, "{{ \"Path\": \"x\", \"Size\": 0 }}\n],\n\"Manifest-Checksum\": \"{}\"}}", "0".repeat(64)).unwrap();
    }
    let (c, took) = interrupt_when_reading(&big, &["--no-wal"], "backup_manifest", Signal::SIGINT);
    assert_eq!(c, 3, "manifest phase");
    assert!(took < Duration::from_secs(3), "the manifest phase took {took:?} to stop");

    // The files: a big relation file (sparse: it costs no disk).
    let files = g.dir.join("interrupt-files");
    copy_tree(&label, &files);
    let db = std::fs::read_dir(files.join("base")).unwrap().flatten().map(|e| e.path()).max().unwrap();
    let f = std::fs::File::create(db.join("999999")).unwrap();
    f.set_len(60 << 30).unwrap();
    let (c, took) = interrupt_when_reading(&files, &["--no-wal"], "999999", Signal::SIGTERM);
    assert_eq!(c, 3, "file phase");
    assert!(took < Duration::from_secs(3), "the file phase took {took:?} to stop");

    // The WAL: one walker, from the backup's start to the later end.
    let wal = g.dir.join("interrupt-wal");
    copy_tree(&label, &wal);
    std::fs::write(wal.join("end_location"), format!("{end}\n")).unwrap();
    let extra = ["--wal-archive", archive.as_str(), "--jobs", "1"];
    let (c, took) = interrupt_when_reading(&wal, &extra, "00000001000000000000000", Signal::SIGINT);
    assert_eq!(c, 3, "WAL phase");
    assert!(took < Duration::from_secs(3), "the WAL phase took {took:?} to stop");
}
