//! The body of a WAL record: its block references and data lengths.
//!
//! Format (`src/include/access/xlogrecord.h`), after the 24-byte
//! `XLogRecord` header: a sequence of fragment headers, then the data they
//! announce. A fragment header starts with an id byte:
//!
//! | id | what follows |
//! |---|---|
//! | 0..=32 (`XLR_MAX_BLOCK_ID`) | a block reference: fork and flags u8, data length u16; with `BKPBLOCK_HAS_IMAGE` (0x10) an image header (length u16, hole offset u16, info u8, and with a compressed image that has a hole, hole length u16); without `BKPBLOCK_SAME_REL` (0x80) a `RelFileLocator` (12 bytes); then the block number u32 |
//! | 252 `XLR_BLOCK_ID_TOPLEVEL_XID` (14+) | a `TransactionId` (4 bytes) |
//! | 253 `XLR_BLOCK_ID_ORIGIN` | a `RepOriginId` (2 bytes) |
//! | 254 `XLR_BLOCK_ID_DATA_LONG` | the main data length u32; the headers end |
//! | 255 `XLR_BLOCK_ID_DATA_SHORT` | the main data length u8; the headers end |
//!
//! [`check_body`] applies the checks of `DecodeXLogRecord()` in
//! `src/backend/access/transam/xlogreader.c`: block ids strictly increasing,
//! `BKPBLOCK_HAS_DATA` set exactly when there is block data, the image flags
//! consistent with the image length and hole (`BKPIMAGE_HAS_HOLE` 0x01, the
//! compression bits of the major), `BKPBLOCK_SAME_REL` only after a block
//! that named its relation, and the announced lengths adding up to exactly
//! the bytes that follow the headers.

use std::fmt;

use serde::Serialize;

use super::version::WalRecordRules;

const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// `sizeof(RelFileLocator)`.
const REL_LOCATOR_LEN: usize = 12;

/// The most header bytes a record PostgreSQL writes can have: 33 block
/// references of 27 bytes, an origin, a top-level XID and the long main
/// data header. Callers keep this many bytes of a body to check it.
pub const MAX_HEADER_BYTES: usize = 33 * 27 + 3 + 5 + 5;

/// What is wrong with a record body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum BodyProblem {
    /// A fragment header or the data runs past the record's end, or the
    /// lengths do not add up ("record with invalid length").
    BadLength,
    InvalidBlockId {
        id: u8,
    },
    OutOfOrderBlockId {
        id: u8,
    },
    DataFlagWithoutData {
        id: u8,
    },
    DataWithoutFlag {
        id: u8,
        len: u16,
    },
    HoleFlagButNoHole {
        id: u8,
        offset: u16,
        length: u16,
        image_len: u16,
    },
    HoleWithoutFlag {
        id: u8,
        offset: u16,
        length: u16,
    },
    CompressedFullImage {
        id: u8,
        image_len: u16,
    },
    ImageLength {
        id: u8,
        image_len: u16,
    },
    SameRelWithoutRel {
        id: u8,
    },
    /// More fragment headers than any record PostgreSQL writes.
    HeadersTooLong,
}

