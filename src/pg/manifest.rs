//! `backup_manifest`, in PostgreSQL's own format.
//!
//! Where: the top of a backup directory (pg_basebackup 13+, and ours for every
//! major). Written by `src/backend/backup/backup_manifest.c`, read by
//! `src/common/parse_manifest.c` (pg_verifybackup). JSON, laid out one file
//! per line:
//!
//! ```text
//! { "PostgreSQL-Backup-Manifest-Version": 1,
//! "Files": [
//! { "Path": "backup_label", "Size": 226, "Last-Modified": "2026-11-21 07:28:38 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "8a744722" },
//! ...
//! ],
//! "WAL-Ranges": [
//! { "Timeline": 1, "Start-LSN": "0/62708F0", "End-LSN": "0/76D6CA8" }
//! ],
//! "Manifest-Checksum": "<sha256 hex>"}
//! ```
//!
//! Version 2 (17+) adds `"System-Identifier": <u64>,` as the second line.
//! Paths that are not UTF-8 are written hex-encoded as `Encoded-Path`.
//! A CRC32C checksum is the hex of the CRC's four bytes in memory order
//! (little-endian). The manifest checksum is the SHA-256 of every byte before
//! the last line.
//!
//! Parsing is as strict as `parse_manifest.c`: the version comes first, the
//! only top-level fields are `System-Identifier`, `Files`, `WAL-Ranges` and
//! `Manifest-Checksum` (last), a file entry has only the six fields above
//! (and a path and size), a `Checksum` needs a `Checksum-Algorithm`, and a WAL
//! range has exactly `Timeline`, `Start-LSN` and `End-LSN`. pgdrill is
//! stricter where PostgreSQL never writes what it would accept: a version 2
//! manifest must have a `System-Identifier` and a version 1 must not, an
//! algorithm other than `NONE` needs a checksum of its length, and `NONE`
//! none; a field may not appear twice.
//!
//! The parser streams ([`parse_reader`]): it reads the bytes once, hashes
//! them as they pass, and hands each file entry to a [`ManifestSink`], so a
//! caller can keep the entries in whatever form it needs. [`Manifest`] keeps
//! them all as [`ManifestFile`]s; [`ManifestIndex`] keeps only what
//! verification needs, packed, in less memory than the manifest's own size.

use std::fmt::{self, Write as _};
use std::io::{BufReader, Read};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::lsn::{Lsn, TimelineId};

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot parse the manifest: {0}")]
    Json(String),
    #[error("the manifest could not be read: {0}")]
    Read(String),
    #[error("interrupted while reading the manifest")]
    Interrupted,
    #[error("unsupported manifest version {0} (expected 1 or 2)")]
    Version(u64),
    #[error("manifest has no \"Manifest-Checksum\"")]
    NoChecksum,
    #[error("manifest must end with a newline and have at least two lines")]
    Layout,
    #[error("manifest checksum mismatch: stored {stored}, computed {computed}")]
    ChecksumMismatch { stored: String, computed: String },
    #[error("manifest file entry has both or neither of \"Path\" and \"Encoded-Path\"")]
    PathField,
    #[error("manifest has an invalid Encoded-Path {0:?}")]
    EncodedPath(String),
    #[error("manifest lists {0:?} twice")]
    Duplicate(String),
    #[error("unknown checksum algorithm {0:?}")]
    Algorithm(String),
    #[error("invalid checksum {checksum:?} for algorithm {algorithm}")]
    ChecksumValue { algorithm: String, checksum: String },
}

