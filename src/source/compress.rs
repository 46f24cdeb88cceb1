//! Compressed streams: gzip, LZ4 and Zstandard, recognised by their magic
//! numbers and read or written through the crates made for them (flate2,
//! lz4_flex, zstd). Nothing is decompressed by hand.
//!
//! The formats are the ones PostgreSQL's tools write:
//! `src/common/compression.c` names them; `pg_receivewal` (`walmethods.c`)
//! writes `.gz` (one gzip member), `.lz4` (an LZ4 *frame*) and, from 16,
//! `.zst`; `pg_basebackup` (`bbstreamer_gzip.c`, `bbstreamer_lz4.c`,
//! `bbstreamer_zstd.c`) writes `base.tar.gz`, `.lz4` and `.zst`, on the
//! client or the server. Archive scripts (`gzip`, `lz4`, `zstd`) write the
//! same frame formats. A file is recognised by its first bytes, not by its
//! name, so a compressed file stored under a plain name (Barman's layout)
//! is read too, and a `.gz` that is not gzip is an error, not garbage.

use std::io::{self, Chain, Cursor, Read, Write};

use serde::Serialize;

/// How a stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Lz4,
    Zstd,
}

/// gzip (RFC 1952): ID1 ID2.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// An LZ4 frame (lz4_Frame_format.md): 0x184D2204, little-endian.
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// A Zstandard frame (RFC 8878): 0xFD2FB528, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The kinds a name may carry, in the order names are tried.
    pub const ALL: [Compression; 4] = [Compression::None, Compression::Gzip, Compression::Lz4, Compression::Zstd];

    /// The file name suffix, with its dot (`""` for none).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Lz4 => ".lz4",
            Compression::Zstd => ".zst",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The compression a name's suffix says, and the name without it.
    pub fn split_suffix(name: &str) -> (&str, Compression) {
        for c in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            if let Some(base) = name.strip_suffix(c.suffix()) {
                return (base, c);
            }
        }
        (name, Compression::None)
    }

    /// Recognise a stream by its first bytes (at least 4 are needed to tell
    /// LZ4 and Zstandard; fewer can only be gzip or nothing).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&LZ4_MAGIC) {
            Compression::Lz4
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The largest Zstandard window accepted: 2^25 bytes.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// A reader whose first bytes were read to recognise it, put back in front.
pub type Peeked<R> = Chain<Cursor<Vec<u8>>, R>;

/// Read up to 4 bytes of `r` to recognise its compression; the bytes are
/// kept in front of the returned reader.
pub fn peek<R: Read>(mut r: R) -> io::Result<(Compression, Peeked<R>)> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let c = Compression::detect(&head[..n]);
    Ok((c, Cursor::new(head[..n].to_vec()).chain(r)))
}

/// The decompressed bytes of `r`, whatever its compression (recognised by
/// its first bytes). Errors in the compressed data surface as
/// `io::ErrorKind::InvalidData` from `read`.
pub fn decoder<R: Read + Send + 'static>(r: R) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let (c, r) = peek(r)?;
    Ok((c, wrap(c, r)))
}

/// Decompress `r` as `c`.
pub fn wrap<R: Read + Send + 'static>(c: Compression, r: R) -> Box<dyn Read + Send> {
    match c {
        Compression::None => Box::new(r),
        // Several members are one stream (gzip -c a b >x, concatenated
        // archives), as gunzip reads them.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 16, r))),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(io::BufReader::with_capacity(1 << 16, r))),
        Compression::Zstd => match zstd::stream::read::Decoder::new(r).and_then(|mut d| {
            // A frame's window is allocated as it claims: at most 32 MiB
            // (zstd's own levels use up to 8 MiB; `--long` frames are
            // refused).
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Ok(d)
        }) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailingReader(Some(e))),
        },
    }
}

/// A reader that fails once with the error it was made with.
struct FailingReader(Option<io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(|| io::Error::other("the decoder could not be created")))
    }
}

/// What to compress with, and how hard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CompressSpec {
    pub kind: Compression,
    /// The level; `None` for the library's default.
    pub level: Option<i32>,
    /// Worker threads (zstd only; 0 or 1 compresses on the writing thread).
    pub workers: u32,
}

impl CompressSpec {
    pub const NONE: CompressSpec = CompressSpec { kind: Compression::None, level: None, workers: 0 };

