mod common;
use std::time::{Duration, Instant};
use common::*;
use pgdrill::ground::{Ground, GroundOptions, LoadOptions};

fn defaults_ground() -> Ground {
    let mut opts = GroundOptions::new(bin());
    opts.primary_settings = vec![("shared_buffers".into(), "128MB".into()), ("max_wal_size".into(), "1GB".into()), ("log_checkpoints".into(), "on".into())];
    let mut g = Ground::new(opts).expect("start a primary");
    g.add_standby().expect("build a hot standby");
    g
}

fn redo(c: &mut postgres::Client) -> String {
    c.query_one("SELECT redo_lsn::text || ' ' || checkpoint_lsn::text FROM pg_control_checkpoint()", &[]).unwrap().get(0)
}

#[test]
fn facts() {
    let g = defaults_ground();
    let old = g.bin.major < 15;
    let start = if old { "SELECT pg_start_backup('x', $1, false)::text" } else { "SELECT pg_backup_start('x', $1)::text" };
    let stop = if old { "SELECT lsn::text FROM pg_stop_backup(false, false)" } else { "SELECT lsn::text FROM pg_backup_stop(false)" };
    let load = g.start_load(LoadOptions::pgbench_like()).unwrap();
    sleep_ms(6_000);
    g.primary_exec("CHECKPOINT").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
    let s = g.standby().unwrap();
    let mut a = s.client().unwrap();
    let r0 = redo(&mut a);
    eprintln!("major {} redo before: {r0}", g.bin.major);
    // 1. CHECKPOINT in another session: does it hold a snapshot / get cancelled? time it. (skip first)
    // 2. bounded start
    a.batch_execute("SET statement_timeout = 1000").unwrap();
    let t = Instant::now();
    let e = a.query_one(start, &[&false]).unwrap_err();
    eprintln!("bounded start: {:?} after {:?}", e.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string())), t.elapsed());
    a.batch_execute("RESET statement_timeout").unwrap();
    let e = a.query_one(stop, &[]).unwrap_err();
    eprintln!("stop after cancelled start: {:?}", e.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string())));
    // checkpointer state
    let t = Instant::now();
    loop {
        let r = redo(&mut a);
        let w: Option<String> = a.query_one("SELECT coalesce(wait_event_type,'-') || '/' || coalesce(wait_event,'-') FROM pg_stat_activity WHERE backend_type = 'checkpointer'", &[]).unwrap().get(0);
        if t.elapsed().as_secs() % 10 == 0 { eprintln!("{:?} redo {r} checkpointer {w:?}", t.elapsed()); }
        if r != r0 { eprintln!("restartpoint done after {:?}: {r}", t.elapsed()); break; }
        if t.elapsed() > Duration::from_secs(400) { panic!("no restartpoint"); }
        sleep_ms(1000);
    }
    let t = Instant::now();
    a.batch_execute("SET statement_timeout = 5000").unwrap();
    let r = a.query_one(start, &[&false]);
    eprintln!("second start: {:?} after {:?}", r.as_ref().map(|r| r.get::<_, String>(0)).map_err(|e| e.to_string()), t.elapsed());
    if r.is_ok() { a.query_one(stop, &[]).unwrap(); }
    // CHECKPOINT on standby in session b, measure, while load continues
    let mut b = s.client().unwrap();
    g.primary_exec("CHECKPOINT").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
    let t = Instant::now();
    let r = b.batch_execute("CHECKPOINT");
    eprintln!("standby CHECKPOINT: {:?} after {:?}, redo {}", r.map_err(|e| e.to_string()), t.elapsed(), redo(&mut a));
    let t = Instant::now();
    let r = a.query_one(start, &[&false]);
    eprintln!("start after CHECKPOINT: {:?} after {:?}", r.as_ref().map(|r| r.get::<_, String>(0)).map_err(|e| e.to_string()), t.elapsed());
    let _ = a.query_one(stop, &[]);
    load.stop();
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    eprintln!("{}", log.lines().filter(|l| l.contains("restartpoint") || l.contains("conflict") || l.contains("backup")).collect::<Vec<_>>().join("\n"));
}
