//! `global/pg_control`: the cluster's control file.
//!
//! Where: `$PGDATA/global/pg_control`, 8192 bytes (`PG_CONTROL_FILE_SIZE`).
//! Layout: the C struct `ControlFileData` from
//! `src/include/catalog/pg_control.h` at offset 0, in native byte order
//! (little-endian on x86_64), followed by zero fill. A CRC-32C of the struct's
//! bytes up to the `crc` field is stored in that field. The offsets per major
//! are in [`crate::pg::version`].
//!
//! Detection: the major comes from `pg_control_version` (and the catalog
//! version where several majors share a control version), never from
//! `PG_VERSION`. A byte-swapped version number means the file was written on a
//! machine of the other byte order.
//!
//! This module only decodes bytes. Reading the file from a running server,
//! where a read can be torn, is done by [`crate::datadir`], which retries as
//! PostgreSQL's frontends do.

use serde::Serialize;

use super::lsn::{Lsn, TimelineId, WalSegSize};
use super::version::{self, PgVersion};

/// `PG_CONTROL_FILE_SIZE`.
pub const CONTROL_FILE_SIZE: usize = 8192;

/// Why bytes are not a usable pg_control.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("pg_control is truncated: {len} bytes, need at least {needed}")]
    Truncated { len: usize, needed: usize },
    #[error("pg_control was written with the other byte order (version field reads {raw:#x})")]
    WrongByteOrder { raw: u32 },
    #[error(
        "unknown pg_control version {control_version} (catalog version {catalog_version}); \
         supported are the majors {oldest} to {newest}"
    )]
    UnknownVersion { control_version: u32, catalog_version: u32, oldest: u32, newest: u32 },
}

/// `DBState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbState {
    StartingUp,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
    Unknown(u32),
}

impl DbState {
    fn from_raw(v: u32) -> DbState {
        match v {
            0 => DbState::StartingUp,
            1 => DbState::ShutDown,
            2 => DbState::ShutDownInRecovery,
            3 => DbState::ShuttingDown,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            other => DbState::Unknown(other),
        }
    }

    /// The exact text pg_controldata prints.
    pub fn as_text(self) -> &'static str {
        match self {
            DbState::StartingUp => "starting up",
            DbState::ShutDown => "shut down",
            DbState::ShutDownInRecovery => "shut down in recovery",
            DbState::ShuttingDown => "shutting down",
            DbState::InCrashRecovery => "in crash recovery",
            DbState::InArchiveRecovery => "in archive recovery",
            DbState::InProduction => "in production",
            DbState::Unknown(_) => "unrecognized status code",
        }
    }

    /// States a copy of a running or stopped standby can have.
    pub fn is_standby(self) -> bool {
        matches!(self, DbState::InArchiveRecovery | DbState::ShutDownInRecovery)
    }
}

impl Serialize for DbState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_text())
    }
}

/// `wal_level` as stored (an enum, not the GUC text).
pub fn wal_level_text(v: u32) -> &'static str {
    match v {
        0 => "minimal",
        1 => "replica",
        2 => "logical",
        _ => "unknown",
    }
}

/// The decoded control file. Field names are the keys of `inspect --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ControlFile {
    pub pg_major: u32,
    /// A string so that JSON consumers lose no precision.
    #[serde(serialize_with = "as_string")]
    pub system_identifier: u64,
    pub pg_control_version: u32,
    pub catalog_version: u32,
    pub state: DbState,
    /// pg_control's own modification time (seconds since the epoch).
    pub time: i64,
    pub checkpoint_lsn: Lsn,
    /// PostgreSQL 10 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_checkpoint_lsn: Option<Lsn>,
    pub redo_lsn: Lsn,
    pub timeline: TimelineId,
    pub prev_timeline: TimelineId,
    pub full_page_writes: bool,
    /// `epoch:xid`, as `pg_control_checkpoint()` prints it.
    pub next_xid: String,
    pub next_oid: u32,
    pub next_multixact_id: u32,
    pub next_multi_offset: u32,
    pub oldest_xid: u32,
    pub oldest_xid_dbid: u32,
    pub oldest_active_xid: u32,
    pub oldest_multi_xid: u32,
    pub oldest_multi_dbid: u32,
    pub oldest_commit_ts_xid: u32,
    pub newest_commit_ts_xid: u32,
    pub checkpoint_time: i64,
    pub unlogged_lsn: Lsn,
    pub min_recovery_lsn: Lsn,
    pub min_recovery_timeline: u32,
    pub backup_start_lsn: Lsn,
    pub backup_end_lsn: Lsn,
    pub backup_end_required: bool,
    pub wal_level: &'static str,
    pub wal_log_hints: bool,
    pub max_connections: i32,
    pub max_worker_processes: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wal_senders: Option<i32>,
    pub max_prepared_xacts: i32,
    pub max_locks_per_xact: i32,
    pub track_commit_timestamp: bool,
    pub max_data_alignment: u32,
    pub float_format_ok: bool,
    pub block_size: u32,
    pub blocks_per_segment: u32,
    pub wal_block_size: u32,
    /// Raw value; see [`ControlFile::wal_seg_size`] for the validated one.
    pub wal_segment_size: u32,
    pub max_identifier_length: u32,
    pub max_index_columns: u32,
    pub max_toast_chunk_size: u32,
    pub large_object_chunk_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub float4_pass_by_value: Option<bool>,
    pub float8_pass_by_value: bool,
    pub data_checksum_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_char_signedness: Option<bool>,
    pub mock_authentication_nonce: String,
    pub crc_ok: bool,
    pub crc_stored: u32,
    pub crc_computed: u32,
}

