//! What the pages of relation files prove: their LSNs, and their data
//! checksums, read in the same pass as the manifest checksums.
//!
//! The page format is [`crate::pg::page`]'s, where relation files are is
//! [`crate::pg::relfile`]'s.
//!
//! **Page LSNs.** Before a standby writes a data page it advances
//! minRecoveryPoint in pg_control past the page's LSN (`XLogFlush()` during
//! recovery calls `UpdateMinRecoveryPoint()`). So in a backup whose
//! pg_control was copied after every data file, no page carries an LSN above
//! that pg_control's minRecoveryPoint. A page that does is proof that
//! pg_control was copied too early, which recovery cannot detect: it would
//! declare consistency before replaying the page's changes.
//!
//! **Data checksums** (when pg_control's `data_checksum_version` is set).
//! A page copied while the server was writing it can be torn and fail its
//! checksum; replay rewrites such a page from the full-page image that the
//! first change after the backup's start logged, and that change gave the
//! page an LSN at or after the start. So, as pg_basebackup does
//! (`verify_page_checksum()` in `src/backend/backup/basebackup.c`), a page
//! is checked only if it is not new and its LSN is before the backup's
//! start (the redo point for a data directory); every failure among those is
//! corruption.

use crate::pg::page;
use crate::pg::Lsn;

/// The data checksum check of one file.
#[derive(Clone, Copy, Debug)]
pub struct ChecksumScan {
    /// Pages with an LSN at or after this may be torn; they are not checked.
    pub torn_from: Lsn,
    /// The fork's block number of the file's first page.
    pub first_block: u64,
}

/// Page LSNs above a bound and data checksum failures, accumulated over one
/// file read in order.
#[derive(Clone, Debug)]
pub struct PageScan {
    bound: Option<Lsn>,
    checksums: Option<ChecksumScan>,
    block_size: usize,
    /// Bytes consumed so far (a multiple of the block size until the end).
    offset: u64,
    pub pages: u64,
    pub beyond: u64,
    pub max_lsn: Lsn,
    /// Block number (in the file) of the page with the highest LSN above the bound.
    pub max_block: u64,
    /// Pages whose checksum was computed.
    pub checksummed: u64,
    /// Pages skipped by the torn-page rule.
    pub torn: u64,
    /// Pages failing their checksum, and the first of them (block in the
    /// file, its LSN).
    pub bad: u64,
    pub first_bad: Option<(u64, Lsn)>,
    /// More pages than counted in `beyond` lie above the bound (a
    /// [`DeferredScan`] counts at most [`KEEP`]).
    pub beyond_more: bool,
}

impl PageScan {
    /// A scan for LSNs above `bound` and, with `checksums`, data checksums.
    pub fn new(bound: Option<Lsn>, checksums: Option<ChecksumScan>, block_size: u32) -> PageScan {
        PageScan {
            bound,
            checksums,
            block_size: block_size.max(1) as usize,
            offset: 0,
            pages: 0,
            beyond: 0,
            max_lsn: Lsn(0),
            max_block: 0,
            checksummed: 0,
            torn: 0,
            bad: 0,
            first_bad: None,
            beyond_more: false,
        }
    }

    /// Look at the pages of the next chunk. Chunks must be whole blocks,
    /// except the file's last, whose incomplete tail is ignored (a size
    /// problem is reported by the manifest check).
    pub fn feed(&mut self, chunk: &[u8]) {
        for p in chunk.chunks_exact(self.block_size) {
            let block = self.offset / self.block_size as u64;
            let lsn = page::page_lsn(p);
            self.pages += 1;
            // An all-zero page (extended but never written) has LSN 0.
            if self.bound.is_some_and(|b| lsn > b) {
                self.beyond += 1;
                if lsn > self.max_lsn {
                    self.max_lsn = lsn;
                    self.max_block = block;
                }
            }
            if let Some(c) = self.checksums {
                self.check_checksum(p, block, lsn, c);
            }
            self.offset += self.block_size as u64;
        }
    }

    fn check_checksum(&mut self, p: &[u8], block: u64, lsn: Lsn, c: ChecksumScan) {
        if page::is_new(p) {
            return;
        }
        if lsn >= c.torn_from {
            self.torn += 1;
            return;
        }
        self.checksummed += 1;
        if page::checksum_fails(p, c.first_block + block) {
            self.bad += 1;
            self.first_bad.get_or_insert((block, lsn));
        }
    }
}

/// How many of a file's highest page LSNs a [`DeferredScan`] keeps, and
/// how many checksum failures.
pub const KEEP: usize = 32;