/// Checksum algorithms a manifest can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChecksumAlgorithm {
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl ChecksumAlgorithm {
    pub fn parse(name: &str) -> Result<Self, ManifestError> {
        match name.to_ascii_uppercase().as_str() {
            "CRC32C" => Ok(Self::Crc32c),
            "SHA224" => Ok(Self::Sha224),
            "SHA256" => Ok(Self::Sha256),
            "SHA384" => Ok(Self::Sha384),
            "SHA512" => Ok(Self::Sha512),
            _ => Err(ManifestError::Algorithm(name.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32c => "CRC32C",
            Self::Sha224 => "SHA224",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Crc32c => 4,
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// An incremental checksum of one file's bytes.
#[derive(Clone)]
pub enum Checksummer {
    Crc32c(u32),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Checksummer {
    pub fn new(alg: ChecksumAlgorithm) -> Self {
        match alg {
            ChecksumAlgorithm::Crc32c => Self::Crc32c(0),
            ChecksumAlgorithm::Sha224 => Self::Sha224(Sha224::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(Sha256::new()),
            ChecksumAlgorithm::Sha384 => Self::Sha384(Sha384::new()),
            ChecksumAlgorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Self::Sha224(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// The digest bytes, in the order the manifest hex-encodes them.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Crc32c(c) => c.to_le_bytes().to_vec(),
            Self::Sha224(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha384(h) => h.finalize().to_vec(),
            Self::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// The manifest form of a CRC-32C value.
pub fn crc32c_hex(crc: u32) -> String {
    hex(&crc.to_le_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative path, as raw bytes (paths need not be UTF-8).
    pub path: Vec<u8>,
    pub size: u64,
    /// `YYYY-MM-DD HH:MM:SS GMT`.
    pub last_modified: String,
    /// Algorithm and digest bytes; `None` when the manifest has no checksum.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
}

impl ManifestFile {
    /// The path for display (lossy for non-UTF-8 names).
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// One WAL range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalRange {
    pub timeline: TimelineId,
    pub start: Lsn,
    pub end: Lsn,
}

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub system_identifier: Option<u64>,
    pub files: Vec<ManifestFile>,
    /// Newest timeline first, as written.
    pub wal_ranges: Vec<WalRange>,
    pub manifest_checksum: String,
}

/// The SHA-256 over everything before the last line, as hex, or an error if
/// the layout does not allow finding the last line.
pub fn compute_manifest_checksum(bytes: &[u8]) -> Result<String, ManifestError> {
    if bytes.last() != Some(&b'\n') {
        return Err(ManifestError::Layout);
    }
    let body = &bytes[..bytes.len() - 1];
    let cut = body.iter().rposition(|b| *b == b'\n').ok_or(ManifestError::Layout)?;
    Ok(hex(&Sha256::digest(&bytes[..=cut])))
}

impl Manifest {
    /// Parse manifest bytes. The manifest checksum is not compared here; see
    /// [`Manifest::check_checksum`].
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let mut files = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let head = parse_stream(bytes, &mut |f: FileEntry<'_>| {
            if !seen.insert(f.path.to_vec()) {
                return Err(ManifestError::Duplicate(String::from_utf8_lossy(f.path).into_owned()));
            }
            files.push(ManifestFile {
                path: f.path.to_vec(),
                size: f.size,
                last_modified: f.last_modified.unwrap_or_default().to_string(),
                checksum: f.checksum.map(|(a, d)| (a, d.to_vec())),
            });
            Ok(())
        })?;
        Ok(Manifest {
            version: head.version,
            system_identifier: head.system_identifier,
            files,
            wal_ranges: head.wal_ranges,
            manifest_checksum: head.manifest_checksum,
        })
    }

    /// Compare the stored manifest checksum with the bytes.
    pub fn check_checksum(&self, bytes: &[u8]) -> Result<(), ManifestError> {
        let computed = compute_manifest_checksum(bytes)?;
        if computed.eq_ignore_ascii_case(&self.manifest_checksum) {
            Ok(())
        } else {
            Err(ManifestError::ChecksumMismatch { stored: self.manifest_checksum.clone(), computed })
        }
    }

    /// Render in PostgreSQL's layout, computing the manifest checksum.
    pub fn render(version: u32, system_identifier: u64, files: &[ManifestFile], wal_ranges: &[WalRange]) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{{ \"PostgreSQL-Backup-Manifest-Version\": {version},");
        if version >= 2 {
            let _ = writeln!(s, "\"System-Identifier\": {system_identifier},");
        }
        s.push_str("\"Files\": [");
        for (i, f) in files.iter().enumerate() {
            s.push_str(if i == 0 { "\n" } else { ",\n" });
            match std::str::from_utf8(&f.path) {
                Ok(p) => {
                    s.push_str("{ \"Path\": ");
                    s.push_str(&serde_json::to_string(p).unwrap_or_default());
                    s.push_str(", ");
                }
                Err(_) => {
                    let _ = write!(s, "{{ \"Encoded-Path\": \"{}\", ", hex(&f.path));
                }
            }
            let _ = write!(s, "\"Size\": {}, \"Last-Modified\": \"{}\"", f.size, f.last_modified);
            if let Some((alg, digest)) = &f.checksum {
                let _ = write!(s, ", \"Checksum-Algorithm\": \"{}\", \"Checksum\": \"{}\"", alg.name(), hex(digest));
            }
            s.push_str(" }");
        }
        s.push_str("\n],\n\"WAL-Ranges\": [\n");
        for (i, r) in wal_ranges.iter().enumerate() {
            if i > 0 {
                s.push_str(",\n");
            }
            let _ = write!(
                s,
                "{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}",
                r.timeline, r.start, r.end
            );
        }
        s.push_str("\n],\n");
        let checksum = hex(&Sha256::digest(s.as_bytes()));
        let _ = writeln!(s, "\"Manifest-Checksum\": \"{checksum}\"}}");
        s
    }
}

// ---------------------------------------------------------------------------
// The streaming parser
// ---------------------------------------------------------------------------

/// One file entry as the parser hands it over (borrowed for the call).
#[derive(Clone, Copy, Debug)]
pub struct FileEntry<'a> {
    pub path: &'a [u8],
    pub size: u64,
    pub last_modified: Option<&'a str>,
    pub checksum: Option<(ChecksumAlgorithm, &'a [u8])>,
}

/// Receives each file entry of a manifest, in order.
pub trait ManifestSink {
    fn file(&mut self, entry: FileEntry<'_>) -> Result<(), ManifestError>;
}

impl<F: FnMut(FileEntry<'_>) -> Result<(), ManifestError>> ManifestSink for F {
    fn file(&mut self, entry: FileEntry<'_>) -> Result<(), ManifestError> {
        self(entry)
    }
}

/// Everything of a manifest but its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    pub version: u32,
    pub system_identifier: Option<u64>,
    /// Newest timeline first, as written.
    pub wal_ranges: Vec<WalRange>,
    pub manifest_checksum: String,
    /// The SHA-256 of everything before the last line, as hex.
    pub computed_checksum: String,
    /// Bytes read.
    pub size: u64,
}

impl ManifestHead {
    /// Whether the stored manifest checksum matches the bytes.
    pub fn checksum_ok(&self) -> bool {
        self.computed_checksum.eq_ignore_ascii_case(&self.manifest_checksum)
    }
}

/// Hashes what passes through it, remembering the hash state at the last two
/// newlines: the manifest checksum covers everything up to and including the
/// newline before the last line, which is known only at the end.
struct HashingReader<R> {
    inner: R,
    running: Sha256,
    at_last_newline: Option<Sha256>,
    at_second_last_newline: Option<Sha256>,
    newlines: u64,
    last_byte: Option<u8>,
    size: u64,
    interrupted: &'static (dyn Fn() -> bool + Sync),
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.interrupted)() {
            return Err(std::io::Error::other(INTERRUPTED));
        }
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        let mut rest = &buf[..n];
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.running.update(&rest[..=i]);
            self.at_second_last_newline = self.at_last_newline.replace(self.running.clone());
            self.newlines += 1;
            rest = &rest[i + 1..];
        }
        self.running.update(rest);
        if n > 0 {
            self.last_byte = Some(buf[n - 1]);
        }
        self.size += n as u64;
        Ok(n)
    }
}

const INTERRUPTED: &str = "pgdrill: interrupted";

fn never() -> bool {
    false
}

/// Parse a manifest from bytes (see [`parse_reader`]).
pub fn parse_stream(bytes: &[u8], sink: &mut dyn ManifestSink) -> Result<ManifestHead, ManifestError> {
    parse_reader(bytes, sink, &never)
}

/// Parse a manifest read from `reader`, handing each file to `sink`.
/// `interrupted` is polled between reads; when it says so, the parse stops
/// with [`ManifestError::Interrupted`].
pub fn parse_reader(
    reader: impl Read,
    sink: &mut dyn ManifestSink,
    interrupted: &'static (dyn Fn() -> bool + Sync),
) -> Result<ManifestHead, ManifestError> {
    let mut hashing = HashingReader {
        inner: reader,
        running: Sha256::new(),
        at_last_newline: None,
        at_second_last_newline: None,
        newlines: 0,
        last_byte: None,
        size: 0,
        interrupted,
    };
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, &mut hashing));
    let mut failure = None;
    let parsed = TopSeed { sink, failure: &mut failure }.deserialize(&mut de).and_then(|h| de.end().map(|()| h));
    let head = match (parsed, failure) {
        (_, Some(f)) => return Err(f),
        (Ok(h), None) => h,
        (Err(e), None) if e.is_io() && e.to_string().contains(INTERRUPTED) => return Err(ManifestError::Interrupted),
        (Err(e), None) if e.is_io() => return Err(ManifestError::Read(e.to_string())),
        (Err(e), None) => return Err(ManifestError::Json(e.to_string())),
    };
    if hashing.newlines < 2 || hashing.last_byte != Some(b'\n') {
        return Err(ManifestError::Layout);
    }
    let computed = hashing.at_second_last_newline.map(|h| hex(&h.finalize())).ok_or(ManifestError::Layout)?;
    Ok(ManifestHead {
        version: head.version,
        system_identifier: head.system_identifier,
        wal_ranges: head.wal_ranges,
        manifest_checksum: head.manifest_checksum,
        computed_checksum: computed,
        size: hashing.size,
    })
}

/// What the top-level visitor collects.
struct Head {
    version: u32,
    system_identifier: Option<u64>,
    wal_ranges: Vec<WalRange>,
    manifest_checksum: String,
}

/// The top-level object. Errors the sink raises are kept in `failure`, so
/// that they come back as they were, not as JSON errors.
struct TopSeed<'a, 'b> {
    sink: &'a mut dyn ManifestSink,
    failure: &'b mut Option<ManifestError>,
}

fn invalid<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(msg)
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = Head;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Head, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = Head;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a backup manifest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
        match map.next_key::<String>()?.as_deref() {
            Some("PostgreSQL-Backup-Manifest-Version") => {}
            _ => return Err(invalid("expected version indicator")),
        }
        let version = map.next_value::<u64>()?;
        if version != 1 && version != 2 {
            let e = ManifestError::Version(version);
            let msg = e.to_string();
            *self.failure = Some(e);
            return Err(invalid(msg));
        }
        let mut head = Head {
            version: version as u32,
            system_identifier: None,
            wal_ranges: Vec::new(),
            manifest_checksum: String::new(),
        };
        let (mut files, mut ranges, mut checksum) = (false, false, false);
        while let Some(key) = map.next_key::<String>()? {
            if checksum {
                return Err(invalid(format!("unexpected field {key:?} after \"Manifest-Checksum\"")));
            }
            match key.as_str() {
                "System-Identifier" if head.system_identifier.is_none() => {
                    if version == 1 {
                        return Err(invalid("a version 1 manifest has no \"System-Identifier\""));
                    }
                    head.system_identifier = Some(map.next_value::<u64>()?);
                }
                "Files" if !files => {
                    files = true;
                    map.next_value_seed(FilesSeed { sink: &mut *self.sink, failure: &mut *self.failure })?;
                }
                "WAL-Ranges" if !ranges => {
                    ranges = true;
                    head.wal_ranges = map.next_value_seed(RangesSeed)?;
                }
                "Manifest-Checksum" => {
                    checksum = true;
                    head.manifest_checksum = map.next_value::<String>()?;
                    let ok = head.manifest_checksum.len() == 64
                        && head.manifest_checksum.bytes().all(|b| b.is_ascii_hexdigit());
                    if !ok {
                        return Err(invalid(format!("invalid manifest checksum {:?}", head.manifest_checksum)));
                    }
                }
                "System-Identifier" | "Files" | "WAL-Ranges" => {
                    return Err(invalid(format!("duplicate top-level field {key:?}")))
                }
                _ => return Err(invalid(format!("unrecognized top-level field {key:?}"))),
            }
        }
        if !checksum {
            return Err(invalid(ManifestError::NoChecksum));
        }
        if version >= 2 && head.system_identifier.is_none() {
            return Err(invalid("a version 2 manifest must have a \"System-Identifier\""));
        }
        Ok(head)
    }
}

struct FilesSeed<'a, 'b> {
    sink: &'a mut dyn ManifestSink,
    failure: &'b mut Option<ManifestError>,
}

impl<'de> DeserializeSeed<'de> for FilesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilesSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of file objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(mut raw) = seq.next_element::<RawFile>()? {
            let mut path_buf = Vec::new();
            let entry = raw.entry(&mut path_buf).map_err(invalid::<A::Error>)?;
            if let Err(e) = self.sink.file(entry) {
                let msg = e.to_string();
                *self.failure = Some(e);
                return Err(invalid(msg));
            }
        }
        Ok(())
    }
}

/// One file object's fields, as read.
#[derive(Default)]
struct RawFile {
    path: Option<String>,
    encoded_path: Option<String>,
    size: Option<u64>,
    last_modified: Option<String>,
    algorithm: Option<String>,
    checksum: Option<String>,
    digest: Vec<u8>,
}

impl RawFile {
    /// Check the fields as `json_manifest_finalize_file()` does.
    fn entry<'a>(&'a mut self, path_buf: &'a mut Vec<u8>) -> Result<FileEntry<'a>, String> {
        let path: &[u8] = match (&self.path, &self.encoded_path) {
            (Some(p), None) => p.as_bytes(),
            (None, Some(e)) => {
                *path_buf = unhex(e).ok_or_else(|| format!("could not decode file name {e:?}"))?;
                path_buf
            }
            (None, None) => return Err("missing path name".into()),
            (Some(_), Some(_)) => return Err("both path name and encoded path name".into()),
        };
        let size = self.size.ok_or("missing size")?;
        let checksum = match (&self.algorithm, &self.checksum) {
            (None, None) => None,
            (None, Some(_)) => return Err("checksum without algorithm".into()),
            (Some(a), c) if a.eq_ignore_ascii_case("NONE") => match c {
                Some(c) if !c.is_empty() => return Err(format!("a checksum {c:?} with algorithm NONE")),
                _ => None,
            },
            (Some(a), c) => {
                let alg = ChecksumAlgorithm::parse(a).map_err(|e| e.to_string())?;
                let c = c.as_deref().unwrap_or("");
                self.digest = unhex(c)
                    .filter(|d| d.len() == alg.digest_len())
                    .ok_or_else(|| format!("invalid checksum {c:?} for algorithm {a}"))?;
                Some((alg, self.digest.as_slice()))
            }
        };
        Ok(FileEntry { path, size, last_modified: self.last_modified.as_deref(), checksum })
    }
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), E> {
    if slot.replace(v).is_some() {
        return Err(invalid(format!("duplicate field {name:?}")));
    }
    Ok(())
}

impl<'de> de::Deserialize<'de> for RawFile {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<RawFile, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a file object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFile, A::Error> {
                let mut f = RawFile::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "Path" => set_once(&mut f.path, map.next_value()?, &key)?,
                        "Encoded-Path" => set_once(&mut f.encoded_path, map.next_value()?, &key)?,
                        "Size" => set_once(&mut f.size, map.next_value()?, &key)?,
                        "Last-Modified" => set_once(&mut f.last_modified, map.next_value()?, &key)?,
                        "Checksum-Algorithm" => set_once(&mut f.algorithm, map.next_value()?, &key)?,
                        "Checksum" => set_once(&mut f.checksum, map.next_value()?, &key)?,
                        _ => return Err(invalid(format!("unexpected file field {key:?}"))),
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_map(V)
    }
}

struct RangesSeed;

impl<'de> DeserializeSeed<'de> for RangesSeed {
    type Value = Vec<WalRange>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<WalRange>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RangesSeed {
    type Value = Vec<WalRange>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of WAL range objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<WalRange>, A::Error> {
        let mut out = Vec::new();
        while let Some(r) = seq.next_element::<RawRange>()? {
            out.push(r.0);
        }
        Ok(out)
    }
}

struct RawRange(WalRange);

impl<'de> de::Deserialize<'de> for RawRange {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<RawRange, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a WAL range object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRange, A::Error> {
                let (mut tli, mut start, mut end) = (None::<u32>, None::<Lsn>, None::<Lsn>);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "Timeline" => set_once(&mut tli, map.next_value()?, &key)?,
                        "Start-LSN" => set_once(&mut start, map.next_value()?, &key)?,
                        "End-LSN" => set_once(&mut end, map.next_value()?, &key)?,
                        _ => return Err(invalid(format!("unexpected WAL range field {key:?}"))),
                    }
                }
                let tli = tli.ok_or_else(|| invalid::<A::Error>("missing timeline"))?;
                let start = start.ok_or_else(|| invalid::<A::Error>("missing start LSN"))?;
                let end = end.ok_or_else(|| invalid::<A::Error>("missing end LSN"))?;
                Ok(RawRange(WalRange { timeline: TimelineId(tli), start, end }))
            }
        }
        d.deserialize_map(V)
    }
}

