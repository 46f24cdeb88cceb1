//! Running PostgreSQL's programs: finding binaries, choosing the OS user, and
//! supervising postmasters.
//!
//! Servers run in their own process group. Readiness is a connection that
//! succeeds before a deadline. Stopping is a fast shutdown, then an immediate
//! one, then SIGKILL of the whole group.

mod bin;
mod postmaster;
pub mod probe;

pub use crate::osuser::OsUser;
pub use bin::{parse_version_output, PgBin};
pub use postmaster::{last_log_lines, Postmaster, ServerSpec, StopMode};
pub use probe::running_postmaster;
