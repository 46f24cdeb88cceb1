//! A write load with an invariant: money moves between accounts, so the sum
//! of all balances never changes, and every transfer also writes some filler
//! so WAL grows quickly.
//!
//! Like `pgbench -c N`, it runs `clients` sessions, each in its own thread,
//! committing one transfer after another (no pause by default). The updates
//! HOT-prune and vacuum the same few pages all the time, so a hot standby
//! replays a steady stream of cleanup records: exactly what cancels a
//! standby query that holds a snapshot for long (see docs/design.md, "Busy
//! standbys").

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::Client;

use crate::conn::ConnSpec;
use crate::error::{Error, Result};

/// Shape of the load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub accounts: i32,
    /// Bytes of filler written per transfer.
    pub filler_bytes: usize,
    /// Pause between transfers (per client).
    pub pause: Duration,
    /// Concurrent sessions, like `pgbench -c`.
    pub clients: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { accounts: 1000, filler_bytes: 2000, pause: Duration::from_millis(0), clients: 1 }
    }
}

impl LoadOptions {
    /// What a DBA's `pgbench -c 2` does to a primary: two sessions
    /// committing as fast as they can, over as many accounts as pgbench's
    /// scale 1 (so the updates dirty hundreds of distinct pages, which is
    /// what makes a restartpoint take its time).
    pub fn pgbench_like() -> LoadOptions {
        LoadOptions { clients: 2, accounts: 100_000, ..LoadOptions::default() }
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
    handles: Vec<JoinHandle<LoadStats>>,
    pub accounts: i32,
}

/// The sum every balance adds up to.
pub const BALANCE: i64 = 1000;

/// The SQL that checks the invariant: returns true when it holds.
pub fn invariant_sql(accounts: i32) -> String {
    format!("SELECT count(*) = {accounts} AND sum(balance) = {} FROM pgdrill_accounts", i64::from(accounts) * BALANCE)
}

/// One client: transfers until told to stop.
fn client_loop(mut c: Client, seed: u64, opts: &LoadOptions, stop: &AtomicBool, total: &AtomicU64) -> LoadStats {
    let mut stats = LoadStats::default();
    let pad = "x".repeat(opts.filler_bytes);
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = opts.accounts;
    while !stop.load(Ordering::Relaxed) {
        let (a, b, amount) = (rng.i32(1..=n), rng.i32(1..=n), rng.i64(1..100));
        // Lock the rows in id order, so two clients never deadlock.
        let (first, second, delta) = if a <= b { (a, b, -amount) } else { (b, a, amount) };
        let sql = format!(
            "BEGIN;
             UPDATE pgdrill_accounts SET balance = balance + ({delta}) WHERE id = {first};
             UPDATE pgdrill_accounts SET balance = balance - ({delta}) WHERE id = {second};
             INSERT INTO pgdrill_filler (pad) VALUES ('{pad}');
             COMMIT;"
        );
        match c.batch_execute(&sql) {
            Ok(()) => {
                stats.transfers += 1;
                total.fetch_add(1, Ordering::Relaxed);
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
}

impl Load {
    /// Create the tables (if needed) and start transferring.
    pub fn start(conn: ConnSpec, opts: LoadOptions) -> Result<Load> {
        let sql_err = |what: &str, e| Error::Sql { target: conn.to_string(), what: what.into(), source: e };
        let mut c = conn.connect()?;
        let setup = format!(
            "CREATE TABLE IF NOT EXISTS pgdrill_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS pgdrill_filler (id bigserial PRIMARY KEY, pad text);
             INSERT INTO pgdrill_accounts SELECT g, {BALANCE} FROM generate_series(1, {}) g ON CONFLICT DO NOTHING;",
            opts.accounts
        );
        c.batch_execute(&setup).map_err(|e| sql_err("load setup", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(AtomicU64::new(0));
        let mut clients = vec![c];
        for _ in 1..opts.clients.max(1) {
            clients.push(conn.connect()?);
        }
        let handles = clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let (s, t, o) = (Arc::clone(&stop), Arc::clone(&transfers), opts.clone());
                std::thread::spawn(move || client_loop(c, 42 + i as u64, &o, &s, &t))
            })
            .collect();
        Ok(Load { stop, transfers, handles, accounts: opts.accounts })
    }

    /// Transfers committed so far.
    pub fn transfers(&self) -> u64 {
        self.transfers.load(Ordering::Relaxed)
    }

    /// Stop and return what was done.
    pub fn stop(mut self) -> LoadStats {
        self.halt()
    }

    fn halt(&mut self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadStats::default();
        for h in self.handles.drain(..) {
            if let Ok(s) = h.join() {
                total.transfers += s.transfers;
                total.errors += s.errors;
            }
        }
        total
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}
