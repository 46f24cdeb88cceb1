//! The table of supported PostgreSQL majors.
//!
//! Everything that differs between majors lives in [`VERSIONS`]: the
//! pg_control layout and version numbers, the WAL page magic, the SQL function
//! names of the backup API, and how recovery is configured. Code elsewhere asks
//! the table instead of comparing major numbers.
//!
//! # How to add a version
//!
//! 1. Read the new release's `src/include/catalog/pg_control.h`,
//!    `src/include/catalog/catversion.h` and
//!    `src/include/access/xlog_internal.h` (`XLOG_PAGE_MAGIC`).
//! 2. If `ControlFileData` or `CheckPoint` changed, add a new
//!    [`ControlLayout`] constant (offsets from `offsetof` on x86_64) and its CRC
//!    offset; otherwise reuse the previous one.
//! 3. Add a [`PgVersion`] row at the TOP of [`VERSIONS`] (newest first), with
//!    the release's `PG_CONTROL_VERSION`, `CATALOG_VERSION_NO` and magic, and
//!    check each behaviour flag against the release notes (backup functions,
//!    label lines, recovery settings, manifest version).
//! 4. Run `just pg <major>` and `just testdata`, commit the new
//!    `testdata/control/pg<major>/` sample, and run the test matrix on it.

/// Byte offsets of the fields of `CheckPoint`, relative to its start.
#[derive(Debug)]
pub struct CheckPointLayout {
    pub redo: usize,
    pub this_tli: usize,
    pub prev_tli: usize,
    pub full_page_writes: usize,
    /// `wal_level` inside the checkpoint record copy (17+).
    pub wal_level: Option<usize>,
    /// 10–11: a u32 epoch before a u32 xid. 12+: none (the xid is 64-bit).
    pub next_xid_epoch: Option<usize>,
    pub next_xid: usize,
    /// True when `next_xid` is a 64-bit `FullTransactionId` (12+).
    pub next_xid_is_full: bool,
    pub next_oid: usize,
    pub next_multi: usize,
    pub next_multi_offset: usize,
    pub oldest_xid: usize,
    pub oldest_xid_db: usize,
    pub oldest_multi: usize,
    pub oldest_multi_db: usize,
    pub time: usize,
    pub oldest_commit_ts_xid: usize,
    pub newest_commit_ts_xid: usize,
    pub oldest_active_xid: usize,
}

/// Byte offsets of the fields of `ControlFileData` on x86_64.
#[derive(Debug)]
pub struct ControlLayout {
    pub prev_checkpoint: Option<usize>,
    pub checkpoint_copy: usize,
    pub checkpoint: &'static CheckPointLayout,
    pub unlogged_lsn: usize,
    pub min_recovery_point: usize,
    pub min_recovery_tli: usize,
    pub backup_start_point: usize,
    pub backup_end_point: usize,
    pub backup_end_required: usize,
    pub wal_level: usize,
    pub wal_log_hints: usize,
    pub max_connections: usize,
    pub max_worker_processes: usize,
    pub max_wal_senders: Option<usize>,
    pub max_prepared_xacts: usize,
    pub max_locks_per_xact: usize,
    pub track_commit_timestamp: usize,
    pub max_align: usize,
    pub float_format: usize,
    pub blcksz: usize,
    pub relseg_size: usize,
    pub xlog_blcksz: usize,
    pub xlog_seg_size: usize,
    pub name_data_len: usize,
    pub index_max_keys: usize,
    pub toast_max_chunk_size: usize,
    pub loblksize: usize,
    pub float4_by_val: Option<usize>,
    pub float8_by_val: usize,
    pub data_checksum_version: usize,
    pub default_char_signedness: Option<usize>,
    pub mock_auth_nonce: usize,
    /// Where the CRC-32C is stored; it covers bytes `[0, crc)`.
    pub crc: usize,
}

