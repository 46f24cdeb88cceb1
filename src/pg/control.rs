//! `global/pg_control`: the cluster's control file.
//!
//! Where: `$PGDATA/global/pg_control`, 8192 bytes (`PG_CONTROL_FILE_SIZE`).
//! Layout: the C struct `ControlFileData` from
//! `src/include/catalog/pg_control.h` at offset 0, in native byte order
//! (little-endian on x86_64), followed by zero fill. A CRC-32C of the struct's
//! bytes up to the `crc` field is stored in that field. The struct of each
//! major is a list of fields in [`crate::pg::version`]; [`crate::pg::layout`]
//! computes their offsets.
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

use super::layout::{CType, Layout};
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
    #[error("the layout of PostgreSQL {major} has no field {field}")]
    MissingField { major: u32, field: &'static str },
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
    /// `MultiXactOffset`: 32 bits up to 18, wider in later layouts.
    pub next_multi_offset: u64,
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
    fn u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_le_bytes(b)
    }
    fn u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[off..off + 8]);
        u64::from_le_bytes(b)
    }
    /// An unsigned value of whatever width the layout gives the field.
    fn uint(&self, (off, ty): (usize, CType)) -> u64 {
        match ty.size() {
            1 => u64::from(self.0[off]),
            4 => u64::from(self.u32(off)),
            _ => self.u64(off),
        }
    }
}

/// Field lookups for one layout: required fields are an error when the
/// layout lacks them (a table bug, caught by tests), optional ones `None`.
struct Fields<'a> {
    r: Reader<'a>,
    layout: Layout,
    major: u32,
}

