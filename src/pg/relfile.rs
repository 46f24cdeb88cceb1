//! Relation file names and where relation files live.
//!
//! Names (`src/common/relpath.c`, and the parsers
//! `parse_filename_for_nontemp_relation()` in
//! `src/backend/storage/file/reinit.c` and `looks_like_temp_rel_name()` in
//! `src/backend/backup/basebackup.c`): a relation file is
//! `<relfilenode>[_<fork>][.<segment>]`, where the relfilenode is 1 to 10
//! digits (`OIDCHARS`), the fork one of `fsm`, `vm` or `init` (the main fork
//! has no suffix: `_main` is not a file name PostgreSQL writes), and the
//! segment a run of digits. A temporary relation's file is
//! `t<backend>_<the same>`.
//!
//! Places: `global/<file>`, `base/<db>/<file>` and
//! `pg_tblspc/<spc>/<PG_major_catversion>/<db>/<file>`.

/// `OIDCHARS`: at most this many digits in an OID.
const OIDCHARS: usize = 10;

/// A relation fork (`ForkNumber`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fork {
    Main,
    Fsm,
    Vm,
    Init,
}

impl Fork {
    fn from_suffix(s: &str) -> Option<Fork> {
        match s {
            "fsm" => Some(Fork::Fsm),
            "vm" => Some(Fork::Vm),
            "init" => Some(Fork::Init),
            _ => None,
        }
    }
}

/// A parsed relation file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelFileName<'a> {
    /// The relfilenode digits, as written.
    pub node: &'a str,
    pub fork: Fork,
    /// The segment number (0 for the first, unsuffixed, file).
    pub segment: u32,
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

impl RelFileName<'_> {
    /// Parse a non-temporary relation file name; `None` for anything else.
    pub fn parse(name: &str) -> Option<RelFileName<'_>> {
        let (base, segment) = match name.split_once('.') {
            Some((b, seg)) if all_digits(seg) => (b, seg.parse::<u32>().ok()?),
            Some(_) => return None,
            None => (name, 0),
        };
        let (node, fork) = match base.split_once('_') {
            Some((n, f)) => (n, Fork::from_suffix(f)?),
            None => (base, Fork::Main),
        };
        (all_digits(node) && node.len() <= OIDCHARS).then_some(RelFileName { node, fork, segment })
    }

    /// The number of this file's first block within its fork, for a
    /// relation segment size of `blocks_per_segment` blocks (`RELSEG_SIZE`).
    pub fn first_block(&self, blocks_per_segment: u32) -> u64 {
        u64::from(self.segment) * u64::from(blocks_per_segment)
    }
}

/// Whether a name is a temporary relation's file: `t<backend>_<relation>`.
pub fn is_temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else { return false };
    let Some((backend, rel)) = rest.split_once('_') else { return false };
    all_digits(backend) && RelFileName::parse(rel).is_some()
}

/// Whether a path relative to the data directory is a relation file, and if
/// so its parsed name.
pub fn relation_path(rel: &str) -> Option<RelFileName<'_>> {
    let mut parts = rel.split('/');
    let name = match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("global"), Some(name), None, ..) => name,
        (Some("base"), Some(db), Some(name), None, ..) if all_digits(db) => name,
        (Some("pg_tblspc"), Some(spc), Some(version), Some(db), Some(name), None)
            if all_digits(spc) && version.starts_with("PG_") && all_digits(db) =>
        {
            name
        }
        _ => return None,
    };
    RelFileName::parse(name)
}

/// The relation files among the names of one directory that belong to
/// unlogged relations (those with an `_init` fork), other than the init
/// forks themselves.
pub fn unlogged_files<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<&'a str> {
    let unlogged: Vec<&str> =
        names.clone().filter_map(RelFileName::parse).filter(|r| r.fork == Fork::Init).map(|r| r.node).collect();
    if unlogged.is_empty() {
        return Vec::new();
    }
    names
        .filter(|n| RelFileName::parse(n).is_some_and(|r| r.fork != Fork::Init && unlogged.contains(&r.node)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_postgres_parses_them() {
        let p = |n| RelFileName::parse(n).map(|r| (r.node, r.fork, r.segment));
        assert_eq!(p("16384"), Some(("16384", Fork::Main, 0)));
        assert_eq!(p("16384_fsm"), Some(("16384", Fork::Fsm, 0)));
        assert_eq!(p("16384.2"), Some(("16384", Fork::Main, 2)));
        assert_eq!(p("16384_vm.1"), Some(("16384", Fork::Vm, 1)));
        assert_eq!(p("16384_init"), Some(("16384", Fork::Init, 0)));
        assert_eq!(p("4294967295"), Some(("4294967295", Fork::Main, 0)));
        for no in [
            "PG_VERSION",
            "pg_filenode.map",
            "pg_internal.init",
            "16384_foo",
            "16384_main",
            "16384_",
            "16384.",
            "16384.x",
            "16384_fsm_vm",
            "12345678901",
            "",
            "_fsm",
            "t3_16400",
        ] {
            assert_eq!(p(no), None, "{no}");
        }
        assert_eq!(RelFileName::parse("16384.3").unwrap().first_block(131072), 3 * 131072);
    }

    #[test]
    fn temporary_relations() {
        assert!(is_temp_relation("t3_16400"));
        assert!(is_temp_relation("t3_16400_fsm"));
        assert!(is_temp_relation("t12_16400.1"));
        for no in ["t_1", "tx_1", "16400", "t3_16400_foo", "t3_"] {
            assert!(!is_temp_relation(no), "{no}");
        }
    }

    #[test]
    fn relation_paths() {
        for ok in [
            "base/5/16384",
            "base/5/16384_fsm",
            "base/5/16384_vm",
            "base/5/16384_init",
            "base/5/16384.1",
            "base/5/16384_fsm.12",
            "global/1262",
            "pg_tblspc/16400/PG_15_202209061/5/16401",
        ] {
            assert!(relation_path(ok).is_some(), "{ok}");
        }
        for no in [
            "global/pg_control",
            "global/pg_filenode.map",
            "base/5/PG_VERSION",
            "base/5/pg_internal.init",
            "base/5/t3_16400",
            "base/5/16384_foo",
            "base/5/16384.",
            "base/pgsql_tmp/16384",
            "pg_xact/0000",
            "pg_wal/000000010000000000000001",
            "pg_tblspc/16400/PG_15_202209061/5/sub/16401",
            "pg_tblspc/16400/other/5/16401",
            "base/5",
            "base/5/16384/x",
        ] {
            assert!(relation_path(no).is_none(), "{no}");
        }
    }

    #[test]
    fn unlogged_forks_are_found() {
        let names = ["16384", "16384_fsm", "16390", "16390.1", "16390_fsm", "16390_init", "PG_VERSION"];
        let mut u = unlogged_files(names.iter().copied());
        u.sort_unstable();
        assert_eq!(u, vec!["16390", "16390.1", "16390_fsm"]);
        assert!(unlogged_files(["1", "2"].iter().copied()).is_empty());
    }
}
