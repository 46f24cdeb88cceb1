//! Every parser in `pgdrill::pg` on arbitrary bytes and on mutated real
//! files from testdata/: no panic, no abort, and no allocation beyond a
//! bound in proportion to the input (a counting allocator measures each
//! call). Real WAL of every major decodes under the strict rules.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use pgdrill::pg::control::ControlFile;
use pgdrill::pg::label::{self, BackupLabel};
use pgdrill::pg::manifest::{Manifest, ManifestIndex};
use pgdrill::pg::wal::{PageHeader, RecordWalker, WalkConfig};
use pgdrill::pg::{conf, history, page, pgpass, relfile, version, walrecord, Lsn, WalSegSize};
use proptest::prelude::*;

/// Counts the bytes this thread has allocated and not freed, and the peak.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most `f` had allocated at once beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as usize)
}

/// Run every parser on `b`, asserting the allocation bound of each:
/// `per_byte` times the input plus a constant.
fn parse_everything(b: &[u8]) {
    let n = b.len();
    let text = String::from_utf8_lossy(b);
    let bound = |what: &str, peak: usize, per_byte: usize, constant: usize| {
        assert!(peak <= per_byte * n + constant, "{what}: {peak} bytes allocated for {n} bytes of input");
    };
    let (_, p) = peak_of(|| ControlFile::parse(b).map(|c| c.sanity_problems()));
    bound("pg_control", p, 0, 8 << 10);
    let (_, p) = peak_of(|| BackupLabel::parse(&text));
    bound("backup_label", p, 16, 8 << 10);
    let (_, p) = peak_of(|| label::parse_end_location(&text));
    bound("end_location", p, 4, 1 << 10);
    for escapes in [false, true] {
        let (_, p) = peak_of(|| label::parse_tablespace_map(&text, escapes));
        bound("tablespace_map", p, 16, 8 << 10);
    }
    let (_, p) = peak_of(|| history::parse(&text));
    bound("history", p, 16, 8 << 10);
    let (_, p) = peak_of(|| Manifest::parse(b));
    bound("Manifest::parse", p, 16, 256 << 10);
    let (_, p) = peak_of(|| ManifestIndex::read(b, n as u64, &|| false));
    bound("ManifestIndex::read", p, 4, 256 << 10);
    let (_, p) = peak_of(|| text.lines().filter_map(conf::parse_assignment).count());
    bound("conf", p, 8, 4 << 10);
    let (_, p) = peak_of(|| pgpass::lookup(&text, "h", 5432, "d", "u"));
    bound("pgpass", p, 16, 4 << 10);
    let (_, p) = peak_of(|| text.split_whitespace().filter_map(|w| w.parse::<Lsn>().ok()).count());
    bound("lsn", p, 4, 1 << 10);
    let (_, p) = peak_of(|| {
        relfile::relation_path(&text);
        relfile::is_temp_relation(&text);
        (page::page_lsn(b), page::checksum_fails(b, 7), PageHeader::parse(b))
    });
    bound("pages", p, 0, 0);
    let (_, p) = peak_of(|| {
        for v in version::VERSIONS {
            let _ = walrecord::check_body(b, n as u64, v.wal_records, 8192);
        }
    });
    bound("record bodies", p, 0, 0);
    let (_, p) = peak_of(|| walk_pages(b, 0xD110, 1024));
    bound("WAL walk", p, 0, 1 << 10);
}

fn cfg(magic: u16, page_size: u32, major: u32) -> WalkConfig {
    WalkConfig {
        magic,
        seg_size: WalSegSize::DEFAULT,
        page_size,
        system_identifier: None,
        rules: version::by_major(major).unwrap().wal_records,
        block_size: 8192,
    }
}

/// Feed whole pages from the start of a segment until the walker fails.
fn walk_pages(b: &[u8], magic: u16, page_size: u32) -> Result<Lsn, String> {
    let mut w = RecordWalker::new(cfg(magic, page_size, 15), Lsn(0), Lsn(u64::MAX));
    let mut last = Lsn(0);
    for p in b.chunks_exact(page_size as usize) {
        last = w.feed_page(p).map_err(|e| e.to_string())?;
    }
    Ok(last)
}

/// All of testdata/'s real files.
fn testdata() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata"), &mut out);
    out
}

