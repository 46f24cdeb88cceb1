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
}
