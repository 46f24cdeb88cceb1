//! Writing a restored data directory's recovery configuration.
//!
//! - 10–11: `recovery.conf` holds the recovery settings and `standby_mode`;
//!   other settings go to `postgresql.auto.conf`.
//! - 12+: `standby.signal` or `recovery.signal` turns recovery on, and every
//!   setting goes to `postgresql.auto.conf`. Because settings there are
//!   ordinary ones, whatever the standby's own postgresql.conf says (its
//!   primary_conninfo, restore_command, recovery targets, cleanup commands)
//!   would still apply, so we override each of them explicitly.
//!
//! postgresql.auto.conf is read after postgresql.conf, so its values win.
//!
//! Restore, the gate and the test ground all write recovery settings, so this
//! module sits below them. Every file operation goes through a
//! [`Dir`](crate::safefs::Dir) handle: the data directory belongs to the
//! server's OS user, and root must not follow a link planted there.

use std::path::Path;

use crate::error::{Error, Result};
use crate::pg::conf;
use crate::pg::version::{PgVersion, RecoveryStyle};
use crate::pg::{Lsn, TimelineId};
use crate::safefs::Dir;
use crate::server::OsUser;

/// Files that carry recovery state from the source and must go.
pub const RECOVERY_FILES: &[&str] = &["standby.signal", "recovery.signal", "recovery.conf", "recovery.done"];

/// Settings that exist only in recovery.conf on 10–11.
const RECOVERY_CONF_KEYS: &[&str] = &[
    "restore_command",
    "archive_cleanup_command",
    "recovery_end_command",
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "recovery_target_action",
    "standby_mode",
    "primary_conninfo",
    "primary_slot_name",
    "trigger_file",
    "recovery_min_apply_delay",
];

/// The recovery targets; at most one may be set.
const TARGET_KEYS: &[&str] =
    &["recovery_target", "recovery_target_lsn", "recovery_target_name", "recovery_target_time", "recovery_target_xid"];

/// The recovery target settings: every other target emptied, then the one
/// that applies last. PostgreSQL's assign hooks reject any
/// `recovery_target*` assignment, even an empty one, made after another
/// target is set ("multiple recovery targets specified"), so the real one
/// must come after the empty ones.
fn target_settings(target: Option<&Target>, timeline: TimelineChoice) -> Vec<(&'static str, String)> {
    let (key, value) = target.map_or(("recovery_target_lsn", String::new()), |t| t.at.setting());
    let mut out: Vec<(&'static str, String)> =
        TARGET_KEYS.iter().filter(|k| **k != key).map(|k| (*k, String::new())).collect();
    out.push((key, value));
    let (inclusive, action) = match target {
        Some(t) => (t.inclusive, t.action),
        None => (true, TargetAction::Pause),
    };
    out.push(("recovery_target_inclusive", if inclusive { "on" } else { "off" }.into()));
    out.push(("recovery_target_action", action.as_str().into()));
    out.push((
        "recovery_target_timeline",
        match timeline {
            TimelineChoice::Latest => "latest".into(),
            TimelineChoice::Id(t) => t.0.to_string(),
        },
    ));
    out
}

/// What the restored server does when it reaches its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetAction {
    Pause,
    Promote,
    Shutdown,
}

impl TargetAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// Where replay stops: one of PostgreSQL's recovery targets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum StopAt {
    /// `recovery_target_lsn`.
    Lsn(Lsn),
    /// `recovery_target_time`, as [`crate::pg::timestamp::render`] writes it.
    Time(String),
    /// `recovery_target_xid`.
    Xid(u64),
    /// `recovery_target_name`: a restore point.
    Name(String),
}

impl StopAt {
    /// The setting and its value.
    pub fn setting(&self) -> (&'static str, String) {
        match self {
            StopAt::Lsn(l) => ("recovery_target_lsn", l.to_string()),
            StopAt::Time(t) => ("recovery_target_time", t.clone()),
            StopAt::Xid(x) => ("recovery_target_xid", x.to_string()),
            StopAt::Name(n) => ("recovery_target_name", n.clone()),
        }
    }

    /// For messages: `time 2026-11-29 14:04:05.000000+00:00`.
    pub fn describe(&self) -> String {
        let (k, v) = self.setting();
        format!("{} {v}", k.trim_start_matches("recovery_target_"))
    }
}

/// Stop replay at a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub at: StopAt,
    /// Stop after (true) or before (false) the target record.
    pub inclusive: bool,
    pub action: TargetAction,
}

/// Which timeline to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineChoice {
    Latest,
    Id(TimelineId),
}