impl Fields<'_> {
    fn at(&self, name: &'static str) -> Result<(usize, CType), ControlError> {
        self.layout.field(name).ok_or(ControlError::MissingField { major: self.major, field: name })
    }
    fn uint(&self, name: &'static str) -> Result<u64, ControlError> {
        Ok(self.r.uint(self.at(name)?))
    }
    fn u32(&self, name: &'static str) -> Result<u32, ControlError> {
        Ok(self.uint(name)? as u32)
    }
    fn i32(&self, name: &'static str) -> Result<i32, ControlError> {
        Ok(self.uint(name)? as u32 as i32)
    }
    fn i64(&self, name: &'static str) -> Result<i64, ControlError> {
        Ok(self.uint(name)? as i64)
    }
    fn lsn(&self, name: &'static str) -> Result<Lsn, ControlError> {
        Ok(Lsn(self.uint(name)?))
    }
    fn bool(&self, name: &'static str) -> Result<bool, ControlError> {
        Ok(self.uint(name)? != 0)
    }
    fn optional(&self, name: &'static str) -> Option<u64> {
        self.layout.field(name).map(|f| self.r.uint(f))
    }
    fn bytes(&self, name: &'static str) -> Result<&[u8], ControlError> {
        let (off, ty) = self.at(name)?;
        Ok(&self.r.0[off..off + ty.size()])
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
        Self::parse_as(bytes, detect(bytes)?)
    }

    /// Decode pg_control bytes with the layout of `v` (its row decides every
    /// offset; used directly only for layouts not in the table yet).
    pub fn parse_as(bytes: &[u8], v: &PgVersion) -> Result<ControlFile, ControlError> {
        let layout = Layout::of(v.control);
        let fl = Fields { r: Reader(bytes), layout, major: v.major };
        let crc_at = fl.at("crc")?.0;
        let needed = crc_at + 4;
        if bytes.len() < needed {
            return Err(ControlError::Truncated { len: bytes.len(), needed });
        }
        let crc_stored = fl.u32("crc")?;
        let crc_computed = compute_crc(bytes, crc_at);
        let (xid_at, xid_ty) = fl.at("checkPointCopy.nextXid")?;
        let (epoch, xid) = if xid_ty.size() == 8 {
            let full = fl.r.u64(xid_at);
            ((full >> 32) as u32, full as u32)
        } else {
            (fl.optional("checkPointCopy.nextXidEpoch").unwrap_or(0) as u32, fl.r.u32(xid_at))
        };
        let nonce: String = fl.bytes("mock_authentication_nonce")?.iter().map(|b| format!("{b:02x}")).collect();
        let float_format = f64::from_bits(fl.uint("floatFormat")?);
        Ok(ControlFile {
            pg_major: v.major,
            system_identifier: fl.uint("system_identifier")?,
            pg_control_version: fl.u32("pg_control_version")?,
            catalog_version: fl.u32("catalog_version_no")?,
            state: DbState::from_raw(fl.u32("state")?),
            time: fl.i64("time")?,
            checkpoint_lsn: fl.lsn("checkPoint")?,
            prev_checkpoint_lsn: fl.optional("prevCheckPoint").map(Lsn),
            redo_lsn: fl.lsn("checkPointCopy.redo")?,
            timeline: TimelineId(fl.u32("checkPointCopy.ThisTimeLineID")?),
            prev_timeline: TimelineId(fl.u32("checkPointCopy.PrevTimeLineID")?),
            full_page_writes: fl.bool("checkPointCopy.fullPageWrites")?,
            next_xid: format!("{epoch}:{xid}"),
            next_oid: fl.u32("checkPointCopy.nextOid")?,
            next_multixact_id: fl.u32("checkPointCopy.nextMulti")?,
            next_multi_offset: fl.uint("checkPointCopy.nextMultiOffset")?,
            oldest_xid: fl.u32("checkPointCopy.oldestXid")?,
            oldest_xid_dbid: fl.u32("checkPointCopy.oldestXidDB")?,
            oldest_active_xid: fl.u32("checkPointCopy.oldestActiveXid")?,
            oldest_multi_xid: fl.u32("checkPointCopy.oldestMulti")?,
            oldest_multi_dbid: fl.u32("checkPointCopy.oldestMultiDB")?,
            oldest_commit_ts_xid: fl.u32("checkPointCopy.oldestCommitTsXid")?,
            newest_commit_ts_xid: fl.u32("checkPointCopy.newestCommitTsXid")?,
            checkpoint_time: fl.i64("checkPointCopy.time")?,
            unlogged_lsn: fl.lsn("unloggedLSN")?,
            min_recovery_lsn: fl.lsn("minRecoveryPoint")?,
            min_recovery_timeline: fl.u32("minRecoveryPointTLI")?,
            backup_start_lsn: fl.lsn("backupStartPoint")?,
            backup_end_lsn: fl.lsn("backupEndPoint")?,
            backup_end_required: fl.bool("backupEndRequired")?,
            wal_level: wal_level_text(fl.u32("wal_level")?),
            wal_log_hints: fl.bool("wal_log_hints")?,
            max_connections: fl.i32("MaxConnections")?,
            max_worker_processes: fl.i32("max_worker_processes")?,
            max_wal_senders: fl.optional("max_wal_senders").map(|x| x as u32 as i32),
            max_prepared_xacts: fl.i32("max_prepared_xacts")?,
            max_locks_per_xact: fl.i32("max_locks_per_xact")?,
            track_commit_timestamp: fl.bool("track_commit_timestamp")?,
            max_data_alignment: fl.u32("maxAlign")?,
            float_format_ok: float_format == 1234567.0,
            block_size: fl.u32("blcksz")?,
            blocks_per_segment: fl.u32("relseg_size")?,
            wal_block_size: fl.u32("xlog_blcksz")?,
            wal_segment_size: fl.u32("xlog_seg_size")?,
            max_identifier_length: fl.u32("nameDataLen")?,
            max_index_columns: fl.u32("indexMaxKeys")?,
            max_toast_chunk_size: fl.u32("toast_max_chunk_size")?,
            large_object_chunk_size: fl.u32("loblksize")?,
            float4_pass_by_value: fl.optional("float4ByVal").map(|x| x != 0),
            float8_pass_by_value: fl.bool("float8ByVal")?,
            data_checksum_version: fl.u32("data_checksum_version")?,
            default_char_signedness: fl.optional("default_char_signedness").map(|x| x != 0),
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

    /// Build a minimal synthetic file for the layout of `v`.
    fn synthetic_of(v: &PgVersion) -> Vec<u8> {
        let l = Layout::of(v.control);
        let mut b = vec![0u8; CONTROL_FILE_SIZE];
        let mut set = |path: &str, value: u64| {
            let (off, ty) = l.field(path).unwrap();
            b[off..off + ty.size()].copy_from_slice(&value.to_le_bytes()[..ty.size()]);
        };
        set("system_identifier", 0x1234_5678_9abc_def0);
        set("pg_control_version", u64::from(v.control_version));
        set("catalog_version_no", u64::from(v.catalog_version));
        set("state", 5);
        set("minRecoveryPoint", 0x76D6CA8);
        set("xlog_seg_size", 16 << 20);
        set("blcksz", 8192);
        set("xlog_blcksz", 8192);
        set("floatFormat", 1234567.0f64.to_bits());
        set("checkPointCopy.ThisTimeLineID", 1);
        let crc_at = l.offset("crc").unwrap();
        let crc = compute_crc(&b, crc_at);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn synthetic(major: u32) -> Vec<u8> {
        synthetic_of(version::by_major(major).unwrap())
    }

    #[test]
    fn computed_offsets_are_the_documented_ones() {
        // From offsetof() on x86_64 (shared/pg-facts.md, 1.4).
        let want: &[(u32, usize, usize, usize, usize)] = &[
            // major, checkPointCopy, minRecoveryPoint, crc, sizeof
            (10, 48, 136, 288, 296),
            (11, 40, 128, 280, 288),
            (12, 40, 136, 288, 296),
            (13, 40, 136, 288, 296),
            (17, 40, 136, 288, 296),
            (18, 40, 136, 292, 296),
        ];
        for &(major, cp, mrp, crc, size) in want {
            let l = Layout::of(version::by_major(major).unwrap().control);
            assert_eq!(l.offset("checkPointCopy"), Some(cp), "{major}");
            assert_eq!(l.offset("minRecoveryPoint"), Some(mrp), "{major}");
            assert_eq!(l.offset("crc"), Some(crc), "{major}");
            assert_eq!(l.size(), size, "{major}");
        }
        let l = Layout::of(version::by_major(12).unwrap().control);
        assert_eq!(l.offset("checkPointCopy.time"), Some(40 + 64));
        assert_eq!(l.offset("floatFormat"), Some(208));
        let l = Layout::of(version::by_major(18).unwrap().control);
        assert_eq!(l.offset("mock_authentication_nonce"), Some(257));
    }

    /// Adding a major whose structs change is one new row with one new
    /// field list: here a layout like the pre-release 19 headers', with new
    /// checkpoint fields and MultiXactOffset widened to 64 bits. Every
    /// offset after the change moves, and the parser follows.
    #[test]
    fn a_synthetic_major_with_a_changed_layout() {
        use crate::pg::layout::*;
        const CHECKPOINT_NEXT: &[Field] = &[
            f("redo", XLOG_REC_PTR),
            f("ThisTimeLineID", TIME_LINE_ID),
            f("PrevTimeLineID", TIME_LINE_ID),
            f("fullPageWrites", CType::Bool),
            f("wal_level", CType::Int32),
            f("logicalDecodingEnabled", CType::Bool),
            f("nextXid", FULL_TRANSACTION_ID),
            f("nextOid", OID),
            f("nextMulti", MULTI_XACT_ID),
            f("nextMultiOffset", CType::Uint64),
            f("oldestXid", TRANSACTION_ID),
            f("oldestXidDB", OID),
            f("oldestMulti", MULTI_XACT_ID),
            f("oldestMultiDB", OID),
            f("time", PG_TIME_T),
            f("oldestCommitTsXid", TRANSACTION_ID),
            f("newestCommitTsXid", TRANSACTION_ID),
            f("oldestActiveXid", TRANSACTION_ID),
            f("dataChecksumState", CType::Uint32),
        ];
        let newest = &version::VERSIONS[0];
        let fields: Vec<Field> =
            newest
                .control
                .iter()
                .map(|fl| {
                    if fl.name == "checkPointCopy" {
                        f("checkPointCopy", CType::Struct(CHECKPOINT_NEXT))
                    } else {
                        *fl
                    }
                })
                .collect();
        let next = PgVersion {
            major: newest.major + 1,
            control_version: newest.control_version + 100,
            catalog_version: newest.catalog_version + 100_000,
            control: Box::leak(fields.into_boxed_slice()),
            ..*newest
        };
        let old = Layout::of(newest.control);
        let new = Layout::of(next.control);
        assert!(new.offset("minRecoveryPoint") > old.offset("minRecoveryPoint"), "later fields moved");
        // The new bool at 24 pushes nextXid to 32; the widened offset then
        // aligns to 48 within the checkpoint copy (at 40).
        assert_eq!(new.offset("checkPointCopy.nextXid"), Some(40 + 32));
        assert_eq!(new.offset("checkPointCopy.nextMultiOffset"), Some(40 + 48));
        let mut b = synthetic_of(&next);
        let (off, _) = new.field("checkPointCopy.nextMultiOffset").unwrap();
        b[off..off + 8].copy_from_slice(&5_000_000_000u64.to_le_bytes());
        let crc_at = new.offset("crc").unwrap();
        let crc = compute_crc(&b, crc_at);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        let c = ControlFile::parse_as(&b, &next).unwrap();
        assert!(c.crc_ok);
        assert_eq!(c.next_multi_offset, 5_000_000_000, "a 64-bit MultiXactOffset");
        assert_eq!(c.min_recovery_lsn, Lsn(0x76D6CA8));
        assert_eq!(c.pg_major, newest.major + 1);
        // Read with the old layout, the same bytes are not this file.
        assert_ne!(ControlFile::parse_as(&b, newest).map(|c| c.min_recovery_lsn).ok(), Some(Lsn(0x76D6CA8)));
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
