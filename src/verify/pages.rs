//! Relation files and the LSNs of their pages.
//!
//! Where: `base/<db>/<file>`, `global/<file>` and
//! `pg_tblspc/<spc>/<PG_major_catversion>/<db>/<file>`, where a relation
//! file is named `<relfilenode>[_<fork>][.<segment>]`
//! (`src/common/relpath.c`). Every block starts with `PageHeaderData`
//! (`src/include/storage/bufpage.h`), whose first field `pd_lsn` is a
//! `PageXLogRecPtr`: `xlogid` (u32) then `xrecoff` (u32), native order. It is
//! the end of the last WAL record that changed the page.
//!
//! Why it matters: before a standby writes a data page it advances
//! minRecoveryPoint in pg_control past the page's LSN (`XLogFlush()` during
//! recovery calls `UpdateMinRecoveryPoint()`). So in a backup whose
//! pg_control was copied after every data file, no page carries an LSN above
//! that pg_control's minRecoveryPoint. A page that does is proof that
//! pg_control was copied too early, which recovery cannot detect: it would
//! declare consistency before replaying the page's changes.

use crate::pg::Lsn;

/// The `pd_lsn` of a page (its first 8 bytes).
pub fn page_lsn(page: &[u8]) -> Lsn {
    if page.len() < 8 {
        return Lsn(0);
    }
    let hi = u32::from_le_bytes([page[0], page[1], page[2], page[3]]);
    let lo = u32::from_le_bytes([page[4], page[5], page[6], page[7]]);
    Lsn((u64::from(hi) << 32) | u64::from(lo))
}

/// Split a relation file name `<relfilenode>[_<fork>][.<segment>]` into the
/// relfilenode and the fork; `None` for anything else.
pub fn relation_name_parts(name: &str) -> Option<(&str, Option<&str>)> {
    let base = match name.split_once('.') {
        Some((b, seg)) if !seg.is_empty() && seg.bytes().all(|c| c.is_ascii_digit()) => b,
        Some(_) => return None,
        None => name,
    };
    let (node, fork) = match base.split_once('_') {
        Some((n, f)) if matches!(f, "fsm" | "vm" | "init") => (n, Some(f)),
        Some(_) => return None,
        None => (base, None),
    };
    (!node.is_empty() && node.bytes().all(|c| c.is_ascii_digit())).then_some((node, fork))
}

fn is_oid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// Whether a path relative to the data directory is a relation file.
pub fn is_relation_path(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let name_ok = |n: &str| relation_name_parts(n).is_some();
    match parts.as_slice() {
        ["global", name] => name_ok(name),
        ["base", db, name] => is_oid(db) && name_ok(name),
        ["pg_tblspc", spc, version, db, name] => {
            is_oid(spc) && version.starts_with("PG_") && is_oid(db) && name_ok(name)
        }
        _ => false,
    }
}

/// The relation files of one directory that belong to unlogged relations
/// (those with an `_init` fork), other than the init forks themselves. Their
/// pages may carry fake LSNs (`GetFakeLSNForUnloggedRel()`), so they prove
/// nothing; backups leave them out anyway.
pub fn unlogged_files<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<&'a str> {
    let unlogged: Vec<&str> =
        names.clone().filter_map(relation_name_parts).filter(|(_, f)| *f == Some("init")).map(|(n, _)| n).collect();
    if unlogged.is_empty() {
        return Vec::new();
    }
    names
        .filter(|n| matches!(relation_name_parts(n), Some((node, fork)) if fork != Some("init") && unlogged.contains(&node)))
        .collect()
}

/// Page LSNs above a bound, accumulated over one file read in order.
#[derive(Clone, Debug)]
pub struct PageScan {
    bound: Lsn,
    block_size: usize,
    /// Bytes consumed so far (a multiple of the block size until the end).
    offset: u64,
    pub pages: u64,
    pub beyond: u64,
    pub max_lsn: Lsn,
    /// Block number of the page with the highest LSN above the bound.
    pub max_block: u64,
}

