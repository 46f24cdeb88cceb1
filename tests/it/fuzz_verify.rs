//! A bounded mutation run of `pgdrill verify` over real backups (docs/fuzzing.md).
//!
//! Backups of both methods are taken from the test ground; each execution
//! damages one thing (a byte, a range, a length, a file, the manifest with
//! or without a recomputed checksum, pg_control, the label files, a WAL
//! segment in the range), runs verify on it as a separate process with its
//! address space capped and a deadline, classifies the result, and undoes
//! the damage. It counts:
//!
//! - panics (exit 101, or "panicked" on stderr),
//! - aborts (killed by a signal: an allocation failure, a stack overflow),
//! - hangs (the deadline passed),
//! - misses: a file the manifest lists with a checksum was changed, and
//!   verify exited 0;
//!
//! and every count must be zero. `PGDRILL_FUZZ_EXECS` sets the number of
//! executions (default 100, what CI runs), `PGDRILL_FUZZ_SEED` the seed;
//! `just fuzz` runs a long one in a release build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use pgdrill::pg::manifest::Manifest;

/// A backup to damage and what is known of it.
struct Subject {
    dir: PathBuf,
    /// Paths the manifest lists with a checksum, relative.
    checksummed: Vec<String>,
    /// Every regular file, relative.
    files: Vec<String>,
}

