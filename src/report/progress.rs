//! Progress on stderr, for [`crate::observe`]: bars on a terminal, a plain
//! line every few seconds in CI logs, or nothing with `-q`.
//!
//! Rates and ETAs come from the last ten seconds of progress, not from the
//! whole run, and a meter that has not moved for a few seconds says
//! "stalled Ns" instead of an ETA that would claim the end is near.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::observe::{Level, Meter, Sink, Unit};

/// How progress shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bars redrawn in place (stderr is a terminal).
    Bars,
    /// A plain line every [`LINE_EVERY`] (CI logs).
    Lines,
    /// Nothing but warnings (`-q`).
    Silent,
}

/// How often a plain progress line is written.
pub const LINE_EVERY: Duration = Duration::from_secs(5);
/// No progress for this long shows as a stall, not an ETA.
const STALL_AFTER: Duration = Duration::from_secs(3);
/// The window rates are measured over.
const WINDOW: Duration = Duration::from_secs(10);

/// The sink the binary installs.
pub struct StderrSink {
    mode: Mode,
    /// Notes below this level are not shown.
    min_level: Level,
    multi: MultiProgress,
}

impl StderrSink {
    /// Bars on a terminal, lines otherwise; `-q` silences, `-v` shows debug
    /// notes.
    pub fn new(quiet: bool, verbose: bool) -> StderrSink {
        let mode = if quiet {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        let min_level = match (quiet, verbose) {
            (true, _) => Level::Warn,
            (false, true) => Level::Debug,
            (false, false) => Level::Info,
        };
        StderrSink { mode, min_level, multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()) }
    }

    pub fn shared(quiet: bool, verbose: bool) -> Arc<dyn Sink> {
        Arc::new(StderrSink::new(quiet, verbose))
    }
}

