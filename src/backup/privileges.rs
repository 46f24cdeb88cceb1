//! The functions a backup calls, and the GRANT statements a role without
//! superuser needs for them. `preflight` and `backup` check the same list,
//! built from the same options, before anything is copied.

use serde::Serialize;

use super::session::Session;
use super::Method;
use crate::error::{Error, Result};
use crate::pg::version::PgVersion;

/// Which server a function is called on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum On {
    Standby,
    Primary,
}

/// One function a run calls.
#[derive(Clone, Debug, Serialize)]
pub struct Need {
    pub on: On,
    /// The signature, as `has_function_privilege` and GRANT take it.
    pub function: String,
    pub why: &'static str,
}

fn need(on: On, function: &str, why: &'static str) -> Need {
    Need { on, function: function.to_string(), why }
}

/// Every function a backup with these options calls.
pub fn needs(version: &PgVersion, method: Method, with_primary: bool) -> Vec<Need> {
    let mut v = vec![
        need(On::Standby, "pg_control_system()", "to check the data directory is the standby's"),
        need(On::Standby, "pg_postmaster_start_time()", "to check the data directory is the standby's"),
        need(On::Standby, "pg_tablespace_location(oid)", "to follow only real tablespaces"),
        need(On::Standby, "pg_control_recovery()", "for the timeline at the backup's end"),
    ];
    match method {
        Method::Label => {
            v.push(need(On::Standby, version.backup_start_fn, "to start the backup"));
            v.push(need(On::Standby, version.backup_stop_fn, "to stop the backup"));
            v.push(need(On::Standby, "pg_control_checkpoint()", "to wait for the restartpoint outside a snapshot"));
        }
        Method::Legacy => v.push(need(On::Standby, "pg_last_wal_replay_lsn()", "for the backup's end")),
    }
    if with_primary {
        v.push(need(On::Primary, "pg_control_system()", "to check the primary is the standby's"));
        v.push(need(On::Primary, "pg_switch_wal()", "to push the end segment to the archive"));
    }
    v
}

/// The needs `session` lacks (those on the server it is connected to).
pub fn missing(session: &mut Session, on: On, needs: &[Need]) -> Result<Vec<Need>> {
    let mut out = Vec::new();
    for n in needs.iter().filter(|n| n.on == on) {
        if !session.may_execute(&n.function)? {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// `GRANT EXECUTE ...` for each missing function (run them on the primary:
/// a standby is read-only, and the grants reach it by replication).
pub fn grants(role: &str, missing: &[Need]) -> Vec<String> {
    missing.iter().map(|n| format!("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO {role};", n.function)).collect()
}

/// The statement that lets a role read `data_directory`.
pub fn settings_grant(role: &str) -> String {
    format!("GRANT pg_read_all_settings TO {role};")
}

/// Refuse to start when the role lacks any of them.
pub fn require(session: &mut Session, on: On, needs: &[Need]) -> Result<()> {
    let lacking = missing(session, on, needs)?;
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Error::MissingPrivileges {
        target: session.target.clone(),
        role: session.role.clone(),
        missing: lacking.iter().map(|n| format!("{} ({})", n.function, n.why)).collect::<Vec<_>>().join(", "),
        grants: grants(&session.role, &lacking),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::version::by_major;

    #[test]
    fn the_list_follows_the_options() {
        let v15 = by_major(15).unwrap();
        let v11 = by_major(11).unwrap();
        let f = |n: &[Need]| n.iter().map(|n| n.function.clone()).collect::<Vec<_>>();
        let label = f(&needs(v15, Method::Label, false));
        assert!(label.contains(&"pg_backup_start(text, boolean)".to_string()));
        assert!(!label.iter().any(|s| s.starts_with("pg_switch_wal")));
        let old = f(&needs(v11, Method::Label, true));
        assert!(old.contains(&"pg_start_backup(text, boolean, boolean)".to_string()));
        assert!(old.contains(&"pg_stop_backup(boolean, boolean)".to_string()));
        assert!(old.contains(&"pg_switch_wal()".to_string()));
        let legacy = f(&needs(v15, Method::Legacy, false));
        assert!(legacy.contains(&"pg_last_wal_replay_lsn()".to_string()));
        assert!(!legacy.iter().any(|s| s.starts_with("pg_backup")));
        let g = grants("\"backup\"", &needs(v15, Method::Label, true)[4..5]);
        assert_eq!(g, vec!["GRANT EXECUTE ON FUNCTION pg_catalog.pg_backup_start(text, boolean) TO \"backup\";"]);
    }
}