fn as_string<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&self, off: usize) -> u8 {
        self.0[off]
    }
    fn u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_le_bytes(b)
    }
    fn i32(&self, off: usize) -> i32 {
        self.u32(off) as i32
    }
    fn u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[off..off + 8]);
        u64::from_le_bytes(b)
    }
    fn i64(&self, off: usize) -> i64 {
        self.u64(off) as i64
    }
    fn lsn(&self, off: usize) -> Lsn {
        Lsn(self.u64(off))
    }
    fn bool(&self, off: usize) -> bool {
        self.u8(off) != 0
    }
}

/// Read the version pair and find the table row, without decoding the rest.
pub fn detect(bytes: &[u8]) -> Result<&'static PgVersion, ControlError> {
    if bytes.len() < 16 {
        return Err(ControlError::Truncated { len: bytes.len(), needed: 16 });
    }
    let r = Reader(bytes);
    let control_version = r.u32(8);
    let catalog_version = r.u32(12);
    if control_version % 65536 == 0 && control_version / 65536 != 0 {
        return Err(ControlError::WrongByteOrder { raw: control_version });
    }
    version::from_control(control_version, catalog_version).ok_or_else(|| {
        let (oldest, newest) = version::supported_range();
        ControlError::UnknownVersion { control_version, catalog_version, oldest, newest }
    })
}

/// CRC-32C over `[0, crc_offset)`, the way PostgreSQL computes it.
pub fn compute_crc(bytes: &[u8], crc_offset: usize) -> u32 {
    crc32c::crc32c(&bytes[..crc_offset])
}