fn list_files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_file() {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn subject(dir: PathBuf) -> Subject {
    let m = Manifest::parse(&std::fs::read(dir.join("backup_manifest")).unwrap()).unwrap();
    let checksummed = m
        .files
        .iter()
        .filter(|f| f.checksum.is_some())
        .map(|f| String::from_utf8_lossy(&f.path).into_owned())
        .filter(|p| !pgdrill::verify::files::is_ignored(p.as_bytes()))
        .collect();
    let files = list_files(&dir);
    Subject { dir, checksummed, files }
}

/// What one execution did, to undo it: the file and its former contents
/// (`None`: it did not exist).
struct Undo {
    path: PathBuf,
    before: Option<Vec<u8>>,
}

impl Undo {
    fn undo(self) {
        match self.before {
            Some(b) => std::fs::write(&self.path, b).unwrap(),
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Recompute a manifest's checksum, as someone who edited it would.
fn reseal(text: &[u8]) -> Vec<u8> {
    let t = String::from_utf8_lossy(text);
    let Some(body_end) = t.trim_end_matches('\n').rfind('\n').map(|i| i + 1) else { return text.to_vec() };
    let body = &t[..body_end];
    let draft = format!("{body}\"Manifest-Checksum\": \"x\"}}\n");
    match pgdrill::pg::manifest::compute_manifest_checksum(draft.as_bytes()) {
        Ok(sum) => format!("{body}\"Manifest-Checksum\": \"{sum}\"}}\n").into_bytes(),
        Err(_) => text.to_vec(),
    }
}

/// Damage `b` in one of several ways.
fn damage_bytes(rng: &mut fastrand::Rng, b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    if v.is_empty() {
        return vec![rng.u8(..)];
    }
    let at = rng.usize(..v.len());
    match rng.u8(..6) {
        0 => v[at] ^= 1 << rng.u8(..8),
        1 => v[at] = rng.u8(..),
        2 => {
            let len = rng.usize(1..=64.min(v.len() - at));
            for x in &mut v[at..at + len] {
                *x = rng.u8(..);
            }
        }
        3 => v.truncate(at),
        4 => {
            let n = rng.usize(1..100);
            v.extend(std::iter::repeat_with(|| rng.u8(..)).take(n));
        }
        _ => {
            let len = rng.usize(1..=16.min(v.len() - at));
            v.drain(at..at + len);
        }
    }
    v
}

/// Text a claim could be replaced with: LSNs and numbers of every size.
fn odd_text(rng: &mut fastrand::Rng) -> String {
    match rng.u8(..5) {
        0 => format!("{:X}/{:X}\n", rng.u32(..), rng.u32(..)),
        1 => "FFFFFFFF/FFFFFFFF\n".into(),
        2 => format!("{:X}/{:X}\n", rng.u32(..0x10), rng.u32(..)),
        3 => "0/0\n".into(),
        _ => String::from_utf8_lossy(&(0..rng.usize(..40)).map(|_| rng.u8(..)).collect::<Vec<u8>>()).into_owned(),
    }
}

/// One damage to a backup (or its WAL); returns how to undo it and whether
/// it changed a file the manifest vouches for.
fn damage(rng: &mut fastrand::Rng, s: &Subject, wal: &Path) -> (Vec<Undo>, bool, &'static str) {
    let keep = |p: &Path| Undo { path: p.to_path_buf(), before: std::fs::read(p).ok() };
    let pick = |rng: &mut fastrand::Rng, v: &[String]| v[rng.usize(..v.len())].clone();
    let write = |p: &Path, b: &[u8]| std::fs::write(p, b).unwrap();
    match rng.u8(..10) {
        // A file the manifest lists.
        0..=2 => {
            let rel = pick(rng, &s.checksummed);
            let p = s.dir.join(&rel);
            let u = keep(&p);
            let before = u.before.clone().unwrap_or_default();
            let after = if rng.u8(..8) == 0 {
                std::fs::remove_file(&p).unwrap();
                None
            } else {
                let a = damage_bytes(rng, &before);
                write(&p, &a);
                Some(a)
            };
            (vec![u], after.as_deref() != Some(&before[..]), "listed file")
        }
        // The files recovery and verify read first.
        3 => {
            let rel = *["global/pg_control", "backup_label", "end_location", "tablespace_map", "PG_VERSION"]
                .get(rng.usize(..5))
                .unwrap();
            let p = s.dir.join(rel);
            let u = keep(&p);
            let before = u.before.clone();
            let after = match (rel, rng.bool()) {
                ("end_location", true) => odd_text(rng).into_bytes(),
                _ => damage_bytes(rng, before.as_deref().unwrap_or_default()),
            };
            write(&p, &after);
            let changed = before.as_deref() != Some(&after[..]) && s.checksummed.iter().any(|c| c == rel);
            (vec![u], changed, "control or label file")
        }
        // The manifest, resealed or not.
        4 | 5 => {
            let p = s.dir.join("backup_manifest");
            let u = keep(&p);
            let mut a = damage_bytes(rng, u.before.as_deref().unwrap_or_default());
            if rng.bool() {
                a = reseal(&a);
            }
            write(&p, &a);
            (vec![u], false, "manifest")
        }
        // A claim edited in the manifest (sizes, LSNs, checksums), resealed.
        6 => {
            let p = s.dir.join("backup_manifest");
            let u = keep(&p);
            let text = String::from_utf8_lossy(u.before.as_deref().unwrap_or_default()).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            let i = rng.usize(..lines.len());
            let mut line = lines[i].to_string();
            let digits: Vec<usize> =
                line.char_indices().filter(|(_, c)| c.is_ascii_hexdigit()).map(|(i, _)| i).collect();
            if let Some(&at) = digits.get(rng.usize(..digits.len().max(1))) {
                let c = *b"0123456789ABCDEF".get(rng.usize(..16)).unwrap() as char;
                line.replace_range(at..at + 1, &c.to_string());
            }
            let mut all: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            all[i] = line;
            write(&p, &reseal((all.join("\n") + "\n").as_bytes()));
            (vec![u], false, "manifest claim")
        }
        // A file added, or any file on disk changed.
        7 => {
            if rng.bool() {
                let p = s.dir.join(format!("base/{}", rng.u32(..)));
                let u = keep(&p);
                write(&p, &[rng.u8(..); 8192]);
                return (vec![u], false, "added file");
            }
            let rel = pick(rng, &s.files);
            let p = s.dir.join(&rel);
            let u = keep(&p);
            let before = u.before.clone().unwrap_or_default();
            let after = damage_bytes(rng, &before);
            write(&p, &after);
            (vec![u], after != before && s.checksummed.contains(&rel), "any file")
        }
        // A WAL segment of the range.
        _ => {
            let segs = list_files(wal);
            let p = wal.join(pick(rng, &segs));
            let u = keep(&p);
            let mut b = u.before.clone().unwrap_or_default();
            if rng.u8(..4) == 0 {
                b = damage_bytes(rng, &b);
            } else {
                // A byte among the first pages, where the walk goes.
                let at = rng.usize(..b.len().min(4 << 20));
                b[at] ^= 1 << rng.u8(..8);
            }
            write(&p, &b);
            (vec![u], false, "WAL")
        }
    }
}

#[derive(Default)]
struct Tally {
    execs: u64,
    panics: u64,
    aborts: u64,
    hangs: u64,
    misses: u64,
    exits: BTreeMap<i32, u64>,
    by_target: BTreeMap<&'static str, u64>,
    failures: Vec<String>,
}

/// Run verify with its address space capped at 4 GB and a deadline.
fn run_verify(dir: &Path, wal: &Path, deadline: Duration) -> (Option<i32>, bool, String) {
    let cmd = format!(
        "ulimit -v 4000000; exec {} verify {} --wal-archive {} --json",
        env!("CARGO_BIN_EXE_pgdrill"),
        dir.display(),
        wal.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            return (status.code(), false, err);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, true, String::new());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn mutation_run() {
    let execs: u64 = std::env::var("PGDRILL_FUZZ_EXECS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seed: u64 =
        std::env::var("PGDRILL_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let g = with_standby();
    g.primary_exec("CREATE TABLE fz AS SELECT g, repeat('f', 100) AS pad FROM generate_series(1, 20000) g").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
    let mut subjects = Vec::new();
    for method in ["label", "legacy"] {
        let dir = g.dir.join(format!("fuzz-{method}"));
        let r = backup_cli(&g, method, &dir, &["--wal-archive", g.archive.to_str().unwrap()]);
        assert_eq!(r["wal_switch"]["archived"], true);
        subjects.push(subject(dir));
    }
    // Each backup's WAL, in an archive of its own (small, and damaged in place).
    let mut wals = Vec::new();
    for s in &subjects {
        let (c, v) = {
            let out =
                pgdrill(&["verify", s.dir.to_str().unwrap(), "--wal-archive", g.archive.to_str().unwrap(), "--json"]);
            (code(&out), json(&out))
        };
        assert_eq!(c, 0, "the undamaged backup fails: {v:#}");
        let wal = s.dir.with_extension("wal");
        std::fs::create_dir_all(&wal).unwrap();
        let seg = pgdrill::pg::WalSegSize::DEFAULT;
        let first = pgdrill::pg::wal::SegmentName::parse(v["wal"]["first_segment"].as_str().unwrap(), seg).unwrap();
        let last = pgdrill::pg::wal::SegmentName::parse(v["wal"]["last_segment"].as_str().unwrap(), seg).unwrap();
        for segno in first.segno..=last.segno {
            let name = pgdrill::pg::wal::SegmentName::new(first.tli, segno).file_name(seg);
            std::fs::copy(g.archive.join(&name), wal.join(&name)).unwrap();
        }
        wals.push(wal);
    }
    let deadline =
        Duration::from_secs(std::env::var("PGDRILL_FUZZ_DEADLINE").ok().and_then(|v| v.parse().ok()).unwrap_or(120));
    let mut t = Tally::default();
    let started = Instant::now();
    for i in 0..execs {
        let k = (i as usize) % subjects.len();
        let (undo, changed, target) = damage(&mut rng, &subjects[k], &wals[k]);
        let (code, hung, err) = run_verify(&subjects[k].dir, &wals[k], deadline);
        t.execs += 1;
        *t.by_target.entry(target).or_insert(0) += 1;
        let what = format!("execution {i} ({target}, seed {seed})");
        match code {
            _ if hung => {
                t.hangs += 1;
                t.failures.push(format!("{what}: no exit within {deadline:?}"));
            }
            None => {
                t.aborts += 1;
                t.failures.push(format!("{what}: killed by a signal: {err}"));
            }
            Some(c) => {
                *t.exits.entry(c).or_insert(0) += 1;
                if c == 101 || err.contains("panicked") {
                    t.panics += 1;
                    t.failures.push(format!("{what}: panic: {err}"));
                } else if c > 3 {
                    t.aborts += 1;
                    t.failures.push(format!("{what}: exit {c}: {err}"));
                } else if c == 0 && changed {
                    t.misses += 1;
                    t.failures.push(format!("{what}: a listed file was changed and verify passed"));
                }
            }
        }
        for u in undo {
            u.undo();
        }
    }
    eprintln!(
        "mutation run: seed {seed}, {} executions in {:.0} s: {} panics, {} aborts, {} hangs, {} misses; exit codes {:?}; damaged {:?}",
        t.execs,
        started.elapsed().as_secs_f64(),
        t.panics,
        t.aborts,
        t.hangs,
        t.misses,
        t.exits,
        t.by_target
    );
    for f in &t.failures {
        eprintln!("  {f}");
    }
    assert!(t.failures.is_empty(), "{} failures (seed {seed})", t.failures.len());
}