/// The whole recovery configuration of a restored copy.
#[derive(Clone, Debug)]
pub struct RecoveryPlan {
    /// standby.signal (keep waiting for WAL) instead of recovery.signal.
    pub standby_mode: bool,
    pub restore_command: Option<String>,
    pub primary_conninfo: Option<String>,
    pub target: Option<Target>,
    pub timeline: TimelineChoice,
    /// Keep the copy away from production: no archiving, no synchronous
    /// standbys to wait for, no cleanup of the production archive.
    pub sandbox: bool,
    pub port: Option<u16>,
    pub hot_standby: bool,
}

/// Sorted settings for a major: what goes in recovery.conf (10–11 only) and
/// what goes in postgresql.auto.conf, plus the keys to drop there.
pub struct Rendered {
    pub recovery_conf: Option<String>,
    pub auto_remove: Vec<&'static str>,
    pub auto_add: Vec<(&'static str, String)>,
    pub signal: Option<&'static str>,
}

/// Decide every setting for `plan` on `version`. Pure.
pub fn render(version: &PgVersion, plan: &RecoveryPlan) -> Rendered {
    // The recovery settings, with neutral values where we want nothing, so
    // that inherited values are overridden rather than left to fight.
    let mut rec: Vec<(&'static str, String)> = vec![
        ("restore_command", plan.restore_command.clone().unwrap_or_default()),
        ("primary_conninfo", plan.primary_conninfo.clone().unwrap_or_default()),
        ("primary_slot_name", String::new()),
        ("archive_cleanup_command", String::new()),
        ("recovery_end_command", String::new()),
        ("recovery_min_apply_delay", "0".into()),
    ];
    rec.extend(target_settings(plan.target.as_ref(), plan.timeline));
    if let Some(trigger) = version.promote_trigger_setting {
        rec.push((trigger, String::new()));
    }

    let mut other: Vec<(&'static str, String)> = Vec::new();
    if let Some(p) = plan.port {
        other.push(("port", p.to_string()));
    }
    if plan.hot_standby {
        other.push(("hot_standby", "on".into()));
    }
    if plan.sandbox {
        other.push(("archive_mode", "off".into()));
        other.push(("synchronous_standby_names", String::new()));
        // A sandbox streaming from production must not hold back its vacuum.
        other.push(("hot_standby_feedback", "off".into()));
    }

    match version.recovery {
        RecoveryStyle::RecoveryConf => {
            // recovery.conf is ours alone: write only what means something.
            let mut text = String::from("# Written by pgdrill restore.\n");
            text.push_str(&format!("standby_mode = {}\n", conf::quote(if plan.standby_mode { "on" } else { "off" })));
            for (k, v) in &rec {
                let empty_target = TARGET_KEYS.contains(k) && v.is_empty();
                let empty_cmd = v.is_empty();
                if empty_target || empty_cmd || *k == "trigger_file" || *k == "recovery_min_apply_delay" {
                    continue;
                }
                text.push_str(&format!("{k} = {}\n", conf::quote(v)));
            }
            Rendered {
                recovery_conf: Some(text),
                auto_remove: RECOVERY_CONF_KEYS.to_vec(),
                auto_add: other,
                signal: None,
            }
        }
        RecoveryStyle::SignalFiles => {
            let mut add = rec;
            add.extend(other);
            Rendered {
                recovery_conf: None,
                auto_remove: vec!["standby_mode", "trigger_file"],
                auto_add: add,
                signal: Some(if plan.standby_mode { "standby.signal" } else { "recovery.signal" }),
            }
        }
    }
}

fn write_owned(dir: &Dir, name: &str, text: &str, owner: Option<&OsUser>) -> Result<()> {
    dir.replace(Path::new(name), text.as_bytes(), 0o600, owner)
        .map_err(|e| Error::io(dir.path().join(name), "write", e))
}

/// A configuration file's text, or `default` if it does not exist.
fn read_or(dir: &Dir, name: &str, default: &str) -> Result<String> {
    match dir.read_optional(Path::new(name)) {
        Ok(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Ok(None) => Ok(default.to_string()),
        Err(e) => Err(Error::ReadInput { path: dir.path().join(name), source: e }),
    }
}

/// Remove recovery files that came with the backup; returns their names.
pub fn clear(dir: &Dir) -> Result<Vec<&'static str>> {
    let mut removed = Vec::new();
    for f in RECOVERY_FILES {
        let exists = dir.meta_optional(Path::new(f)).map_err(|e| Error::io(dir.path().join(f), "stat", e))?;
        if exists.is_some() {
            dir.remove_file(Path::new(f)).map_err(|e| Error::io(dir.path().join(f), "remove", e))?;
            removed.push(*f);
        }
    }
    Ok(removed)
}

/// Write the recovery configuration of `plan` into the data directory `dir`.
pub fn write(dir: &Dir, version: &PgVersion, plan: &RecoveryPlan, owner: Option<&OsUser>) -> Result<()> {
    clear(dir)?;
    let r = render(version, plan);
    let current = read_or(dir, "postgresql.auto.conf", conf::AUTO_CONF_HEADER)?;
    let text = conf::replace_settings(&current, &r.auto_remove, &r.auto_add, "recovery settings written by pgdrill");
    write_owned(dir, "postgresql.auto.conf", &text, owner)?;
    if let Some(rc) = &r.recovery_conf {
        write_owned(dir, "recovery.conf", rc, owner)?;
    }
    if let Some(sig) = r.signal {
        write_owned(dir, sig, "", owner)?;
    }
    Ok(())
}

/// Settings the gate pins in postgresql.auto.conf on every major: the gate
/// reads the server's log, so its messages must be PostgreSQL's own English
/// whatever language the backup's configuration chose.
pub const GATE_SETTINGS: &[(&str, &str)] = &[("lc_messages", "C")];

/// Set only the recovery target (and timeline), keeping the WAL sources
/// someone else configured; make sure recovery runs in standby mode if no
/// recovery file is present; pin [`GATE_SETTINGS`]. Used by the gate on
/// restored directories.
pub fn set_target(
    dir: &Dir,
    version: &PgVersion,
    target: Option<Target>,
    timeline: TimelineChoice,
    owner: Option<&OsUser>,
) -> Result<()> {
    let add = target_settings(target.as_ref(), timeline);
    let pinned: Vec<(&str, String)> = GATE_SETTINGS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let auto = read_or(dir, "postgresql.auto.conf", conf::AUTO_CONF_HEADER)?;
    match version.recovery {
        RecoveryStyle::RecoveryConf => {
            let current = read_or(dir, "recovery.conf", "standby_mode = 'on'\n")?;
            // recovery.conf rejects empty targets: leave unset ones out.
            let add: Vec<(&str, String)> = add.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            let text = conf::replace_settings(&current, TARGET_KEYS, &add, "recovery target set by the pgdrill gate");
            write_owned(dir, "recovery.conf", &text, owner)?;
            let auto = conf::replace_settings(&auto, &[], &pinned, "set by the pgdrill gate");
            write_owned(dir, "postgresql.auto.conf", &auto, owner)
        }
        RecoveryStyle::SignalFiles => {
            let mut all = add;
            all.extend(pinned);
            let text = conf::replace_settings(&auto, &[], &all, "recovery target set by the pgdrill gate");
            write_owned(dir, "postgresql.auto.conf", &text, owner)?;
            let signal = |n: &str| dir.meta_optional(Path::new(n)).map(|m| m.is_some());
            let has_signal = signal("standby.signal").and_then(|a| signal("recovery.signal").map(|b| a || b));
            if !has_signal.map_err(|e| Error::io(dir.path(), "stat", e))? {
                write_owned(dir, "standby.signal", "", owner)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::version::by_major;
    use std::fs;

    fn plan() -> RecoveryPlan {
        RecoveryPlan {
            standby_mode: true,
            restore_command: Some("cp /archive/%f %p".into()),
            primary_conninfo: None,
            target: Some(Target { at: StopAt::Lsn(Lsn(0x76D6CA8)), inclusive: false, action: TargetAction::Pause }),
            timeline: TimelineChoice::Id(TimelineId(1)),
            sandbox: true,
            port: Some(6000),
            hot_standby: true,
        }
    }

    #[test]
    fn pg11_uses_recovery_conf() {
        let r = render(by_major(11).unwrap(), &plan());
        let rc = r.recovery_conf.unwrap();
        assert!(rc.contains("standby_mode = 'on'\n"));
        assert!(rc.contains("restore_command = 'cp /archive/%f %p'\n"));
        assert!(rc.contains("recovery_target_lsn = '0/76D6CA8'\n"));
        assert!(rc.contains("recovery_target_inclusive = 'off'\n"));
        assert!(rc.contains("recovery_target_timeline = '1'\n"));
        assert!(!rc.contains("primary_conninfo"));
        assert!(!rc.contains("recovery_target_xid"));
        assert_eq!(r.signal, None);
        assert!(r.auto_add.contains(&("archive_mode", "off".into())));
        assert!(!r.auto_add.iter().any(|(k, _)| *k == "restore_command"));
    }

    #[test]
    fn pg15_overrides_everything_in_auto_conf() {
        let r = render(by_major(15).unwrap(), &plan());
        assert_eq!(r.signal, Some("standby.signal"));
        let get = |k: &str| r.auto_add.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("primary_conninfo").as_deref(), Some(""));
        assert_eq!(get("archive_cleanup_command").as_deref(), Some(""));
        assert_eq!(get("recovery_target_xid").as_deref(), Some(""));
        assert_eq!(get("recovery_target_lsn").as_deref(), Some("0/76D6CA8"));
        assert_eq!(get("promote_trigger_file").as_deref(), Some(""));
        assert_eq!(get("port").as_deref(), Some("6000"));
        // The real target comes after every emptied one.
        let pos = |k: &str| r.auto_add.iter().position(|(n, _)| *n == k).unwrap();
        for k in TARGET_KEYS.iter().filter(|k| **k != "recovery_target_lsn") {
            assert!(pos(k) < pos("recovery_target_lsn"), "{k}");
        }
        // 16 has no promote_trigger_file: setting it would stop the server.
        let r16 = render(by_major(16).unwrap(), &plan());
        assert!(!r16.auto_add.iter().any(|(k, _)| *k == "promote_trigger_file"));
    }

    #[test]
    fn a_named_target_comes_after_every_emptied_one() {
        let mut p = plan();
        p.target =
            Some(Target { at: StopAt::Name("before_drop".into()), inclusive: true, action: TargetAction::Pause });
        let r = render(by_major(15).unwrap(), &p);
        let pos = |k: &str| r.auto_add.iter().position(|(n, _)| *n == k).unwrap();
        for k in TARGET_KEYS.iter().filter(|k| **k != "recovery_target_name") {
            assert!(pos(k) < pos("recovery_target_name"), "{k}");
            assert_eq!(r.auto_add[pos(k)].1, "", "{k} is emptied");
        }
        assert_eq!(r.auto_add[pos("recovery_target_name")].1, "before_drop");
        assert_eq!(r.auto_add[pos("recovery_target_inclusive")].1, "on");
        let rc = render(by_major(11).unwrap(), &p).recovery_conf.unwrap();
        assert!(rc.contains("recovery_target_name = 'before_drop'"), "{rc}");
        assert!(!rc.contains("recovery_target_lsn"), "{rc}");
    }

    #[test]
    fn writes_files_and_removes_stale_ones() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("standby.signal"), "").unwrap();
        fs::write(d.path().join("recovery.done"), "x").unwrap();
        fs::write(d.path().join("postgresql.auto.conf"), "primary_conninfo = 'host=prod'\nwork_mem = '8MB'\n").unwrap();
        let mut p = plan();
        p.standby_mode = false;
        write(&Dir::open(d.path()).unwrap(), by_major(14).unwrap(), &p, None).unwrap();
        assert!(!d.path().join("standby.signal").exists());
        assert!(!d.path().join("recovery.done").exists());
        assert!(d.path().join("recovery.signal").exists());
        let auto = fs::read_to_string(d.path().join("postgresql.auto.conf")).unwrap();
        assert_eq!(conf::get(&auto, "primary_conninfo").as_deref(), Some(""));
        assert_eq!(conf::get(&auto, "work_mem").as_deref(), Some("8MB"));
        assert_eq!(auto.matches("primary_conninfo").count(), 1);
    }

    #[test]
    fn set_target_keeps_sources() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("postgresql.auto.conf"),
            "restore_command = 'cp /a/%f %p'\nrecovery_target_xid = '5'\n",
        )
        .unwrap();
        let t = Target { at: StopAt::Lsn(Lsn(0x300)), inclusive: false, action: TargetAction::Pause };
        set_target(&Dir::open(d.path()).unwrap(), by_major(16).unwrap(), Some(t.clone()), TimelineChoice::Latest, None)
            .unwrap();
        let auto = fs::read_to_string(d.path().join("postgresql.auto.conf")).unwrap();
        assert_eq!(conf::get(&auto, "restore_command").as_deref(), Some("cp /a/%f %p"));
        assert_eq!(conf::get(&auto, "recovery_target_xid").as_deref(), Some(""));
        assert_eq!(conf::get(&auto, "recovery_target_lsn").as_deref(), Some("0/300"));
        assert!(d.path().join("standby.signal").exists());
        assert_eq!(conf::get(&auto, "lc_messages").as_deref(), Some("C"));
        // 10-11: the target lands in recovery.conf, sources stay.
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("recovery.conf"),
            "standby_mode = 'on'\nrestore_command = 'x'\nrecovery_target_name = 'n'\n",
        )
        .unwrap();
        set_target(
            &Dir::open(d.path()).unwrap(),
            by_major(10).unwrap(),
            Some(t),
            TimelineChoice::Id(TimelineId(2)),
            None,
        )
        .unwrap();
        let rc = fs::read_to_string(d.path().join("recovery.conf")).unwrap();
        assert_eq!(conf::get(&rc, "restore_command").as_deref(), Some("x"));
        assert_eq!(conf::get(&rc, "recovery_target_name"), None);
        assert_eq!(conf::get(&rc, "recovery_target_lsn").as_deref(), Some("0/300"));
        assert_eq!(conf::get(&rc, "recovery_target_timeline").as_deref(), Some("2"));
        let auto = fs::read_to_string(d.path().join("postgresql.auto.conf")).unwrap();
        assert_eq!(conf::get(&auto, "lc_messages").as_deref(), Some("C"));
    }
}
