//! The libpq password file, `~/.pgpass` (or `PGPASSFILE`).
//!
//! Layout: `hostname:port:database:username:password` per line; `*` in the
//! first four fields matches anything; `\:` and `\\` escape a colon and a
//! backslash; lines starting with `#` are comments. The first matching line
//! wins. For a Unix-socket connection libpq matches the host `localhost`
//! (`passwordFromFile()` in `src/interfaces/libpq/fe-connect.c`).

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgpassEntry {
    pub host: String,
    pub port: String,
    pub database: String,
    pub user: String,
    pub password: String,
}

fn split_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

/// Parse the file's text, skipping comments and malformed lines as libpq does.
pub fn parse(text: &str) -> Vec<PgpassEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(split_fields)
        .map(|mut f| PgpassEntry {
            password: f.pop().unwrap_or_default(),
            user: f.pop().unwrap_or_default(),
            database: f.pop().unwrap_or_default(),
            port: f.pop().unwrap_or_default(),
            host: f.pop().unwrap_or_default(),
        })
        .collect()
}

/// The password of the first entry matching the connection.
pub fn lookup<'a>(entries: &'a [PgpassEntry], host: &str, port: u16, database: &str, user: &str) -> Option<&'a str> {
    let host = if host.starts_with('/') { "localhost" } else { host };
    let port = port.to_string();
    let m = |pattern: &str, value: &str| pattern == "*" || pattern == value;
    entries
        .iter()
        .find(|e| m(&e.host, host) && m(&e.port, &port) && m(&e.database, database) && m(&e.user, user))
        .map(|e| e.password.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_libpq() {
        let e =
            parse("# comment\nprod:5432:*:app:s3cr\\:et\n*:*:*:postgres:pw\nbroken line\nlocalhost:6000:db:u:x\\\\y\n");
        assert_eq!(e.len(), 3);
        assert_eq!(lookup(&e, "prod", 5432, "any", "app"), Some("s3cr:et"));
        assert_eq!(lookup(&e, "prod", 5433, "any", "app"), None);
        assert_eq!(lookup(&e, "elsewhere", 1, "x", "postgres"), Some("pw"));
        assert_eq!(lookup(&e, "/var/run/postgresql", 6000, "db", "u"), Some("x\\y"));
    }
}
