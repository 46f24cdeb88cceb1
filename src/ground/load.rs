//! A write load with an invariant: money moves between accounts, so the sum
//! of all balances never changes, and every transfer also writes some filler
//! so WAL grows quickly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conn::ConnSpec;
use crate::error::{Error, Result};

/// Shape of the load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub accounts: i32,
    /// Bytes of filler written per transfer.
    pub filler_bytes: usize,
    /// Pause between transfers.
    pub pause: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { accounts: 1000, filler_bytes: 2000, pause: Duration::from_millis(0) }
    }
}

/// What the load did.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadStats {
    pub transfers: u64,
    pub errors: u64,
}

/// A running load; stop it with [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    transfers: Arc<AtomicU64>,
    handle: Option<JoinHandle<LoadStats>>,
    pub accounts: i32,
}

/// The sum every balance adds up to.
pub const BALANCE: i64 = 1000;

/// The SQL that checks the invariant: returns true when it holds.
pub fn invariant_sql(accounts: i32) -> String {
    format!("SELECT count(*) = {accounts} AND sum(balance) = {} FROM pgdrill_accounts", i64::from(accounts) * BALANCE)
}

impl Load {
    /// Create the tables (if needed) and start transferring.
    pub fn start(conn: ConnSpec, opts: LoadOptions) -> Result<Load> {
        let mut c = conn.connect()?;
        let setup = format!(
            "CREATE TABLE IF NOT EXISTS pgdrill_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS pgdrill_filler (id bigserial PRIMARY KEY, pad text);
             INSERT INTO pgdrill_accounts SELECT g, {BALANCE} FROM generate_series(1, {}) g ON CONFLICT DO NOTHING;",
            opts.accounts
        );
        c.batch_execute(&setup).map_err(|e| Error::Sql {
            target: conn.to_string(),
            what: "load setup".into(),
            source: e,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(AtomicU64::new(0));
        let (s, t) = (Arc::clone(&stop), Arc::clone(&transfers));
        let n = opts.accounts;
        let handle = std::thread::spawn(move || {
            let mut stats = LoadStats::default();
            let pad = "x".repeat(opts.filler_bytes);
            let mut rng = fastrand::Rng::with_seed(42);
            while !s.load(Ordering::Relaxed) {
                let (a, b, amount) = (rng.i32(1..=n), rng.i32(1..=n), rng.i64(1..100));
                let sql = format!(
                    "BEGIN;
                     UPDATE pgdrill_accounts SET balance = balance - {amount} WHERE id = {a};
                     UPDATE pgdrill_accounts SET balance = balance + {amount} WHERE id = {b};
                     INSERT INTO pgdrill_filler (pad) VALUES ('{pad}');
                     COMMIT;"
                );
                match c.batch_execute(&sql) {
                    Ok(()) => {
                        stats.transfers += 1;
                        t.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.errors += 1;
                        let _ = c.batch_execute("ROLLBACK");
                        if c.is_closed() {
                            break;
                        }
                    }
                }
                if !opts.pause.is_zero() {
                    std::thread::sleep(opts.pause);
                }
            }
            stats
        });
        Ok(Load { stop, transfers, handle: Some(handle), accounts: n })
    }

    /// Transfers committed so far.
    pub fn transfers(&self) -> u64 {
        self.transfers.load(Ordering::Relaxed)
    }

    /// Stop and return what was done.
    pub fn stop(mut self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