const CHECKPOINT_10: CheckPointLayout = CheckPointLayout {
    redo: 0,
    this_tli: 8,
    prev_tli: 12,
    full_page_writes: 16,
    wal_level: None,
    next_xid_epoch: Some(20),
    next_xid: 24,
    next_xid_is_full: false,
    next_oid: 28,
    next_multi: 32,
    next_multi_offset: 36,
    oldest_xid: 40,
    oldest_xid_db: 44,
    oldest_multi: 48,
    oldest_multi_db: 52,
    time: 56,
    oldest_commit_ts_xid: 64,
    newest_commit_ts_xid: 68,
    oldest_active_xid: 72,
};

const CHECKPOINT_12: CheckPointLayout = CheckPointLayout {
    redo: 0,
    this_tli: 8,
    prev_tli: 12,
    full_page_writes: 16,
    wal_level: None,
    next_xid_epoch: None,
    next_xid: 24,
    next_xid_is_full: true,
    next_oid: 32,
    next_multi: 36,
    next_multi_offset: 40,
    oldest_xid: 44,
    oldest_xid_db: 48,
    oldest_multi: 52,
    oldest_multi_db: 56,
    time: 64,
    oldest_commit_ts_xid: 72,
    newest_commit_ts_xid: 76,
    oldest_active_xid: 80,
};

/// 17 put `wal_level` into former padding; nothing else moved.
const CHECKPOINT_17: CheckPointLayout = CheckPointLayout { wal_level: Some(20), ..CHECKPOINT_12 };

/// PostgreSQL 10 (control version 1002).
const CONTROL_10: ControlLayout = ControlLayout {
    prev_checkpoint: Some(40),
    checkpoint_copy: 48,
    checkpoint: &CHECKPOINT_10,
    unlogged_lsn: 128,
    min_recovery_point: 136,
    min_recovery_tli: 144,
    backup_start_point: 152,
    backup_end_point: 160,
    backup_end_required: 168,
    wal_level: 172,
    wal_log_hints: 176,
    max_connections: 180,
    max_worker_processes: 184,
    max_wal_senders: None,
    max_prepared_xacts: 188,
    max_locks_per_xact: 192,
    track_commit_timestamp: 196,
    max_align: 200,
    float_format: 208,
    blcksz: 216,
    relseg_size: 220,
    xlog_blcksz: 224,
    xlog_seg_size: 228,
    name_data_len: 232,
    index_max_keys: 236,
    toast_max_chunk_size: 240,
    loblksize: 244,
    float4_by_val: Some(248),
    float8_by_val: 249,
    data_checksum_version: 252,
    default_char_signedness: None,
    mock_auth_nonce: 256,
    crc: 288,
};

/// PostgreSQL 11 (1100): `prevCheckPoint` is gone, everything moves up 8.
const CONTROL_11: ControlLayout = ControlLayout {
    prev_checkpoint: None,
    checkpoint_copy: 40,
    checkpoint: &CHECKPOINT_10,
    unlogged_lsn: 120,
    min_recovery_point: 128,
    min_recovery_tli: 136,
    backup_start_point: 144,
    backup_end_point: 152,
    backup_end_required: 160,
    wal_level: 164,
    wal_log_hints: 168,
    max_connections: 172,
    max_worker_processes: 176,
    max_wal_senders: None,
    max_prepared_xacts: 180,
    max_locks_per_xact: 184,
    track_commit_timestamp: 188,
    max_align: 192,
    float_format: 200,
    blcksz: 208,
    relseg_size: 212,
    xlog_blcksz: 216,
    xlog_seg_size: 220,
    name_data_len: 224,
    index_max_keys: 228,
    toast_max_chunk_size: 232,
    loblksize: 236,
    float4_by_val: Some(240),
    float8_by_val: 241,
    data_checksum_version: 244,
    default_char_signedness: None,
    mock_auth_nonce: 248,
    crc: 280,
};

