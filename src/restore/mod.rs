//! `pgdrill restore`: copy a backup into a new data directory, write its
//! recovery configuration, and hand it to the gate.

pub mod recovery;