impl fmt::Display for BodyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyProblem::BadLength => write!(f, "record with invalid length: its fragments do not add up"),
            BodyProblem::InvalidBlockId { id } => write!(f, "invalid block_id {id}"),
            BodyProblem::OutOfOrderBlockId { id } => write!(f, "out-of-order block_id {id}"),
            BodyProblem::DataFlagWithoutData { id } => {
                write!(f, "block {id}: BKPBLOCK_HAS_DATA set, but no data included")
            }
            BodyProblem::DataWithoutFlag { id, len } => {
                write!(f, "block {id}: BKPBLOCK_HAS_DATA not set, but data length is {len}")
            }
            BodyProblem::HoleFlagButNoHole { id, offset, length, image_len } => write!(
                f,
                "block {id}: BKPIMAGE_HAS_HOLE set, but hole offset {offset} length {length} block image length \
                 {image_len}"
            ),
            BodyProblem::HoleWithoutFlag { id, offset, length } => {
                write!(f, "block {id}: BKPIMAGE_HAS_HOLE not set, but hole offset {offset} length {length}")
            }
            BodyProblem::CompressedFullImage { id, image_len } => {
                write!(f, "block {id}: a compressed image, but block image length {image_len}")
            }
            BodyProblem::ImageLength { id, image_len } => write!(
                f,
                "block {id}: neither BKPIMAGE_HAS_HOLE nor a compression bit set, but block image length is \
                 {image_len}"
            ),
            BodyProblem::SameRelWithoutRel { id } => {
                write!(f, "block {id}: BKPBLOCK_SAME_REL set but no previous rel")
            }
            BodyProblem::HeadersTooLong => {
                write!(f, "more than {MAX_HEADER_BYTES} bytes of fragment headers, which PostgreSQL never writes")
            }
        }
    }
}

/// Reads fixed-size fields off the front of the kept header bytes, keeping
/// count of how much of the whole body is left.
struct Fields<'a> {
    bytes: &'a [u8],
    /// Bytes of the body not yet read as headers (`remaining` in C).
    remaining: u64,
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BodyProblem> {
        if self.remaining < N as u64 {
            return Err(BodyProblem::BadLength);
        }
        if self.bytes.len() < N {
            // The body is longer than what was kept: only a record with more
            // headers than PostgreSQL writes gets here.
            return Err(BodyProblem::HeadersTooLong);
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[..N]);
        self.bytes = &self.bytes[N..];
        self.remaining -= N as u64;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, BodyProblem> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, BodyProblem> {
        Ok(u16::from_le_bytes(self.take::<2>()?))
    }

    fn u32(&mut self) -> Result<u32, BodyProblem> {
        Ok(u32::from_le_bytes(self.take::<4>()?))
    }
}

/// Check a record body as `DecodeXLogRecord()` does. `head` holds the
/// body's first bytes (at least `min(body_len, MAX_HEADER_BYTES)` of them),
/// `body_len` is `xl_tot_len` less the record header, `block_size` the
/// cluster's `BLCKSZ`.
pub fn check_body(head: &[u8], body_len: u64, rules: &WalRecordRules, block_size: u32) -> Result<(), BodyProblem> {
    let mut f = Fields { bytes: head, remaining: body_len };
    let mut data_total: u64 = 0;
    let mut max_block: Option<u8> = None;
    let mut have_rel = false;
    while f.remaining > data_total {
        let id = f.u8()?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                data_total += u64::from(f.u8()?);
                break; // the main data comes last
            }
            XLR_BLOCK_ID_DATA_LONG => {
                data_total += u64::from(f.u32()?);
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                f.u16()?;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID if rules.toplevel_xid_block => {
                f.u32()?;
            }
            id if id <= XLR_MAX_BLOCK_ID => {
                if max_block.is_some_and(|m| id <= m) {
                    return Err(BodyProblem::OutOfOrderBlockId { id });
                }
                max_block = Some(id);
                data_total += check_block(&mut f, id, rules, block_size, &mut have_rel)?;
            }
            id => return Err(BodyProblem::InvalidBlockId { id }),
        }
    }
    if f.remaining != data_total {
        return Err(BodyProblem::BadLength);
    }
    Ok(())
}

/// One block reference's header; returns the data it announces.
fn check_block(
    f: &mut Fields,
    id: u8,
    rules: &WalRecordRules,
    block_size: u32,
    have_rel: &mut bool,
) -> Result<u64, BodyProblem> {
    let fork_flags = f.u8()?;
    let data_len = f.u16()?;
    let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
    if has_data && data_len == 0 {
        return Err(BodyProblem::DataFlagWithoutData { id });
    }
    if !has_data && data_len != 0 {
        return Err(BodyProblem::DataWithoutFlag { id, len: data_len });
    }
    let mut total = u64::from(data_len);
    if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
        total += u64::from(check_image(f, id, rules, block_size)?);
    }
    if fork_flags & BKPBLOCK_SAME_REL == 0 {
        f.take::<REL_LOCATOR_LEN>()?;
        *have_rel = true;
    } else if !*have_rel {
        return Err(BodyProblem::SameRelWithoutRel { id });
    }
    f.u32()?; // the block number
    Ok(total)
}

