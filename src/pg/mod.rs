//! Pure parsers over PostgreSQL's bytes and text. Nothing here does I/O.

pub mod conf;
pub mod conninfo;
pub mod control;
pub mod history;
pub mod label;
pub mod layout;
pub mod lsn;
pub mod manifest;
pub mod page;
pub mod pgpass;
pub mod relfile;
pub mod s3url;
pub mod timestamp;
pub mod version;
pub mod wal;
pub mod walrecord;

pub use lsn::{Lsn, TimelineId, WalSegSize};
