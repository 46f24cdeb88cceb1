//! SIGINT/SIGTERM handling.
//!
//! The first signal sets a flag that copy loops, WAL walks and the gate's
//! monitor poll, so they can leave things safe (a server stopped, access
//! still shut, a partial copy removed) and return [`Error::Interrupted`]. A
//! call blocked in the kernel or on a server (a connection attempt, a long
//! query) does not poll, so a watchdog ends the process with exit 3 about a
//! second after the signal, unless cleanup registered with [`cleaning`] is
//! still running; then it waits for that cleanup (bounded). Every point the
//! watchdog can cut is safe by construction: the gate's lock is on disk, an
//! incomplete backup carries its marker and never sits at its destination,
//! and a restore without pg_control cannot start. A second signal exits at
//! once.
//!
//! [`Error::Interrupted`]: crate::error::Error::Interrupted

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static CLEANING: AtomicUsize = AtomicUsize::new(0);

/// How long a command gets to stop on its own after the first signal.
pub const GRACE: Duration = Duration::from_millis(1200);
/// How long registered cleanup may run after the first signal.
pub const CLEANUP_LIMIT: Duration = Duration::from_secs(60);

/// Install the handlers and the watchdog (once per process). The binary
/// calls this; library users that do not are simply never interrupted.
pub fn install() {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Order matters: the conditional exit checks the flag before the
            // second registration sets it.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        let watched = Arc::clone(&flag);
        let _ = std::thread::Builder::new().name("pgdrill-signal-watchdog".into()).spawn(move || watchdog(&watched));
        flag
    });
}

fn watchdog(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let cleaning = CLEANING.load(Ordering::Relaxed) > 0;
        let limit = if cleaning { CLEANUP_LIMIT } else { GRACE };
        if since.elapsed() >= limit {
            crate::observe::note(crate::observe::Level::Warn, "interrupted by signal; stopped");
            std::process::exit(i32::from(crate::error::EXIT_RUNTIME));
        }
    }
}

/// Whether an interrupt was requested.
pub fn interrupted() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Cleanup that must finish for things to be left tidy (stopping a
/// server, removing a partial copy): the watchdog waits while a guard lives.
pub struct Cleaning(());

/// Register cleanup in progress until the returned guard is dropped.
pub fn cleaning() -> Cleaning {
    CLEANING.fetch_add(1, Ordering::Relaxed);
    Cleaning(())
}

impl Drop for Cleaning {
    fn drop(&mut self) {
        CLEANING.fetch_sub(1, Ordering::Relaxed);
    }
}