    /// Parse `gzip`, `lz4`, `zstd`, `none`, with an optional `:LEVEL`
    /// (gzip 1–9, lz4 accepts none (the frame encoder has one speed), zstd
    /// 1–19). `Err` says what is wrong.
    pub fn parse(s: &str) -> Result<CompressSpec, String> {
        let (kind, level) = match s.split_once(':') {
            Some((k, l)) => (k, Some(l)),
            None => (s, None),
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "none" => Compression::None,
            "gzip" | "gz" => Compression::Gzip,
            "lz4" => Compression::Lz4,
            "zstd" | "zst" => Compression::Zstd,
            other => return Err(format!("unknown compression {other:?}: use gzip, lz4, zstd or none")),
        };
        let level = level
            .map(|l| l.parse::<i32>().map_err(|_| format!("compression level {l:?} is not a number")))
            .transpose()?;
        let range = match kind {
            Compression::None | Compression::Lz4 => None,
            Compression::Gzip => Some(1..=9),
            Compression::Zstd => Some(1..=19),
        };
        if let Some(l) = level {
            match &range {
                Some(r) if r.contains(&l) => {}
                Some(r) => return Err(format!("{} levels are {} to {}, not {l}", kind.name(), r.start(), r.end())),
                None => return Err(format!("{} takes no level", kind.name())),
            }
        }
        Ok(CompressSpec { kind, level, workers: 0 })
    }
}

/// A compressing writer that must be finished explicitly: the end of a
/// gzip member, LZ4 frame or zstd frame is written by [`Encoder::finish`],
/// never by a drop, so a stream cut short by an error is recognisably
/// incomplete.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Lz4(Box<lz4_flex::frame::FrameEncoder<W>>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(spec: CompressSpec, w: W) -> io::Result<Encoder<W>> {
        Ok(match spec.kind {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                spec.level.map_or_else(flate2::Compression::default, |l| flate2::Compression::new(l as u32)),
            )),
            Compression::Lz4 => Encoder::Lz4(Box::new(lz4_flex::frame::FrameEncoder::new(w))),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, spec.level.unwrap_or(3))?;
                // A damaged frame is found by its checksum, not by luck.
                e.include_checksum(true)?;
                if spec.workers > 1 {
                    e.multithread(spec.workers)?;
                }
                Encoder::Zstd(e)
            }
        })
    }

    /// Write the stream's end and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Lz4(e) => e.finish().map_err(io::Error::other),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Lz4(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Lz4(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(spec: CompressSpec, data: &[u8]) -> (Compression, Vec<u8>) {
        let mut e = Encoder::new(spec, Vec::new()).unwrap();
        e.write_all(data).unwrap();
        let packed = e.finish().unwrap();
        let (c, mut r) = decoder(Cursor::new(packed)).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (c, out)
    }

    #[test]
    fn every_kind_round_trips_and_is_recognised() {
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for kind in Compression::ALL {
            for workers in [0, 2] {
                let (c, out) = round_trip(CompressSpec { kind, level: None, workers }, &data);
                assert_eq!(c, kind);
                assert_eq!(out, data, "{kind:?}");
            }
        }
        // Short and empty streams are plain.
        assert_eq!(round_trip(CompressSpec::NONE, b"ab").1, b"ab");
        assert_eq!(round_trip(CompressSpec::NONE, b"").1, b"");
    }

    #[test]
    fn names_and_specs() {
        assert_eq!(
            Compression::split_suffix("000000010000000000000001.gz"),
            ("000000010000000000000001", Compression::Gzip)
        );
        assert_eq!(Compression::split_suffix("x.zst"), ("x", Compression::Zstd));
        assert_eq!(Compression::split_suffix("x.partial"), ("x.partial", Compression::None));
        assert_eq!(
            CompressSpec::parse("zstd:9").unwrap(),
            CompressSpec { kind: Compression::Zstd, level: Some(9), workers: 0 }
        );
        assert_eq!(CompressSpec::parse("gzip").unwrap().kind, Compression::Gzip);
        for bad in ["gzip:0", "gzip:x", "lz4:3", "zstd:25", "bzip2", "none:1"] {
            assert!(CompressSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn damaged_streams_are_errors_not_panics() {
        let data = vec![7u8; 100_000];
        for kind in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let mut e = Encoder::new(CompressSpec { kind, level: None, workers: 0 }, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            let packed = e.finish().unwrap();
            for cut in [5, packed.len() / 2, packed.len() - 1] {
                let (_, mut r) = decoder(Cursor::new(packed[..cut].to_vec())).unwrap();
                let mut out = Vec::new();
                let res = r.read_to_end(&mut out);
                // Never more or other than the data; short or an error,
                // except that an LZ4 frame cut in its end mark still holds
                // all of it.
                assert!(data.starts_with(&out), "{kind:?} cut at {cut}");
                let whole_lz4 = kind == Compression::Lz4 && cut == packed.len() - 1;
                assert!(res.is_err() || out.len() < data.len() || whole_lz4, "{kind:?} cut at {cut}");
            }
            let mut flipped = packed.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0xff;
            let (_, mut r) = decoder(Cursor::new(flipped)).unwrap();
            let mut out = Vec::new();
            let res = r.read_to_end(&mut out);
            assert!(res.is_err() || out != data, "{kind:?} flipped");
        }
    }
}
