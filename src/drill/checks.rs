//! Checks run on a restored copy before anyone else may connect: amcheck on
//! every btree index (and `verify_heapam` where the major has it), and SQL
//! statements that must each return a single true value.

use postgres::Client;
use serde::Serialize;

use crate::conn::ConnSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    /// For SQL checks: the statement and what it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned: Option<String>,
}

fn result(name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> CheckResult {
    CheckResult { name: name.into(), status, detail: detail.into(), sql: None, returned: None }
}

/// Split a SQL script into statements on `;`, respecting quotes, dollar
/// quotes and comments. Empty statements are dropped.
pub fn split_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' => {
                cur.push(c);
                i += 1;
                while i < chars.len() {
                    cur.push(chars[i]);
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            cur.push(c);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            '$' => {
                // $tag$ ... $tag$
                let rest: String = chars[i..].iter().collect();
                let tag_end = rest[1..].find('$').map(|p| p + 2);
                match tag_end {
                    Some(end) if rest[1..end - 1].chars().all(|ch| ch.is_alphanumeric() || ch == '_') => {
                        let tag = &rest[..end];
                        match rest[end..].find(tag) {
                            Some(close) => {
                                let whole = &rest[..end + close + tag.len()];
                                cur.push_str(whole);
                                i += whole.chars().count();
                            }
                            None => {
                                cur.push_str(&rest);
                                i = chars.len();
                            }
                        }
                    }
                    _ => {
                        cur.push(c);
                        i += 1;
                    }
                }
            }
            ';' => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
                i += 1;
            }
            _ => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Describe what a statement returned, for a failure message.
fn describe(rows: &[postgres::SimpleQueryMessage]) -> (Option<bool>, String) {
    let data: Vec<&postgres::SimpleQueryRow> = rows
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    match data.as_slice() {
        [] => (None, "no rows".into()),
        [row] if row.len() == 1 => {
            let v = row.get(0);
            let truth = match v {
                Some("t") | Some("true") => Some(true),
                Some("f") | Some("false") => Some(false),
                _ => None,
            };
            (truth, v.map_or("NULL".to_string(), str::to_string))
        }
        [row] => (None, format!("one row of {} columns", row.len())),
        rows => (None, format!("{} rows", rows.len())),
    }
}

/// Run every statement of `script` in database `db`: each must return one
/// row with one column whose value is true.
pub fn run_sql_checks(conn: &ConnSpec, db: &str, script: &str) -> Vec<CheckResult> {
    let mut c = conn.clone();
    c.set_dbname(db);
    let mut client = match c.connect() {
        Ok(cl) => cl,
        Err(e) => {
            return vec![result(
                "check-sql",
                CheckStatus::Fail,
                format!("cannot connect to database {db}: {}", e.chain().join(": ")),
            )]
        }
    };
    split_statements(script)
        .into_iter()
        .enumerate()
        .map(|(i, sql)| {
            let name = format!("check-sql #{}", i + 1);
            let (status, detail, returned) = match client.simple_query(&sql) {
                Ok(msgs) => match describe(&msgs) {
                    (Some(true), v) => (CheckStatus::Pass, "returned true".to_string(), v),
                    (_, v) => (CheckStatus::Fail, format!("expected a single true value, got {v}"), v),
                },
                Err(e) => {
                    let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
                    (CheckStatus::Fail, format!("error: {msg}"), String::new())
                }
            };
            CheckResult { name, status, detail, sql: Some(sql), returned: Some(returned) }
        })
        .collect()
}

fn query_strings(client: &mut Client, sql: &str) -> Result<Vec<String>, postgres::Error> {
    Ok(client.query(sql, &[])?.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// amcheck on every database that accepts connections (template1 too).
pub fn run_amcheck(conn: &ConnSpec, read_write: bool) -> Vec<CheckResult> {
    let mut c = conn.clone();
    c.set_dbname("postgres");
    let dbs = match c.connect().map(|mut cl| {
        query_strings(
            &mut cl,
            // Every database that accepts connections, template1 included
            // (new databases are copied from it); template0 does not.
            "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY 1",
        )
    }) {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return vec![result("amcheck", CheckStatus::Fail, format!("cannot list databases: {e}"))],
        Err(e) => {
            return vec![result("amcheck", CheckStatus::Fail, format!("cannot connect: {}", e.chain().join(": ")))]
        }
    };
    dbs.iter().map(|db| amcheck_db(conn, db, read_write)).collect()
}

fn amcheck_db(conn: &ConnSpec, db: &str, read_write: bool) -> CheckResult {
    let name = format!("amcheck {db}");
    let mut c = conn.clone();
    c.set_dbname(db);
    let mut client = match c.connect() {
        Ok(cl) => cl,
        Err(e) => return result(name, CheckStatus::Fail, format!("cannot connect: {}", e.chain().join(": "))),
    };
    let installed = query_strings(&mut client, "SELECT extversion::text FROM pg_extension WHERE extname = 'amcheck'")
        .unwrap_or_default();
    if installed.is_empty() {
        let available =
            query_strings(&mut client, "SELECT name::text FROM pg_available_extensions WHERE name = 'amcheck'")
                .unwrap_or_default();
        if available.is_empty() {
            return result(
                name,
                CheckStatus::Skip,
                "the amcheck extension is not available in this PostgreSQL installation",
            );
        }
        if !read_write {
            return result(
                name,
                CheckStatus::Skip,
                "amcheck is not installed in this database and the copy is read-only; install it on the primary, or use --then promote",
            );
        }
        if let Err(e) = client.batch_execute("CREATE EXTENSION amcheck") {
            return result(name, CheckStatus::Skip, format!("cannot install amcheck: {e}"));
        }
    }
    let indexes: Vec<(String, u32)> = match client.query(
        "SELECT c.oid::regclass::text, c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready \
         AND c.relpersistence = 'p' ORDER BY 1",
        &[],
    ) {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(e) => return result(name, CheckStatus::Fail, format!("cannot list indexes: {e}")),
    };
    let mut problems = Vec::new();
    for (idx, oid) in &indexes {
        if let Err(e) = client.execute("SELECT bt_index_check($1::oid)", &[oid]) {
            let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
            problems.push(format!("index {idx}: {msg}"));
        }
    }
    let has_heap = query_strings(&mut client, "SELECT proname::text FROM pg_proc WHERE proname = 'verify_heapam'")
        .map(|v| !v.is_empty())
        .unwrap_or(false);
    let heap_note = if has_heap {
        let rels: Vec<(String, u32)> = client
            .query(
                "SELECT c.oid::regclass::text, c.oid FROM pg_class c WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence = 'p' ORDER BY 1",
                &[],
            )
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            .unwrap_or_default();
        for (rel, oid) in &rels {
            match client.query_one("SELECT count(*) FROM verify_heapam($1::oid)", &[oid]) {
                Ok(r) => {
                    let n: i64 = r.get(0);
                    if n > 0 {
                        problems.push(format!("table {rel}: {n} corruption report(s) from verify_heapam"));
                    }
                }
                Err(e) => problems.push(format!("table {rel}: {e}")),
            }
        }
        format!(", {} tables (verify_heapam)", rels.len())
    } else {
        ", no heap check (verify_heapam needs PostgreSQL 14)".to_string()
    };
    if problems.is_empty() {
        result(name, CheckStatus::Pass, format!("{} btree indexes (bt_index_check){heap_note}", indexes.len()))
    } else {
        let shown: Vec<String> = problems.iter().take(5).cloned().collect();
        result(name, CheckStatus::Fail, format!("{} problem(s): {}", problems.len(), shown.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_like_psql() {
        let script = "select 1; -- a ; comment\nselect 'a;b' = 'a;b';\n/* ; */ select $$;$$ = $x$;$x$ ;; select \"we;ird\" from t";
        assert_eq!(
            split_statements(script),
            vec!["select 1", "select 'a;b' = 'a;b'", "select $$;$$ = $x$;$x$", "select \"we;ird\" from t"]
        );
        assert_eq!(split_statements("  ;\n  "), Vec::<String>::new());
        assert_eq!(split_statements("select 'it''s; fine'"), vec!["select 'it''s; fine'"]);
        assert_eq!(split_statements("select $1"), vec!["select $1"]);
    }
}