/// The page facts of one file read before the checks' settings are known:
/// a tar backup's `global/pg_control` (and, in pgdrill's tar backups,
/// `backup_label`) come after the relation files. The scan assumes the
/// default block and segment sizes (checked once pg_control is read: the
/// facts are discarded otherwise) and a provisional torn-page floor (the
/// manifest's or label's start), keeps the file's [`KEEP`] highest page
/// LSNs and first checksum failures, and is then [evaluated](Self::evaluate)
/// against the real bound. Memory per file is fixed.
#[derive(Clone, Debug)]
pub struct DeferredScan {
    block_size: usize,
    first_block: u64,
    floor: Lsn,
    offset: u64,
    pages: u64,
    /// The highest page LSNs (with their blocks), highest first.
    top: Vec<(Lsn, u64)>,
    /// Non-new pages at or after the floor (not checksummed).
    at_or_after_floor: u64,
    checksummed: u64,
    /// Checksum failures (block, LSN), the first [`KEEP`] of them, and how
    /// many there were.
    failures: Vec<(u64, Lsn)>,
    failures_total: u64,
}

/// The block size a deferred scan assumes (`BLCKSZ`'s default).
pub const ASSUMED_BLOCK_SIZE: u32 = 8192;
/// Blocks per relation segment file a deferred scan assumes (`RELSEG_SIZE`'s
/// default: 1 GB of 8 kB blocks).
pub const ASSUMED_BLOCKS_PER_SEGMENT: u32 = 131072;

impl DeferredScan {
    /// A scan of a file whose first block is `first_block` of its fork;
    /// pages before `floor` get their data checksums computed.
    pub fn new(first_block: u64, floor: Lsn) -> DeferredScan {
        DeferredScan {
            block_size: ASSUMED_BLOCK_SIZE as usize,
            first_block,
            floor,
            offset: 0,
            pages: 0,
            top: Vec::new(),
            at_or_after_floor: 0,
            checksummed: 0,
            failures: Vec::new(),
            failures_total: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        for p in chunk.chunks_exact(self.block_size) {
            let block = self.offset / self.block_size as u64;
            let lsn = page::page_lsn(p);
            self.pages += 1;
            if lsn.0 > 0 && (self.top.len() < KEEP || self.top.last().is_some_and(|l| lsn > l.0)) {
                let at = self.top.partition_point(|(l, _)| *l >= lsn);
                self.top.insert(at, (lsn, block));
                self.top.truncate(KEEP);
            }
            if !page::is_new(p) {
                if lsn >= self.floor {
                    self.at_or_after_floor += 1;
                } else {
                    self.checksummed += 1;
                    if page::checksum_fails(p, self.first_block + block) {
                        self.failures_total += 1;
                        if self.failures.len() < KEEP {
                            self.failures.push((block, lsn));
                        }
                    }
                }
            }
            self.offset += self.block_size as u64;
        }
    }

    /// Whether the file has anything a later bound or torn-page point could
    /// turn into a finding: a page above the floor, or a checksum failure.
    pub fn worth_keeping(&self) -> bool {
        self.failures_total > 0 || self.top.first().is_some_and(|(l, _)| *l >= self.floor)
    }

    /// Pages scanned, checksummed, and at or after the floor.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.pages, self.checksummed, self.at_or_after_floor)
    }