/// A block image's header; returns the image's length in the record.
fn check_image(f: &mut Fields, id: u8, rules: &WalRecordRules, block_size: u32) -> Result<u16, BodyProblem> {
    let image_len = f.u16()?;
    let offset = f.u16()?;
    let info = f.u8()?;
    let compressed = info & rules.image_compressed_bits != 0;
    let has_hole = info & BKPIMAGE_HAS_HOLE != 0;
    let length: u32 = if compressed {
        if has_hole {
            u32::from(f.u16()?)
        } else {
            0
        }
    } else {
        block_size.wrapping_sub(u32::from(image_len))
    };
    let full = u32::from(image_len) == block_size;
    // The C code keeps the hole length in a u16.
    let length16 = length as u16;
    if has_hole && (offset == 0 || length16 == 0 || full) {
        return Err(BodyProblem::HoleFlagButNoHole { id, offset, length: length16, image_len });
    }
    if !has_hole && (offset != 0 || length16 != 0) {
        return Err(BodyProblem::HoleWithoutFlag { id, offset, length: length16 });
    }
    if compressed && full {
        return Err(BodyProblem::CompressedFullImage { id, image_len });
    }
    if !has_hole && !compressed && !full {
        return Err(BodyProblem::ImageLength { id, image_len });
    }
    Ok(image_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::version;

    fn rules(major: u32) -> &'static WalRecordRules {
        version::by_major(major).unwrap().wal_records
    }

    /// A block reference header: id, flags, data length, optional image
    /// header bytes, relation (unless SAME_REL), block number.
    fn block(id: u8, flags: u8, data_len: u16, image: &[u8]) -> Vec<u8> {
        let mut v = vec![id, flags];
        v.extend(data_len.to_le_bytes());
        v.extend(image);
        if flags & BKPBLOCK_SAME_REL == 0 {
            v.extend([0x7F; REL_LOCATOR_LEN]);
        }
        v.extend(7u32.to_le_bytes());
        v
    }

    fn image(len: u16, offset: u16, info: u8, hole: Option<u16>) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(len.to_le_bytes());
        v.extend(offset.to_le_bytes());
        v.push(info);
        if let Some(h) = hole {
            v.extend(h.to_le_bytes());
        }
        v
    }

    /// A body: headers, then `data` bytes of fill.
    fn body(headers: &[Vec<u8>], data: u64) -> Vec<u8> {
        let mut v: Vec<u8> = headers.concat();
        v.resize(v.len() + data as usize, 0xAB);
        v
    }

    fn check(b: &[u8], major: u32) -> Result<(), BodyProblem> {
        check_body(&b[..b.len().min(MAX_HEADER_BYTES)], b.len() as u64, rules(major), 8192)
    }

    #[test]
    fn well_formed_bodies_pass() {
        for major in [10, 14, 15, 18] {
            assert_eq!(check(&[], major), Ok(()));
            assert_eq!(check(&body(&[vec![255, 3]], 3), major), Ok(()));
            assert_eq!(check(&body(&[vec![254, 0, 1, 0, 0]], 256), major), Ok(()));
            // Two blocks, the second on the same relation, with data and a
            // full image, an origin, then main data.
            let b = body(
                &[
                    block(0, BKPBLOCK_HAS_DATA, 10, &[]),
                    block(3, BKPBLOCK_SAME_REL | BKPBLOCK_HAS_IMAGE, 0, &image(8192, 0, 0, None)),
                    vec![253, 1, 0],
                    vec![255, 5],
                ],
                10 + 8192 + 5,
            );
            assert_eq!(check(&b, major), Ok(()), "{major}");
            // An image with a hole.
            let b = body(&[block(1, BKPBLOCK_HAS_IMAGE, 0, &image(8000, 100, BKPIMAGE_HAS_HOLE, None))], 8000);
            assert_eq!(check(&b, major), Ok(()));
        }
        // The top-level XID block exists from 14.
        let b = body(&[vec![252, 1, 2, 3, 4], vec![255, 1]], 1);
        assert_eq!(check(&b, 14), Ok(()));
        assert_eq!(check(&b, 13), Err(BodyProblem::InvalidBlockId { id: 252 }));
        // A compressed image: bit 0x02 before 15, 0x04/0x08/0x10 from 15.
        let old = body(&[block(0, BKPBLOCK_HAS_IMAGE, 0, &image(500, 0, 0x02, None))], 500);
        assert_eq!(check(&old, 14), Ok(()));
        assert_eq!(check(&old, 15), Err(BodyProblem::HoleWithoutFlag { id: 0, offset: 0, length: 7692 }));
        let new = body(&[block(0, BKPBLOCK_HAS_IMAGE, 0, &image(500, 40, 0x08 | BKPIMAGE_HAS_HOLE, Some(300)))], 500);
        assert_eq!(check(&new, 15), Ok(()));
    }

    #[test]
    fn each_decode_rule_is_enforced() {
        let data = |id| block(id, BKPBLOCK_HAS_DATA, 4, &[]);
        let cases: Vec<(Vec<u8>, BodyProblem)> = vec![
            (body(&[vec![33]], 0), BodyProblem::InvalidBlockId { id: 33 }),
            (body(&[vec![100, 0, 0]], 0), BodyProblem::InvalidBlockId { id: 100 }),
            (body(&[data(2), data(2)], 8), BodyProblem::OutOfOrderBlockId { id: 2 }),
            (body(&[data(5), data(1)], 8), BodyProblem::OutOfOrderBlockId { id: 1 }),
            (body(&[block(0, BKPBLOCK_HAS_DATA, 0, &[])], 0), BodyProblem::DataFlagWithoutData { id: 0 }),
            (body(&[block(0, 0, 9, &[])], 9), BodyProblem::DataWithoutFlag { id: 0, len: 9 }),
            (
                body(&[block(0, BKPBLOCK_HAS_IMAGE, 0, &image(8192, 0, BKPIMAGE_HAS_HOLE, None))], 8192),
                BodyProblem::HoleFlagButNoHole { id: 0, offset: 0, length: 0, image_len: 8192 },
            ),
            (
                body(&[block(0, BKPBLOCK_HAS_IMAGE, 0, &image(8000, 0, 0, None))], 8000),
                BodyProblem::HoleWithoutFlag { id: 0, offset: 0, length: 192 },
            ),
            (
                body(&[block(0, BKPBLOCK_HAS_IMAGE, 0, &image(8192, 0, 0x04, None))], 8192),
                BodyProblem::CompressedFullImage { id: 0, image_len: 8192 },
            ),
            (
                body(&[block(0, BKPBLOCK_HAS_IMAGE | BKPBLOCK_SAME_REL, 0, &image(8192, 0, 0, None))], 8192),
                BodyProblem::SameRelWithoutRel { id: 0 },
            ),
            // Lengths that do not add up, either way.
            (body(&[vec![255, 10]], 9), BodyProblem::BadLength),
            (body(&[vec![255, 10]], 11), BodyProblem::BadLength),
            (body(&[data(0)], 3), BodyProblem::BadLength),
            (vec![254, 1, 0], BodyProblem::BadLength),
            (vec![0, BKPBLOCK_HAS_DATA], BodyProblem::BadLength),
        ];
        for (b, want) in cases {
            assert_eq!(check(&b, 15), Err(want.clone()), "{b:?}");
        }
        // Repeated origins beyond what PostgreSQL writes.
        let mut b: Vec<u8> = std::iter::repeat_n([253u8, 0, 0], 400).flatten().collect();
        b.extend([255, 0]);
        assert_eq!(check(&b, 15), Err(BodyProblem::HeadersTooLong));
    }
}