impl ControlFile {
    /// Decode pg_control bytes. A bad CRC is not an error here: the result
    /// says so in `crc_ok`, so that callers can still show the contents.
    pub fn parse(bytes: &[u8]) -> Result<ControlFile, ControlError> {
        let v = detect(bytes)?;
        let l = v.control;
        let needed = l.crc + 4;
        if bytes.len() < needed {
            return Err(ControlError::Truncated { len: bytes.len(), needed });
        }
        let r = Reader(bytes);
        let cp = l.checkpoint_copy;
        let c = l.checkpoint;
        let crc_stored = r.u32(l.crc);
        let crc_computed = compute_crc(bytes, l.crc);
        let (epoch, xid) = if c.next_xid_is_full {
            let full = r.u64(cp + c.next_xid);
            ((full >> 32) as u32, full as u32)
        } else {
            (c.next_xid_epoch.map_or(0, |o| r.u32(cp + o)), r.u32(cp + c.next_xid))
        };
        let nonce: String =
            bytes[l.mock_auth_nonce..l.mock_auth_nonce + 32].iter().map(|b| format!("{b:02x}")).collect();
        let float_format = f64::from_le_bytes(bytes[l.float_format..l.float_format + 8].try_into().unwrap_or([0; 8]));
        Ok(ControlFile {
            pg_major: v.major,
            system_identifier: r.u64(0),
            pg_control_version: r.u32(8),
            catalog_version: r.u32(12),
            state: DbState::from_raw(r.u32(16)),
            time: r.i64(24),
            checkpoint_lsn: r.lsn(32),
            prev_checkpoint_lsn: l.prev_checkpoint.map(|o| r.lsn(o)),
            redo_lsn: r.lsn(cp + c.redo),
            timeline: TimelineId(r.u32(cp + c.this_tli)),
            prev_timeline: TimelineId(r.u32(cp + c.prev_tli)),
            full_page_writes: r.bool(cp + c.full_page_writes),
            next_xid: format!("{epoch}:{xid}"),
            next_oid: r.u32(cp + c.next_oid),
            next_multixact_id: r.u32(cp + c.next_multi),
            next_multi_offset: r.u32(cp + c.next_multi_offset),
            oldest_xid: r.u32(cp + c.oldest_xid),
            oldest_xid_dbid: r.u32(cp + c.oldest_xid_db),
            oldest_active_xid: r.u32(cp + c.oldest_active_xid),
            oldest_multi_xid: r.u32(cp + c.oldest_multi),
            oldest_multi_dbid: r.u32(cp + c.oldest_multi_db),
            oldest_commit_ts_xid: r.u32(cp + c.oldest_commit_ts_xid),
            newest_commit_ts_xid: r.u32(cp + c.newest_commit_ts_xid),
            checkpoint_time: r.i64(cp + c.time),
            unlogged_lsn: r.lsn(l.unlogged_lsn),
            min_recovery_lsn: r.lsn(l.min_recovery_point),
            min_recovery_timeline: r.u32(l.min_recovery_tli),
            backup_start_lsn: r.lsn(l.backup_start_point),
            backup_end_lsn: r.lsn(l.backup_end_point),
            backup_end_required: r.bool(l.backup_end_required),
            wal_level: wal_level_text(r.u32(l.wal_level)),
            wal_log_hints: r.bool(l.wal_log_hints),
            max_connections: r.i32(l.max_connections),
            max_worker_processes: r.i32(l.max_worker_processes),
            max_wal_senders: l.max_wal_senders.map(|o| r.i32(o)),
            max_prepared_xacts: r.i32(l.max_prepared_xacts),
            max_locks_per_xact: r.i32(l.max_locks_per_xact),
            track_commit_timestamp: r.bool(l.track_commit_timestamp),
            max_data_alignment: r.u32(l.max_align),
            float_format_ok: float_format == 1234567.0,
            block_size: r.u32(l.blcksz),
            blocks_per_segment: r.u32(l.relseg_size),
            wal_block_size: r.u32(l.xlog_blcksz),
            wal_segment_size: r.u32(l.xlog_seg_size),
            max_identifier_length: r.u32(l.name_data_len),
            max_index_columns: r.u32(l.index_max_keys),
            max_toast_chunk_size: r.u32(l.toast_max_chunk_size),
            large_object_chunk_size: r.u32(l.loblksize),
            float4_pass_by_value: l.float4_by_val.map(|o| r.bool(o)),
            float8_pass_by_value: r.bool(l.float8_by_val),
            data_checksum_version: r.u32(l.data_checksum_version),
            default_char_signedness: l.default_char_signedness.map(|o| r.bool(o)),
            mock_authentication_nonce: nonce,
            crc_ok: crc_stored == crc_computed,
            crc_stored,
            crc_computed,
        })
    }

    /// A stand-in for a pg_control that cannot be read, of major `v`: every
    /// value zero, the CRC failed. Callers must not trust its fields.
    pub fn placeholder(v: &PgVersion) -> ControlFile {
        ControlFile {
            pg_major: v.major,
            system_identifier: 0,
            pg_control_version: v.control_version,
            catalog_version: v.catalog_version,
            state: DbState::Unknown(0),
            time: 0,
            checkpoint_lsn: Lsn(0),
            prev_checkpoint_lsn: None,
            redo_lsn: Lsn(0),
            timeline: TimelineId(0),
            prev_timeline: TimelineId(0),
            full_page_writes: false,
            next_xid: "0:0".into(),
            next_oid: 0,
            next_multixact_id: 0,
            next_multi_offset: 0,
            oldest_xid: 0,
            oldest_xid_dbid: 0,
            oldest_active_xid: 0,
            oldest_multi_xid: 0,
            oldest_multi_dbid: 0,
            oldest_commit_ts_xid: 0,
            newest_commit_ts_xid: 0,
            checkpoint_time: 0,
            unlogged_lsn: Lsn(0),
            min_recovery_lsn: Lsn(0),
            min_recovery_timeline: 0,
            backup_start_lsn: Lsn(0),
            backup_end_lsn: Lsn(0),
            backup_end_required: false,
            wal_level: "unknown",
            wal_log_hints: false,
            max_connections: 0,
            max_worker_processes: 0,
            max_wal_senders: None,
            max_prepared_xacts: 0,
            max_locks_per_xact: 0,
            track_commit_timestamp: false,
            max_data_alignment: 0,
            float_format_ok: false,
            block_size: 0,
            blocks_per_segment: 0,
            wal_block_size: 0,
            wal_segment_size: 0,
            max_identifier_length: 0,
            max_index_columns: 0,
            max_toast_chunk_size: 0,
            large_object_chunk_size: 0,
            float4_pass_by_value: None,
            float8_pass_by_value: false,
            data_checksum_version: 0,
            default_char_signedness: None,
            mock_authentication_nonce: String::new(),
            crc_ok: false,
            crc_stored: 0,
            crc_computed: 0,
        }
    }