// ---------------------------------------------------------------------------
// The packed index
// ---------------------------------------------------------------------------

/// One file of a [`ManifestIndex`], packed: offsets into its arenas.
#[derive(Clone, Copy, Debug)]
struct Packed {
    path_at: u64,
    digest_at: u64,
    size: u64,
    path_len: u32,
    /// 0: no checksum; else 1 + the algorithm's position in [`ALGORITHMS`].
    algorithm: u8,
}

const ALGORITHMS: [ChecksumAlgorithm; 5] = [
    ChecksumAlgorithm::Crc32c,
    ChecksumAlgorithm::Sha224,
    ChecksumAlgorithm::Sha256,
    ChecksumAlgorithm::Sha384,
    ChecksumAlgorithm::Sha512,
];

/// A file of a [`ManifestIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedFile<'a> {
    pub path: &'a [u8],
    pub size: u64,
    pub checksum: Option<(ChecksumAlgorithm, &'a [u8])>,
}

impl IndexedFile<'_> {
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(self.path).into_owned()
    }
}

/// What verification needs of a manifest, packed: the paths and digests in
/// two byte arenas and 32 bytes per file, sorted by path for lookups. A
/// manifest line is about 140 bytes; its entry here is about 32 plus the
/// path and the digest.
#[derive(Debug, Default)]
pub struct ManifestIndex {
    paths: Vec<u8>,
    digests: Vec<u8>,
    files: Vec<Packed>,
    /// Files with a checksum, per algorithm (in [`ALGORITHMS`] order), and
    /// without one.
    by_algorithm: [u64; 5],
    without_checksum: u64,
}

