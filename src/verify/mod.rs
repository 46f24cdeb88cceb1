//! `pgdrill verify` (being written).

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};

/// A validated verify request.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub path: PathBuf,
    pub wal_archive: Option<PathBuf>,
    pub no_wal: bool,
    pub jobs: usize,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
}

impl VerifyReport {
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.ok)
    }
}

pub fn run(_cfg: &VerifyConfig) -> Result<VerifyReport> {
    Err(Error::usage("verify is being written", None))
}