/// A mutation of `b`: bytes flipped, a range cut out or repeated, or the
/// whole cut short.
fn mutate(b: &[u8], kind: u8, at: usize, len: usize, byte: u8) -> Vec<u8> {
    if b.is_empty() {
        return vec![byte];
    }
    let at = at % b.len();
    let len = len % (b.len() - at).max(1);
    let mut v = b.to_vec();
    match kind % 5 {
        0 => v[at] ^= byte | 1,
        1 => {
            for x in &mut v[at..at + len] {
                *x ^= byte;
            }
        }
        2 => v.truncate(at),
        3 => {
            v.drain(at..at + len);
        }
        _ => {
            let part = v[at..at + len].to_vec();
            v.splice(at..at, part);
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..9000)) {
        parse_everything(&b);
    }

    #[test]
    fn mutated_testdata(which in any::<prop::sample::Index>(), kind: u8, at: usize, len: usize, byte: u8) {
        let files = testdata();
        let b = mutate(&files[which.index(files.len())], kind, at, len, byte);
        parse_everything(&b);
    }

    /// Text that looks like a manifest, with parts of it repeated or cut.
    #[test]
    fn mutated_manifests(kind: u8, at: usize, len: usize, byte: u8, version in 1u32..=2) {
        let files: Vec<pgdrill::pg::manifest::ManifestFile> = (0..20u32)
            .map(|i| pgdrill::pg::manifest::ManifestFile {
                path: format!("base/5/{i}").into_bytes(),
                size: u64::from(i),
                last_modified: pgdrill::pg::manifest::format_last_modified(0),
                checksum: Some((pgdrill::pg::manifest::ChecksumAlgorithm::Crc32c, vec![1, 2, 3, 4])),
            })
            .collect();
        let text = Manifest::render(version, 42, &files, &[]);
        parse_everything(&mutate(text.as_bytes(), kind, at, len, byte));
    }
}

/// The shapes that cost line-based parsers most per byte of input: many
/// empty or one-character lines, and many short fields, at 32 KiB. Random
/// mutation finds these only sometimes; here every run tries them.
#[test]
fn many_short_lines_stay_within_the_bounds() {
    let shapes: [&[u8]; 8] =
        [b"\n", b"x\n", b"a: b\n", b"LABEL: x\n", b"1\t0/0\tx\n", b"h:*:d:u:p\n", b"a=b\n", b"1 /x\n"];
    for shape in shapes {
        let b: Vec<u8> = shape.iter().copied().cycle().take(32 << 10).collect();
        parse_everything(&b);
    }
}

/// A small tar backup's base.tar: files, a directory, a long name.
fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, name) in
        ["PG_VERSION", "base/1/1259", &format!("base/1/{}", "x".repeat(150)), "global/pg_control"].iter().enumerate()
    {
        let data = vec![i as u8; 700 * (i + 1)];
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// Read an archive the way a tar backup is read: decompress, every member.
fn read_archive(b: &[u8]) -> usize {
    let Ok((_, r)) = pgdrill::source::compress::decoder(std::io::Cursor::new(b.to_vec())) else { return 0 };
    let mut n = 0;
    let _ = pgdrill::source::tar::for_each(r, |step| {
        if let pgdrill::source::tar::Step::Member(_, mut e) = step {
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut e, 1 << 20), &mut sink)?;
            n += sink.len();
        }
        Ok(true)
    });
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Damaged tar backups, in every compression, read to the end or to an
    /// error: never a panic, and memory bounded whatever the headers claim.
    #[test]
    fn mutated_tar_archives(kind: u8, at: usize, len: usize, byte: u8, c in 0u8..4) {
        use pgdrill::source::compress::{CompressSpec, Compression, Encoder};
        let tar = small_tar();
        let spec = CompressSpec { kind: Compression::ALL[c as usize], level: None, workers: 0 };
        let mut e = Encoder::new(spec, Vec::new()).unwrap();
        std::io::Write::write_all(&mut e, &tar).unwrap();
        let packed = e.finish().unwrap();
        // Damage the tar itself (compressed afterwards) or its compressed form.
        let damaged_inner = mutate(&tar, kind, at, len, byte);
        let mut e = Encoder::new(spec, Vec::new()).unwrap();
        std::io::Write::write_all(&mut e, &damaged_inner).unwrap();
        let repacked = e.finish().unwrap();
        for b in [mutate(&packed, kind, at, len, byte), repacked] {
            let (_, peak) = peak_of(|| read_archive(&b));
            prop_assert!(peak < 48 << 20, "{} bytes allocated", peak);
        }
    }
}

/// The start of a real segment of each major (testdata/wal) decodes
/// under the strict rules, record by record, as far as it goes.
#[test]
fn real_wal_of_every_major_decodes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/wal");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path().join("info.json")).unwrap()).unwrap();
        let major = info["major"].as_u64().unwrap() as u32;
        let magic =
            u16::from_str_radix(info["xlog_page_magic_hex"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        let head = std::fs::read(e.path().join(format!("{}.head", info["segment"].as_str().unwrap()))).unwrap();
        let seg = WalSegSize::new(info["wal_segment_size"].as_u64().unwrap()).unwrap();
        let start =
            pgdrill::pg::wal::SegmentName::parse(info["segment"].as_str().unwrap(), seg).unwrap().start_lsn(seg);
        let c = WalkConfig {
            system_identifier: Some(info["system_identifier"].as_str().unwrap().parse().unwrap()),
            seg_size: seg,
            ..cfg(magic, 8192, major)
        };
        let mut w = RecordWalker::new(c, start, Lsn(u64::MAX));
        for p in head.chunks_exact(8192) {
            w.feed_page(p).unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}"));
        }
        assert!(w.stats.records > 3, "PostgreSQL {major}: {} records", w.stats.records);
        seen += 1;
    }
    assert_eq!(seen, version::VERSIONS.len());
}