impl ManifestSink for ManifestIndex {
    fn file(&mut self, e: FileEntry<'_>) -> Result<(), ManifestError> {
        let path_len = u32::try_from(e.path.len()).map_err(|_| ManifestError::PathField)?;
        let (algorithm, digest_at) = match e.checksum {
            Some((alg, digest)) => {
                let pos = ALGORITHMS.iter().position(|a| *a == alg).unwrap_or(0);
                self.by_algorithm[pos] += 1;
                let at = self.digests.len() as u64;
                self.digests.extend_from_slice(digest);
                (pos as u8 + 1, at)
            }
            None => {
                self.without_checksum += 1;
                (0, 0)
            }
        };
        let path_at = self.paths.len() as u64;
        self.paths.extend_from_slice(e.path);
        self.files.push(Packed { path_at, digest_at, size: e.size, path_len, algorithm });
        Ok(())
    }
}

impl ManifestIndex {
    /// Parse a manifest from `reader` into an index. Duplicate paths are an
    /// error, as in pg_verifybackup.
    pub fn read(
        reader: impl Read,
        size_hint: u64,
        interrupted: &'static (dyn Fn() -> bool + Sync),
    ) -> Result<(ManifestHead, ManifestIndex), ManifestError> {
        let mut index = ManifestIndex::default();
        // About 100 bytes a line, as pg_verifybackup estimates: reserving
        // avoids copies while the vectors grow; unused capacity is never
        // touched, so it costs no memory.
        let lines = usize::try_from(size_hint / 100).unwrap_or(0).min(1 << 24);
        index.files.reserve(lines);
        let head = parse_reader(reader, &mut index, interrupted)?;
        index.files.shrink_to_fit();
        index.paths.shrink_to_fit();
        index.digests.shrink_to_fit();
        let paths = &index.paths;
        let key = |p: &Packed| &paths[p.path_at as usize..(p.path_at + u64::from(p.path_len)) as usize];
        index.files.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        if let Some(w) = index.files.windows(2).find(|w| key(&w[0]) == key(&w[1])) {
            return Err(ManifestError::Duplicate(String::from_utf8_lossy(key(&w[0])).into_owned()));
        }
        Ok((head, index))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The `i`th file in path order.
    pub fn get(&self, i: usize) -> IndexedFile<'_> {
        let p = &self.files[i];
        let path = &self.paths[p.path_at as usize..(p.path_at + u64::from(p.path_len)) as usize];
        let checksum = (p.algorithm > 0).then(|| {
            let alg = ALGORITHMS[usize::from(p.algorithm - 1)];
            let at = p.digest_at as usize;
            (alg, &self.digests[at..at + alg.digest_len()])
        });
        IndexedFile { path, size: p.size, checksum }
    }

