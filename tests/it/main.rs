//! The integration tests: one binary, one module per capability. Every
//! test runs real servers from the test ground (`pgdrill::ground`, feature
//! `demo`) or the pgdrill binary itself; nothing is mocked.
//!
//! `tests/fuzz_parsers.rs` stays a binary of its own: it installs a counting
//! global allocator to bound what the parsers allocate.

mod common;

mod adversity;
mod backup;
mod busy_standby;
mod cli;
mod conn;
mod drill;
mod drill_inputs;
mod faults;
mod formats_backup_tar;
mod formats_restore_tar;
mod formats_tar;
mod formats_wal;
mod fuzz_verify;
mod gate;
mod golden;
mod inspect;
mod layers;
mod objstore;
mod pgbackrest;
mod s3;
mod s3_read;
mod snapshots;
mod targets;
mod verify;
