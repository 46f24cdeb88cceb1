//! Data pages: the header fields verify reads, and the data checksum.
//!
//! Every block of a relation file starts with `PageHeaderData`
//! (`src/include/storage/bufpage.h`), in native byte order (little-endian
//! here): `pd_lsn` (a `PageXLogRecPtr`: `xlogid` u32 then `xrecoff` u32) at
//! 0, `pd_checksum` u16 at 8, `pd_flags` at 10, `pd_lower` at 12,
//! `pd_upper` at 14, `pd_special` at 16, `pd_pagesize_version` at 18 and
//! `pd_prune_xid` at 20. `pd_lsn` is the end of the last WAL record that
//! changed the page. A page whose `pd_upper` is 0 is "new" (`PageIsNew`):
//! extended but never initialised, with no checksum.
//!
//! The checksum (`src/include/storage/checksum_impl.h`, stored only when
//! pg_control's `data_checksum_version` is not 0): the page is read as rows
//! of 32 little-endian u32 words, each word mixed into its lane with an
//! FNV-1a-like step, `pd_checksum` counted as 0; two rounds of zeros follow,
//! the 32 lanes are XORed, the block number (counted from the start of the
//! fork, across segment files) is XORed in, and the result is reduced to
//! `x % 65535 + 1`, so a stored checksum is never 0.

use super::lsn::Lsn;

/// Bytes of the header fields read here.
pub const HEADER_LEN: usize = 24;

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C, 0xF8D4474F,
    0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB, 0xE58F764B, 0x187636BC,
    0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4, 0x783125BB, 0x6CA8EAA2, 0xE407EAC6,
    0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// The `pd_lsn` of a page; 0 for fewer than 8 bytes.
pub fn page_lsn(page: &[u8]) -> Lsn {
    if page.len() < 8 {
        return Lsn(0);
    }
    Lsn((u64::from(le32(page, 0)) << 32) | u64::from(le32(page, 4)))
}

/// The stored `pd_checksum`; 0 for fewer than 10 bytes.
pub fn stored_checksum(page: &[u8]) -> u16 {
    if page.len() < 10 {
        return 0;
    }
    le16(page, 8)
}

/// `PageIsNew`: `pd_upper` is 0 (such a page carries no checksum).
pub fn is_new(page: &[u8]) -> bool {
    page.len() < 16 || le16(page, 14) == 0
}

fn mix(sum: u32, value: u32) -> u32 {
    let t = sum ^ value;
    t.wrapping_mul(FNV_PRIME) ^ (t >> 17)
}

/// `pg_checksum_block`: the 32 lanes over whole rows of the page, with
/// `pd_checksum` counted as zero. Bytes past the last whole row of 128 are
/// not covered (block sizes are powers of two from 1 KiB, so there are none).
fn checksum_block(page: &[u8]) -> u32 {
    let mut sums = BASE_OFFSETS;
    for (row_no, row) in page.chunks_exact(4 * N_SUMS).enumerate() {
        let mut words = [0u32; N_SUMS];
        for (w, b) in words.iter_mut().zip(row.chunks_exact(4)) {
            *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if row_no == 0 {
            // pd_checksum is the low half of word 2.
            words[2] &= 0xFFFF_0000;
        }
        for (s, w) in sums.iter_mut().zip(words) {
            *s = mix(*s, w);
        }
    }
    for _ in 0..2 {
        for s in sums.iter_mut() {
            *s = mix(*s, 0);
        }
    }
    sums.iter().fold(0, |acc, s| acc ^ s)
}

/// `pg_checksum_page`: the checksum a page at block `blkno` of its fork must
/// carry.
pub fn checksum(page: &[u8], blkno: u64) -> u16 {
    // BlockNumber is a u32; the C code XORs in its 32 bits.
    let c = checksum_block(page) ^ (blkno as u32);
    (c % 65535 + 1) as u16
}

/// Whether a page fails its data checksum, as pg_basebackup and
/// pg_checksums judge it: a new page has no checksum to fail.
pub fn checksum_fails(page: &[u8], blkno: u64) -> bool {
    !is_new(page) && checksum(page, blkno) != stored_checksum(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real pages from a PostgreSQL 18 cluster initialised with data
    /// checksums (see testdata/README.md): `(file, block in file, first block
    /// of the file in its fork)`.
    fn real_pages() -> Vec<(Vec<u8>, u64)> {
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pages/pg18/pg_class.2blocks")).unwrap();
        bytes.chunks_exact(8192).enumerate().map(|(i, p)| (p.to_vec(), i as u64)).collect()
    }

    #[test]
    fn real_checksummed_pages_verify() {
        let pages = real_pages();
        assert!(!pages.is_empty());
        for (p, blkno) in &pages {
            assert!(!is_new(p));
            assert_ne!(stored_checksum(p), 0);
            assert_eq!(checksum(p, *blkno), stored_checksum(p), "block {blkno}");
            assert!(!checksum_fails(p, *blkno));
            // The block number is part of the checksum.
            assert!(checksum_fails(p, blkno + 1));
        }
        // Any flipped bit outside pd_checksum is caught.
        let (p, blkno) = &pages[0];
        for at in [0usize, 7, 12, 100, 4000, 8191] {
            let mut bad = p.clone();
            bad[at] ^= 0x04;
            assert!(checksum_fails(&bad, *blkno), "byte {at}");
        }
    }

    #[test]
    fn header_fields() {
        let mut p = vec![0u8; 8192];
        assert!(is_new(&p));
        assert!(!checksum_fails(&p, 0));
        p[0..4].copy_from_slice(&1u32.to_le_bytes());
        p[4..8].copy_from_slice(&0x28u32.to_le_bytes());
        p[8..10].copy_from_slice(&0xBEEFu16.to_le_bytes());
        p[14..16].copy_from_slice(&8000u16.to_le_bytes());
        assert_eq!(page_lsn(&p), Lsn(0x1_0000_0028));
        assert_eq!(stored_checksum(&p), 0xBEEF);
        assert!(!is_new(&p));
        // The stored checksum does not take part in the computation.
        let c = checksum(&p, 5);
        p[8..10].copy_from_slice(&c.to_le_bytes());
        assert_eq!(checksum(&p, 5), c);
        assert!(!checksum_fails(&p, 5));
        assert_ne!(c, 0);
        assert_eq!(page_lsn(&[1u8; 4]), Lsn(0));
        assert_eq!(stored_checksum(&[1u8; 4]), 0);
    }
}
