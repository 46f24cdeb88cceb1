//! pgdrill: base backups from a PostgreSQL hot standby, restores behind a
//! consistency gate, and offline verification.
//!
//! Layers, bottom up:
//! - [`pg`]: pure parsers of PostgreSQL's files (no I/O);
//! - [`datadir`], [`conn`], [`copy`], [`server`]: reading directories,
//!   connecting, copying files, supervising postgres processes;
//! - [`objstore`]: S3 and S3-compatible object storage, as a blocking API;
//! - one module per capability: [`inspect`], [`backup`], [`restore`],
//!   [`gate`], [`verify`], [`drill`];
//! - [`report`]: tables and JSON;
//! - [`cli`]: clap structs turned into the plain configs above.

#![forbid(unsafe_code)]

pub mod backup;
pub mod cli;
pub mod conn;
pub mod copy;
pub mod datadir;
pub mod drill;
pub mod error;
pub mod gate;
/// Test support: throwaway clusters for the tests and `pgdrill demo`.
#[cfg(feature = "demo")]
pub mod ground;
pub mod inspect;
pub mod objstore;
pub mod observe;
pub mod osuser;
pub mod pg;
pub mod recovery;
pub mod report;
pub mod restore;
pub mod safefs;
pub mod server;
pub mod signals;
pub mod source;
pub mod units;
pub mod verify;