    /// The table row of this file's major.
    pub fn version(&self) -> &'static PgVersion {
        // parse() only succeeds for a major in the table.
        version::by_major(self.pg_major).unwrap_or(&version::VERSIONS[0])
    }

    /// The WAL segment size, if the stored value is a valid one.
    pub fn wal_seg_size(&self) -> Option<WalSegSize> {
        WalSegSize::new(u64::from(self.wal_segment_size)).ok()
    }

    /// Problems with values that no healthy cluster has. Empty when sane.
    pub fn sanity_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.wal_seg_size().is_none() {
            out.push(format!(
                "WAL segment size {} is not a power of two between 1 MiB and 1 GiB",
                self.wal_segment_size
            ));
        }
        for (what, v) in [("block size", self.block_size), ("WAL block size", self.wal_block_size)] {
            if !(v.is_power_of_two() && (1024..=32768).contains(&v)) {
                out.push(format!("{what} {v} is not a power of two between 1 KiB and 32 KiB"));
            }
        }
        if !self.float_format_ok {
            out.push("float format check value is wrong (file from an incompatible build?)".into());
        }
        if !self.timeline.is_valid() {
            out.push("checkpoint timeline is 0".into());
        }
        if let DbState::Unknown(v) = self.state {
            out.push(format!("unknown cluster state {v}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a minimal synthetic file for the layout of `major`.
    fn synthetic(major: u32) -> Vec<u8> {
        let v = version::by_major(major).unwrap();
        let l = v.control;
        let mut b = vec![0u8; CONTROL_FILE_SIZE];
        b[0..8].copy_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
        b[8..12].copy_from_slice(&v.control_version.to_le_bytes());
        b[12..16].copy_from_slice(&v.catalog_version.to_le_bytes());
        b[16..20].copy_from_slice(&5u32.to_le_bytes());
        b[l.min_recovery_point..l.min_recovery_point + 8].copy_from_slice(&0x76D6CA8u64.to_le_bytes());
        b[l.xlog_seg_size..l.xlog_seg_size + 4].copy_from_slice(&(16u32 << 20).to_le_bytes());
        b[l.blcksz..l.blcksz + 4].copy_from_slice(&8192u32.to_le_bytes());
        b[l.xlog_blcksz..l.xlog_blcksz + 4].copy_from_slice(&8192u32.to_le_bytes());
        b[l.float_format..l.float_format + 8].copy_from_slice(&1234567.0f64.to_le_bytes());
        let cp = l.checkpoint_copy;
        b[cp + 8..cp + 12].copy_from_slice(&1u32.to_le_bytes());
        let crc = compute_crc(&b, l.crc);
        b[l.crc..l.crc + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn synthetic_files_decode_for_every_major() {
        for v in version::VERSIONS {
            let b = synthetic(v.major);
            let c = ControlFile::parse(&b).unwrap();
            assert_eq!(c.pg_major, v.major);
            assert!(c.crc_ok);
            assert_eq!(c.state, DbState::InArchiveRecovery);
            assert_eq!(c.min_recovery_lsn, Lsn(0x76D6CA8));
            assert_eq!(c.wal_seg_size(), Some(WalSegSize::DEFAULT));
            assert!(c.sanity_problems().is_empty(), "{:?}", c.sanity_problems());
        }
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let good = synthetic(15);
        for len in [0, 1, 15, 16, 100, 287, 291] {
            assert!(matches!(ControlFile::parse(&good[..len]), Err(ControlError::Truncated { .. })), "len {len}");
        }
        let mut swapped = good.clone();
        swapped[8..12].copy_from_slice(&1300u32.to_be_bytes());
        assert!(matches!(ControlFile::parse(&swapped), Err(ControlError::WrongByteOrder { .. })));
        let mut unknown = good.clone();
        unknown[8..12].copy_from_slice(&9999u32.to_le_bytes());
        assert!(matches!(ControlFile::parse(&unknown), Err(ControlError::UnknownVersion { .. })));
        let mut flipped = good.clone();
        flipped[40] ^= 1;
        assert!(!ControlFile::parse(&flipped).unwrap().crc_ok);
        // Bytes after the CRC are not covered by it.
        let mut tail = good;
        tail[4000] = 7;
        assert!(ControlFile::parse(&tail).unwrap().crc_ok);
    }
}