    /// The position of `path`, if listed.
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        self.files
            .binary_search_by(|p| {
                self.paths[p.path_at as usize..(p.path_at + u64::from(p.path_len)) as usize].cmp(path)
            })
            .ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = IndexedFile<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The algorithms used, each with its number of files, and the number of
    /// files without a checksum.
    pub fn checksum_use(&self) -> (Vec<(ChecksumAlgorithm, u64)>, u64) {
        let used = ALGORITHMS.iter().zip(self.by_algorithm).filter(|(_, n)| *n > 0).map(|(a, n)| (*a, n)).collect();
        (used, self.without_checksum)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|p| p.size).sum()
    }

    /// The heap memory the index holds.
    pub fn heap_bytes(&self) -> usize {
        self.paths.capacity() + self.digests.capacity() + self.files.capacity() * std::mem::size_of::<Packed>()
    }
}

/// `Last-Modified` text for a modification time in seconds since the epoch.
pub fn format_last_modified(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S GMT").to_string())
        .unwrap_or_else(|| "1970-01-01 00:00:00 GMT".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn files() -> Vec<ManifestFile> {
        let mut c = Checksummer::new(ChecksumAlgorithm::Crc32c);
        c.update(b"hello");
        vec![
            ManifestFile {
                path: b"backup_label".to_vec(),
                size: 5,
                last_modified: format_last_modified(0),
                checksum: Some((ChecksumAlgorithm::Crc32c, c.finish())),
            },
            ManifestFile {
                path: vec![b'b', 0xff, b'x'],
                size: 0,
                last_modified: format_last_modified(86400),
                checksum: None,
            },
            ManifestFile {
                path: b"we\"ird\n".to_vec(),
                size: 1,
                last_modified: format_last_modified(1),
                checksum: None,
            },
        ]
    }

    #[test]
    fn renders_postgres_layout_and_round_trips() {
        let ranges = vec![WalRange { timeline: TimelineId(1), start: Lsn(0x62708F0), end: Lsn(0x76D6CA8) }];
        for version in [1, 2] {
            let text = Manifest::render(version, 7, &files(), &ranges);
            let m = Manifest::parse(text.as_bytes()).unwrap();
            m.check_checksum(text.as_bytes()).unwrap();
            assert_eq!(m.version, version);
            assert_eq!(m.system_identifier, (version == 2).then_some(7));
            assert_eq!(m.files, files());
            assert_eq!(m.wal_ranges, ranges);
            assert!(text.starts_with(&format!("{{ \"PostgreSQL-Backup-Manifest-Version\": {version},\n")));
            assert!(text.ends_with("\"}\n"));
            assert!(text.contains("\"Last-Modified\": \"1970-01-01 00:00:00 GMT\""));
            assert!(text.contains("\"Encoded-Path\": \"62ff78\""));
        }
    }

    #[test]
    fn crc_is_written_in_memory_order() {
        assert_eq!(crc32c_hex(0x2247748A), "8a744722");
    }

    #[test]
    fn detects_tampering() {
        let text = Manifest::render(1, 0, &files(), &[]);
        let tampered = text.replace("\"Size\": 5", "\"Size\": 6");
        let m = Manifest::parse(tampered.as_bytes()).unwrap();
        assert!(matches!(m.check_checksum(tampered.as_bytes()), Err(ManifestError::ChecksumMismatch { .. })));
        assert!(Manifest::parse(b"{").is_err());
        assert!(matches!(
            Manifest::parse(br#"{"PostgreSQL-Backup-Manifest-Version": 3, "Manifest-Checksum": "x"}"#),
            Err(ManifestError::Version(3))
        ));
        let dup = r#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [{"Path": "a", "Size": 1}, {"Path": "a", "Size": 1}], "Manifest-Checksum": "x"}"#;
        assert!(matches!(Manifest::parse(dup.as_bytes()), Err(ManifestError::Duplicate(_))));
        assert!(matches!(compute_manifest_checksum(b"one line"), Err(ManifestError::Layout)));
    }

    /// Every case of PostgreSQL's `src/bin/pg_verifybackup/t/005_bad_manifest.pl`
    /// is rejected, and so are the cases pgdrill is stricter about.
    #[test]
    fn rejects_what_postgres_rejects() {
        let v1 = r#"{"PostgreSQL-Backup-Manifest-Version": 1"#;
        let cases: Vec<(String, &str)> = vec![
            ("{\n".into(), "EOF"),
            ("{}\n".into(), "version indicator"),
            ("[]\n".into(), "invalid type"),
            (r#"{"not-expected": 1}"#.to_string() + "\n", "expected version indicator"),
            (r#"{"PostgreSQL-Backup-Manifest-Version": "phooey"}"#.to_string() + "\n", "invalid type"),
            (r#"{"PostgreSQL-Backup-Manifest-Version": 9876599}"#.to_string() + "\n", "unsupported manifest version"),
            (format!("{v1}, \"Files\": true}}\n"), "invalid type"),
            (format!("{v1}, \"Oops\": 1}}\n"), "unrecognized top-level field"),
            (format!("{v1}, \"Files\": {{}}}}\n"), "invalid type"),
            (format!("{v1}, \"Files\": [{{}}]}}\n"), "missing path name"),
            (format!("{v1}, \"Files\": [\n{{\"Path\": \"x\", \"Encoded-Path\": \"1234\"}}]}}\n"), "both path name"),
            (format!("{v1}, \"Files\": [\n{{\"Oops\": 1}}]}}\n"), "unexpected file field"),
            (format!("{v1}, \"Files\": [\n{{\"Path\": \"x\"}}]}}\n"), "missing size"),
            (format!("{v1}, \"Files\": [\n{{\"Path\": \"x\", \"Size\": \"Oops\"}}]}}\n"), "invalid type"),
            (format!("{v1}, \"Files\": [\n{{\"Encoded-Path\": \"123\", \"Size\": 0}}]}}\n"), "could not decode file name"),
            (format!("{v1}, \"Files\": [\n{{\"Path\": \"x\", \"Size\": 100, \"Checksum\": \"Oops\"}}]}}\n"), "checksum without algorithm"),
            (format!("{v1}, \"Files\": [\n{{\"Path\": \"x\", \"Size\": 100, \"Checksum-Algorithm\": \"Oops\", \"Checksum\": \"00\"}}]}}\n"), "unknown checksum algorithm"),
            (format!("{v1}, \"Files\": [\n{{\"Path\": \"x\", \"Size\": 100, \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"0\"}}]}}\n"), "invalid checksum"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{\"Timeline\": 1}}]}}\n"), "missing start LSN"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{\"Timeline\": 1, \"Start-LSN\": \"0/0\"}}]}}\n"), "missing end LSN"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{\"Oops\": 1}}]}}\n"), "unexpected WAL range field"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{}}]}}\n"), "missing timeline"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{\"Timeline\": 1, \"Start-LSN\": \"0/0\", \"End-LSN\": \"0/0\"}}]}}\n"), "Manifest-Checksum"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{\"Timeline\": true, \"Start-LSN\": \"0/0\", \"End-LSN\": \"0/0\"}}]}}\n"), "invalid type"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{\"Timeline\": 1, \"Start-LSN\": \"oops\", \"End-LSN\": \"0/0\"}}]}}\n"), "invalid LSN"),
            (format!("{v1}, \"WAL-Ranges\": [\n{{\"Timeline\": 1, \"Start-LSN\": \"0/0\", \"End-LSN\": \"oops\"}}]}}\n"), "invalid LSN"),
            (format!("{v1}, \"Files\": [], \"Manifest-Checksum\": null}}\n"), "invalid type"),
            (format!("{v1},\n\"Files\": [],\n\"Manifest-Checksum\": \"{}\"}}", "0".repeat(64)), "two lines"),
            (format!("{v1}, \"Files\": [], \"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64)), "two lines"),
            (format!("{v1}, \"Files\": [],\n \"Manifest-Checksum\": \"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz01234567890-\"}}\n"), "invalid manifest checksum"),
            // Stricter than PostgreSQL.
            (format!("{v1}, \"System-Identifier\": 7,\n\"Files\": [],\n\"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64)), "version 1 manifest has no"),
            (format!("{{\"PostgreSQL-Backup-Manifest-Version\": 2,\n\"Files\": [],\n\"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64)), "must have a \"System-Identifier\""),
            (format!("{v1},\n\"Files\": [{{\"Path\": \"x\", \"Size\": 1, \"Checksum-Algorithm\": \"CRC32C\"}}],\n\"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64)), "invalid checksum"),
            (format!("{v1},\n\"Files\": [{{\"Path\": \"x\", \"Size\": 1, \"Checksum-Algorithm\": \"NONE\", \"Checksum\": \"00\"}}],\n\"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64)), "algorithm NONE"),
            (format!("{v1},\n\"Files\": [{{\"Path\": \"x\", \"Path\": \"y\", \"Size\": 1}}],\n\"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64)), "duplicate field"),
            (format!("{v1},\n\"Manifest-Checksum\": \"{}\", \"Files\": []}}\n", "0".repeat(64)), "after \"Manifest-Checksum\""),
            (format!("{v1},\n\"Files\": [], \"Files\": [],\n\"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64)), "duplicate top-level"),
            (format!("{v1},\n\"Files\": [],\n\"Manifest-Checksum\": \"{}\"}}\n{{}}\n", "0".repeat(64)), "trailing"),
        ];
        for (text, why) in cases {
            let e = Manifest::parse(text.as_bytes()).expect_err(&text).to_string();
            assert!(e.contains(why), "{text:?}: {e:?} does not say {why:?}");
            let idx = ManifestIndex::read(text.as_bytes(), 0, &|| false);
            assert!(idx.is_err(), "{text:?}");
        }
        // A duplicate path (test_fatal_error in 005), for both forms.
        let dup = format!("{v1},\n\"Files\": [{{\"Path\": \"x\", \"Size\": 0}},\n{{\"Path\": \"x\", \"Size\": 0}}],\n\"Manifest-Checksum\": \"{}\"}}\n", "0".repeat(64));
        assert!(matches!(Manifest::parse(dup.as_bytes()), Err(ManifestError::Duplicate(_))));
        assert!(matches!(ManifestIndex::read(dup.as_bytes(), 0, &|| false), Err(ManifestError::Duplicate(_))));
    }

    /// The tampering the issue describes: an entry's algorithm removed and
    /// the manifest checksum recomputed.
    #[test]
    fn a_checksum_without_its_algorithm_is_caught_even_when_resealed() {
        let text = Manifest::render(1, 0, &files(), &[]);
        let tampered = text.replacen("\"Checksum-Algorithm\": \"CRC32C\", ", "", 1);
        assert_ne!(tampered, text);
        let body_end = tampered[..tampered.len() - 1].rfind('\n').unwrap() + 1;
        let resealed = format!(
            "{}\"Manifest-Checksum\": \"{}\"}}\n",
            &tampered[..body_end],
            hex(&Sha256::digest(&tampered.as_bytes()[..body_end]))
        );
        let e = Manifest::parse(resealed.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("checksum without algorithm"), "{e}");
    }

    #[test]
    fn the_index_holds_what_verification_needs() {
        let mut fs = files();
        fs.push(ManifestFile { path: b"a/b".to_vec(), size: 7, last_modified: "whatever".into(), checksum: None });
        let ranges = vec![WalRange { timeline: TimelineId(2), start: Lsn(0x100), end: Lsn(0x200) }];
        for version in [1, 2] {
            let text = Manifest::render(version, 99, &fs, &ranges);
            let (head, idx) = ManifestIndex::read(text.as_bytes(), text.len() as u64, &|| false).unwrap();
            assert!(head.checksum_ok());
            assert_eq!(head.size, text.len() as u64);
            assert_eq!(head.version, version);
            assert_eq!(head.system_identifier, (version == 2).then_some(99));
            assert_eq!(head.wal_ranges, ranges);
            assert_eq!(idx.len(), fs.len());
            for f in &fs {
                let i = idx.find(&f.path).unwrap();
                let got = idx.get(i);
                assert_eq!(got.path, f.path.as_slice());
                assert_eq!(got.size, f.size);
                assert_eq!(got.checksum, f.checksum.as_ref().map(|(a, d)| (*a, d.as_slice())));
            }
            assert_eq!(idx.find(b"nope"), None);
            let paths: Vec<&[u8]> = idx.iter().map(|f| f.path).collect();
            let mut sorted = paths.clone();
            sorted.sort();
            assert_eq!(paths, sorted);
            assert_eq!(idx.checksum_use(), (vec![(ChecksumAlgorithm::Crc32c, 1)], 3));
            assert_eq!(idx.total_bytes(), 5 + 1 + 7);
            // A damaged body is parsed but does not match its checksum.
            let damaged = text.replacen("\"Size\": 7", "\"Size\": 8", 1);
            let (head, _) = ManifestIndex::read(damaged.as_bytes(), 0, &|| false).unwrap();
            assert!(!head.checksum_ok());
        }
        // Reading stops when interrupted.
        let text = Manifest::render(1, 0, &fs, &ranges);
        assert!(matches!(ManifestIndex::read(text.as_bytes(), 0, &|| true), Err(ManifestError::Interrupted)));
    }

    /// The packed index of a large manifest in PostgreSQL's layout takes
    /// less than half the manifest's own size (pg_verifybackup's hash table
    /// and pgdrill's former parse took several times it).
    #[test]
    fn the_index_is_smaller_than_the_manifest() {
        let files: Vec<ManifestFile> = (0..200_000u32)
            .map(|i| ManifestFile {
                path: format!("base/16384/{}", 100_000 + i).into_bytes(),
                size: 8192,
                last_modified: format_last_modified(1_700_000_000),
                checksum: Some((ChecksumAlgorithm::Crc32c, i.to_le_bytes().to_vec())),
            })
            .collect();
        let text = Manifest::render(1, 0, &files, &[]);
        let (_, idx) = ManifestIndex::read(text.as_bytes(), text.len() as u64, &|| false).unwrap();
        assert_eq!(idx.len(), files.len());
        assert!(idx.heap_bytes() * 2 < text.len(), "{} bytes for a manifest of {}", idx.heap_bytes(), text.len());
    }

    proptest! {
        #[test]
        fn any_paths_round_trip(paths in prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..20), 0..8), size: u64) {
            let fs: Vec<_> = paths.into_iter().map(|p| ManifestFile { path: p, size, last_modified: format_last_modified(0), checksum: None }).collect();
            let text = Manifest::render(1, 0, &fs, &[]);
            let m = Manifest::parse(text.as_bytes()).unwrap();
            m.check_checksum(text.as_bytes()).unwrap();
            prop_assert_eq!(m.files, fs);
        }
    }
}