/// PostgreSQL 12 (1201): 64-bit next XID, `max_wal_senders` added.
const CONTROL_12: ControlLayout = ControlLayout {
    prev_checkpoint: None,
    checkpoint_copy: 40,
    checkpoint: &CHECKPOINT_12,
    unlogged_lsn: 128,
    min_recovery_point: 136,
    min_recovery_tli: 144,
    backup_start_point: 152,
    backup_end_point: 160,
    backup_end_required: 168,
    wal_level: 172,
    wal_log_hints: 176,
    max_connections: 180,
    max_worker_processes: 184,
    max_wal_senders: Some(188),
    max_prepared_xacts: 192,
    max_locks_per_xact: 196,
    track_commit_timestamp: 200,
    max_align: 204,
    float_format: 208,
    blcksz: 216,
    relseg_size: 220,
    xlog_blcksz: 224,
    xlog_seg_size: 228,
    name_data_len: 232,
    index_max_keys: 236,
    toast_max_chunk_size: 240,
    loblksize: 244,
    float4_by_val: Some(248),
    float8_by_val: 249,
    data_checksum_version: 252,
    default_char_signedness: None,
    mock_auth_nonce: 256,
    crc: 288,
};

/// PostgreSQL 13–16 (1300): `float4ByVal` removed.
const CONTROL_13: ControlLayout = ControlLayout { float4_by_val: None, float8_by_val: 248, ..CONTROL_12 };

/// PostgreSQL 17 (1700): only the checkpoint copy gained `wal_level`.
const CONTROL_17: ControlLayout = ControlLayout { checkpoint: &CHECKPOINT_17, ..CONTROL_13 };

/// PostgreSQL 18 (1800): `default_char_signedness` pushes the nonce and CRC.
const CONTROL_18: ControlLayout =
    ControlLayout { default_char_signedness: Some(256), mock_auth_nonce: 257, crc: 292, ..CONTROL_17 };

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
    pub control: &'static ControlLayout,
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
        control: &CONTROL_18,
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
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 17,
        control_version: 1700,
        catalog_version: 202406281,
        wal_page_magic: 0xD116,
        control: &CONTROL_17,
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
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 16,
        control_version: 1300,
        catalog_version: 202307071,
        wal_page_magic: 0xD113,
        control: &CONTROL_13,
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
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 15,
        control_version: 1300,
        catalog_version: 202209061,
        wal_page_magic: 0xD110,
        control: &CONTROL_13,
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
        wal_records: &WAL_RECORDS_15,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 14,
        control_version: 1300,
        catalog_version: 202107181,
        wal_page_magic: 0xD10D,
        control: &CONTROL_13,
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
        wal_records: &WAL_RECORDS_14,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_STATE,
    },
    PgVersion {
        major: 13,
        control_version: 1300,
        catalog_version: 202007201,
        wal_page_magic: 0xD106,
        control: &CONTROL_13,
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
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: true,
        replay_paused_sql: PAUSED_OLD,
    },
    PgVersion {
        major: 12,
        control_version: 1201,
        catalog_version: 201909212,
        wal_page_magic: 0xD101,
        control: &CONTROL_12,
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
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: false,
        replay_paused_sql: PAUSED_OLD,
    },
    PgVersion {
        major: 11,
        control_version: 1100,
        catalog_version: 201809051,
        wal_page_magic: 0xD098,
        control: &CONTROL_11,
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
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: false,
        replay_paused_sql: PAUSED_OLD,
    },
    PgVersion {
        major: 10,
        control_version: 1002,
        catalog_version: 201707211,
        wal_page_magic: 0xD097,
        control: &CONTROL_10,
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
        wal_records: &WAL_RECORDS_10,
        basebackup_writes_manifest: false,
        replay_paused_sql: PAUSED_OLD,
    },
];

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
        assert_eq!(supported_range(), (10, 18));
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
            let c = v.control;
            assert!(c.mock_auth_nonce + 32 <= c.crc, "major {}", v.major);
            assert_eq!(c.crc % 4, 0);
            assert!(c.crc + 4 <= 512, "PG_CONTROL_MAX_SAFE_SIZE");
        }
    }
}
