//! Progress and notes from long work, without printing.
//!
//! Capability modules say how far they are through [`Progress`] handles and
//! tell the user things worth knowing now (a stall, a retry) through
//! [`note`]. They never print: the binary installs a [`Sink`] (in
//! `report::progress`) that draws bars on a terminal, writes plain lines into
//! CI logs, or stays silent. A library user that installs nothing sees
//! nothing.
//!
//! The sink is process-wide, like the signal flag: progress is a property of
//! the process's terminal, not of one call.

use std::sync::{Arc, OnceLock};

/// What a progress counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of files (copy, checksums).
    Bytes,
    /// Bytes of WAL: positions are LSN offsets from a start.
    Wal,
}

/// How much a note matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Shown with `-v` only.
    Debug,
    /// Shown unless `-q`.
    Info,
    /// Shown always.
    Warn,
}

/// One unit of long work as the sink sees it.
pub trait Meter: Send + Sync {
    fn set_position(&self, done: u64);
    fn inc(&self, n: u64);
    /// A short text about where the work is (replay: the LSNs).
    fn set_detail(&self, detail: &str);
    fn finish(&self);
}

/// Where progress and notes go.
pub trait Sink: Send + Sync {
    fn start(&self, what: &str, unit: Unit, total: u64) -> Box<dyn Meter>;
    fn note(&self, level: Level, text: &str);
}

static SINK: OnceLock<Arc<dyn Sink>> = OnceLock::new();

/// Install the process's sink (once; later calls are ignored).
pub fn install(sink: Arc<dyn Sink>) {
    let _ = SINK.set(sink);
}

/// A handle on one unit of long work. Cheap to call from copy loops; a
/// no-op when no sink is installed.
pub struct Progress {
    meter: Option<Box<dyn Meter>>,
}

impl Progress {
    /// A progress nobody sees.
    pub fn hidden() -> Progress {
        Progress { meter: None }
    }

    pub fn set_position(&self, done: u64) {
        if let Some(m) = &self.meter {
            m.set_position(done);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(m) = &self.meter {
            m.inc(n);
        }
    }

    pub fn set_detail(&self, detail: &str) {
        if let Some(m) = &self.meter {
            m.set_detail(detail);
        }
    }

    /// The work is done (or abandoned): remove the bar.
    pub fn finish_and_clear(&self) {
        if let Some(m) = &self.meter {
            m.finish();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_and_clear();
    }
}

/// Start a unit of long work: `what` names it (`backup`, `restore`,
/// `replay`, `verify`), `total` is its size in `unit`s.
pub fn start(what: &str, unit: Unit, total: u64) -> Progress {
    Progress { meter: SINK.get().map(|s| s.start(what, unit, total)) }
}

/// Tell the user something now.
pub fn note(level: Level, text: &str) {
    if let Some(s) = SINK.get() {
        s.note(level, text);
    }
}
