//! SIGINT/SIGTERM handling for long operations.
//!
//! The first signal sets a flag that copy loops and the gate's monitor poll,
//! so they can leave things safe (a server stopped, access still shut). A
//! second SIGINT or SIGTERM exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the handlers (once per process). The binary calls this; library
/// users that do not are simply never interrupted.
pub fn install() {
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Order matters: the conditional exit checks the flag before the
            // second registration sets it.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
        }
        flag
    });
}

/// Whether an interrupt was requested.
pub fn interrupted() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}