impl Sink for StderrSink {
    fn start(&self, what: &str, unit: Unit, total: u64) -> Box<dyn Meter> {
        let bar = (self.mode == Mode::Bars).then(|| {
            let pb = self.multi.add(ProgressBar::new(total));
            // 8 + 2 + 20 + 2 + at most MSG_WIDTH (48): fits 80 columns.
            let style = ProgressStyle::with_template("{prefix:>8} [{bar:20}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            pb.set_style(style);
            pb.set_prefix(clip(what, 8));
            pb
        });
        Box::new(Tracker {
            what: what.to_string(),
            unit,
            total,
            mode: self.mode,
            bar,
            state: Mutex::new(State::new(Instant::now())),
        })
    }

    fn note(&self, level: Level, text: &str) {
        if level < self.min_level {
            return;
        }
        let line = format!("pgdrill: {text}");
        if self.mode == Mode::Bars {
            self.multi.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }
}

/// Where a meter stands.
struct State {
    started: Instant,
    done: u64,
    detail: String,
    window: VecDeque<(Instant, u64)>,
    last_move: Instant,
    last_line: Instant,
    finished: bool,
}

impl State {
    fn new(now: Instant) -> State {
        State {
            started: now,
            done: 0,
            detail: String::new(),
            window: VecDeque::from([(now, 0)]),
            last_move: now,
            last_line: now,
            finished: false,
        }
    }

    fn record(&mut self, now: Instant, done: u64) {
        if done != self.done {
            self.last_move = now;
        }
        self.done = done;
        self.window.push_back((now, done));
        while self.window.len() > 2 && self.window.front().is_some_and(|(t, _)| now.duration_since(*t) > WINDOW) {
            self.window.pop_front();
        }
    }

    /// Bytes per second over the window.
    fn rate(&self, now: Instant) -> f64 {
        let Some(&(t0, d0)) = self.window.front() else { return 0.0 };
        let secs = now.duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.done.saturating_sub(d0) as f64 / secs
    }
}

/// The widest status a bar shows: `{prefix:>8} [{bar:20}] ` takes 32 of
/// 80 columns.
pub const MSG_WIDTH: usize = 48;

/// Cut `s` to `width` characters, marking the cut with `...`.
fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// The status text of a meter: where it is, its rate, and its ETA or stall.
fn status(unit: Unit, total: u64, st: &State, now: Instant) -> String {
    let position = match unit {
        Unit::Wal if !st.detail.is_empty() => st.detail.clone(),
        _ if total > 0 => format!("{}/{}", super::bytes(st.done), super::bytes(total)),
        _ => super::bytes(st.done),
    };
    let rate = st.rate(now);
    let still = now.duration_since(st.last_move);
    let tail = if still >= STALL_AFTER && st.done < total {
        format!("stalled {}s", still.as_secs())
    } else if rate > 0.0 && total > st.done {
        format!("eta {}s", ((total - st.done) as f64 / rate).ceil() as u64)
    } else {
        String::new()
    };
    let mut s = format!("{position} {}/s {tail}", super::bytes(rate as u64));
    s.truncate(s.trim_end().len());
    s
}

struct Tracker {
    what: String,
    unit: Unit,
    total: u64,
    mode: Mode,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

impl Tracker {
    fn update(&self, f: impl FnOnce(&mut State, Instant)) {
        let now = Instant::now();
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        f(&mut st, now);
        match self.mode {
            Mode::Bars => {
                if let Some(b) = &self.bar {
                    b.set_position(st.done.min(self.total));
                    b.set_message(clip(&status(self.unit, self.total, &st, now), MSG_WIDTH));
                }
            }
            Mode::Lines if now.duration_since(st.last_line) >= LINE_EVERY => {
                st.last_line = now;
                eprintln!("pgdrill: {}: {}", self.what, clip(&status(self.unit, self.total, &st, now), MSG_WIDTH));
            }
            _ => {}
        }
    }
}

impl Meter for Tracker {
    fn set_position(&self, done: u64) {
        self.update(|st, now| st.record(now, done));
    }

    fn inc(&self, n: u64) {
        self.update(|st, now| {
            let d = st.done.saturating_add(n);
            st.record(now, d)
        });
    }

    fn set_detail(&self, detail: &str) {
        self.update(|st, _| st.detail = detail.to_string());
    }

    fn finish(&self) {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if st.finished {
            return;
        }
        st.finished = true;
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        // In a log, a step that took long enough to report says it ended.
        if self.mode == Mode::Lines && st.started.elapsed() >= LINE_EVERY {
            eprintln!(
                "pgdrill: {}: done, {} in {:.1} s",
                self.what,
                super::bytes(st.done),
                st.started.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_while_moving_and_stalled_when_not() {
        let t0 = Instant::now();
        let mut st = State::new(t0);
        st.record(t0 + Duration::from_secs(1), 10 << 20);
        st.record(t0 + Duration::from_secs(2), 20 << 20);
        let s = status(Unit::Bytes, 40 << 20, &st, t0 + Duration::from_secs(2));
        assert_eq!(s, "20.0 MiB/40.0 MiB 10.0 MiB/s eta 2s");
        // No progress for 5 s: no ETA claims the end is near.
        let s = status(Unit::Bytes, 40 << 20, &st, t0 + Duration::from_secs(7));
        assert!(s.ends_with("stalled 5s"), "{s}");
        assert!(!s.contains("eta"), "{s}");
        // Replay shows its LSNs instead of byte counts.
        st.detail = "0/3000000 of 0/4000000".into();
        let s = status(Unit::Wal, 40 << 20, &st, t0 + Duration::from_secs(2));
        assert!(s.starts_with("0/3000000 of 0/4000000 "), "{s}");
        assert!(8 + 2 + 20 + 2 + s.len() <= 80, "{s}");
    }

    #[test]
    fn a_bar_line_fits_80_columns_whatever_it_shows() {
        let t0 = Instant::now();
        let mut st = State::new(t0);
        st.record(t0 + Duration::from_secs(1), u64::MAX / 4);
        st.detail = "FFFFFFFF/FFFFFFFF of FFFFFFFF/FFFFFFFF on timeline 4294967295".into();
        for unit in [Unit::Bytes, Unit::Wal] {
            for later in [1, 99_999] {
                let s = clip(&status(unit, u64::MAX, &st, t0 + Duration::from_secs(later)), MSG_WIDTH);
                // "{prefix:>8} [{bar:20}] {msg}", the prefix clipped to 8.
                let line = format!("{:>8} [{}] {s}", clip("restore-long-name", 8), "=".repeat(20));
                assert!(line.chars().count() <= 80, "{line}");
                assert!(!line.ends_with(' '), "{line:?}");
            }
        }
        assert_eq!(clip("abcdef", 5), "ab...");
        assert_eq!(clip("abc", 5), "abc");
    }

    #[test]
    fn finished_work_shows_no_eta() {
        let t0 = Instant::now();
        let mut st = State::new(t0);
        st.record(t0 + Duration::from_secs(1), 100);
        let s = status(Unit::Bytes, 100, &st, t0 + Duration::from_secs(9));
        assert!(!s.contains("stalled") && !s.contains("eta"), "{s}");
    }
}