impl PageScan {
    pub fn new(bound: Lsn, block_size: u32) -> PageScan {
        PageScan {
            bound,
            block_size: block_size.max(1) as usize,
            offset: 0,
            pages: 0,
            beyond: 0,
            max_lsn: Lsn(0),
            max_block: 0,
        }
    }

    /// Look at the pages of the next chunk. Chunks must be whole blocks,
    /// except the file's last, whose incomplete tail is ignored (a size
    /// problem is reported by the manifest check).
    pub fn feed(&mut self, chunk: &[u8]) {
        for page in chunk.chunks_exact(self.block_size) {
            let lsn = page_lsn(page);
            self.pages += 1;
            // An all-zero page (extended but never written) has LSN 0.
            if lsn > self.bound {
                self.beyond += 1;
                if lsn > self.max_lsn {
                    self.max_lsn = lsn;
                    self.max_block = self.offset / self.block_size as u64;
                }
            }
            self.offset += self.block_size as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lsn: u64, size: usize) -> Vec<u8> {
        let mut p = vec![0u8; size];
        p[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        p[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        p[8] = 0xAA;
        p
    }

    #[test]
    fn reads_pd_lsn_as_two_halves() {
        assert_eq!(page_lsn(&page(0x1_0000_0028, 8192)), Lsn(0x1_0000_0028));
        assert_eq!(page_lsn(&page(0x76D6CA8, 8192)), Lsn(0x76D6CA8));
        assert_eq!(page_lsn(&[0u8; 8192]), Lsn(0));
        assert_eq!(page_lsn(&[1u8; 4]), Lsn(0));
    }

    #[test]
    fn relation_paths() {
        for ok in [
            "base/5/16384",
            "base/5/16384_fsm",
            "base/5/16384_vm",
            "base/5/16384_init",
            "base/5/16384.1",
            "base/5/16384_fsm.12",
            "global/1262",
            "pg_tblspc/16400/PG_15_202209061/5/16401",
        ] {
            assert!(is_relation_path(ok), "{ok}");
        }
        for no in [
            "global/pg_control",
            "global/pg_filenode.map",
            "base/5/PG_VERSION",
            "base/5/pg_internal.init",
            "base/5/t3_16400",
            "base/5/16384_foo",
            "base/5/16384.",
            "base/pgsql_tmp/16384",
            "pg_xact/0000",
            "pg_wal/000000010000000000000001",
            "pg_tblspc/16400/PG_15_202209061/5/sub/16401",
            "pg_tblspc/16400/other/5/16401",
            "base/5",
        ] {
            assert!(!is_relation_path(no), "{no}");
        }
    }

    #[test]
    fn unlogged_forks_are_found() {
        let names = ["16384", "16384_fsm", "16390", "16390.1", "16390_fsm", "16390_init", "PG_VERSION"];
        let mut u = unlogged_files(names.iter().copied());
        u.sort_unstable();
        assert_eq!(u, vec!["16390", "16390.1", "16390_fsm"]);
        assert!(unlogged_files(["1", "2"].iter().copied()).is_empty());
    }

    #[test]
    fn scan_counts_pages_beyond_the_bound() {
        let mut data = Vec::new();
        for lsn in [0x100u64, 0, 0x500, 0x300, 0x900, 0x200] {
            data.extend(page(lsn, 8192));
        }
        data.extend([7u8; 100]); // an incomplete tail is ignored
        let mut s = PageScan::new(Lsn(0x300), 8192);
        // Fed in two chunks of whole blocks plus the tail.
        s.feed(&data[..2 * 8192]);
        s.feed(&data[2 * 8192..]);
        assert_eq!(s.pages, 6);
        assert_eq!(s.beyond, 2);
        assert_eq!(s.max_lsn, Lsn(0x900));
        assert_eq!(s.max_block, 4);
        let mut none = PageScan::new(Lsn(0x900), 8192);
        none.feed(&data);
        assert_eq!(none.beyond, 0);
        // Other block sizes.
        let mut small = PageScan::new(Lsn(0), 4096);
        small.feed(&page(5, 4096));
        assert_eq!((small.pages, small.beyond, small.max_lsn), (1, 1, Lsn(5)));
    }
}