    /// The results as a [`PageScan`] would have them, for LSNs above
    /// `bound` and, with `checksums`, data checksums with the torn-page
    /// rule from `torn_from`. Exact unless more than [`KEEP`] pages lie
    /// above the bound (then [`PageScan::beyond_more`] is set) or the
    /// torn-page point differs from the floor the scan assumed.
    pub fn evaluate(&self, bound: Option<Lsn>, checksums: Option<Lsn>) -> PageScan {
        let mut s = PageScan::new(bound, None, self.block_size as u32);
        s.pages = self.pages;
        if let Some(b) = bound {
            let above: Vec<&(Lsn, u64)> = self.top.iter().filter(|(l, _)| *l > b).collect();
            s.beyond = above.len() as u64;
            s.beyond_more = above.len() == KEEP;
            if let Some((l, blk)) = above.first() {
                s.max_lsn = *l;
                s.max_block = *blk;
            }
        }
        if let Some(torn_from) = checksums {
            s.checksummed = self.checksummed;
            s.torn = self.at_or_after_floor;
            let bad: Vec<&(u64, Lsn)> = self.failures.iter().filter(|(_, l)| *l < torn_from).collect();
            s.bad = if bad.len() == self.failures.len() { self.failures_total } else { bad.len() as u64 };
            s.first_bad = bad.first().map(|(b, l)| (*b, *l));
        }
        s
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

    /// A page with a valid checksum for `blkno`.
    fn checksummed(lsn: u64, blkno: u64) -> Vec<u8> {
        let mut p = page(lsn, 8192);
        p[14..16].copy_from_slice(&8000u16.to_le_bytes()); // pd_upper: not new
        p[100] = 0x33;
        let c = page::checksum(&p, blkno);
        p[8..10].copy_from_slice(&c.to_le_bytes());
        p
    }

    #[test]
    fn scan_counts_pages_beyond_the_bound() {
        let mut data = Vec::new();
        for lsn in [0x100u64, 0, 0x500, 0x300, 0x900, 0x200] {
            data.extend(page(lsn, 8192));
        }
        data.extend([7u8; 100]); // an incomplete tail is ignored
        let mut s = PageScan::new(Some(Lsn(0x300)), None, 8192);
        // Fed in two chunks of whole blocks plus the tail.
        s.feed(&data[..2 * 8192]);
        s.feed(&data[2 * 8192..]);
        assert_eq!(s.pages, 6);
        assert_eq!(s.beyond, 2);
        assert_eq!(s.max_lsn, Lsn(0x900));
        assert_eq!(s.max_block, 4);
        let mut none = PageScan::new(Some(Lsn(0x900)), None, 8192);
        none.feed(&data);
        assert_eq!(none.beyond, 0);
        // Other block sizes.
        let mut small = PageScan::new(Some(Lsn(0)), None, 4096);
        small.feed(&page(5, 4096));
        assert_eq!((small.pages, small.beyond, small.max_lsn), (1, 1, Lsn(5)));
        // No bound: nothing is beyond.
        let mut unbound = PageScan::new(None, None, 8192);
        unbound.feed(&data);
        assert_eq!((unbound.pages, unbound.beyond), (6, 0));
    }

    #[test]
    fn checksums_follow_the_torn_page_rule() {
        // A second segment file: its blocks count from 131072.
        let first = 131072;
        let mut data = Vec::new();
        data.extend(checksummed(0x100, first)); // good
        let mut bad_old = checksummed(0x200, first + 1);
        bad_old[5000] ^= 1; // corrupt, LSN before the start: an error
        data.extend(bad_old);
        let mut torn = checksummed(0x900, first + 2);
        torn[5000] ^= 1; // corrupt, LSN after the start: replay rewrites it
        data.extend(torn);
        data.extend(vec![0u8; 8192]); // new
        data.extend(checksummed(0x100, first + 99)); // right page, wrong place
        let mut s = PageScan::new(None, Some(ChecksumScan { torn_from: Lsn(0x800), first_block: first }), 8192);
        s.feed(&data);
        assert_eq!(s.pages, 5);
        assert_eq!(s.checksummed, 3);
        assert_eq!(s.torn, 1);
        assert_eq!(s.bad, 2);
        assert_eq!(s.first_bad, Some((1, Lsn(0x200))));
    }

    #[test]
    fn a_deferred_scan_evaluates_as_a_direct_one() {
        let first = 131072;
        let mut data = Vec::new();
        data.extend(checksummed(0x100, first));
        let mut bad_old = checksummed(0x200, first + 1);
        bad_old[5000] ^= 1;
        data.extend(bad_old);
        let mut torn = checksummed(0x900, first + 2);
        torn[5000] ^= 1;
        data.extend(torn);
        data.extend(vec![0u8; 8192]);
        data.extend(checksummed(0x950, first + 4));
        let mut direct =
            PageScan::new(Some(Lsn(0x300)), Some(ChecksumScan { torn_from: Lsn(0x800), first_block: first }), 8192);
        direct.feed(&data);
        let mut d = DeferredScan::new(first, Lsn(0x800));
        d.feed(&data[..8192]);
        d.feed(&data[8192..]);
        let e = d.evaluate(Some(Lsn(0x300)), Some(Lsn(0x800)));
        assert_eq!(
            (e.pages, e.beyond, e.max_lsn, e.max_block),
            (direct.pages, direct.beyond, direct.max_lsn, direct.max_block)
        );
        assert_eq!(
            (e.checksummed, e.torn, e.bad, e.first_bad),
            (direct.checksummed, direct.torn, direct.bad, direct.first_bad)
        );
        assert!(!e.beyond_more);
        // Another bound, known only later.
        let e = d.evaluate(Some(Lsn(0x920)), None);
        assert_eq!((e.beyond, e.max_lsn, e.max_block), (1, Lsn(0x950), 4));
        // More pages above the bound than kept: counted as "at least".
        let mut many = DeferredScan::new(0, Lsn(0));
        for i in 0..100u64 {
            many.feed(&page(0x1000 + i, 8192));
        }
        let e = many.evaluate(Some(Lsn(0x10)), None);
        assert_eq!(e.beyond, KEEP as u64);
        assert!(e.beyond_more);
        assert_eq!((e.max_lsn, e.max_block), (Lsn(0x1000 + 99), 99));
    }
}
