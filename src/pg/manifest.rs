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

use std::collections::HashSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::lsn::{Lsn, TimelineId};

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
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

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u64,
    #[serde(rename = "System-Identifier")]
    system_identifier: Option<u64>,
    #[serde(rename = "Files", default)]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<RawRange>,
    #[serde(rename = "Manifest-Checksum")]
    checksum: Option<String>,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Last-Modified", default)]
    last_modified: String,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start: Lsn,
    #[serde(rename = "End-LSN")]
    end: Lsn,
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
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.version != 1 && raw.version != 2 {
            return Err(ManifestError::Version(raw.version));
        }
        let mut seen = HashSet::new();
        let mut files = Vec::with_capacity(raw.files.len());
        for f in raw.files {
            let path = match (f.path, f.encoded_path) {
                (Some(p), None) => p.into_bytes(),
                (None, Some(e)) => unhex(&e).ok_or(ManifestError::EncodedPath(e))?,
                _ => return Err(ManifestError::PathField),
            };
            if !seen.insert(path.clone()) {
                return Err(ManifestError::Duplicate(String::from_utf8_lossy(&path).into_owned()));
            }
            let checksum = match (f.algorithm, f.checksum) {
                (Some(a), Some(c)) if !a.eq_ignore_ascii_case("NONE") => {
                    let alg = ChecksumAlgorithm::parse(&a)?;
                    let bytes = unhex(&c)
                        .filter(|b| b.len() == alg.digest_len())
                        .ok_or_else(|| ManifestError::ChecksumValue { algorithm: a.clone(), checksum: c.clone() })?;
                    Some((alg, bytes))
                }
                _ => None,
            };
            files.push(ManifestFile { path, size: f.size, last_modified: f.last_modified, checksum });
        }
        Ok(Manifest {
            version: raw.version as u32,
            system_identifier: raw.system_identifier,
            files,
            wal_ranges: raw
                .wal_ranges
                .into_iter()
                .map(|r| WalRange { timeline: TimelineId(r.timeline), start: r.start, end: r.end })
                .collect(),
            manifest_checksum: raw.checksum.ok_or(ManifestError::NoChecksum)?,
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
