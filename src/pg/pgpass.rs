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

impl PgpassEntry {
    fn matches(&self, host: &str, port: &str, database: &str, user: &str) -> bool {
        let m = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        m(&self.host, host) && m(&self.port, port) && m(&self.database, database) && m(&self.user, user)
    }
}

/// One line's five fields, or `None` for a comment or a malformed line
/// (skipped, as libpq does).
fn entry(line: &str) -> Option<PgpassEntry> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let mut fields: [String; 5] = Default::default();
    let mut at = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields[at].push(chars.next().unwrap_or('\\')),
            ':' if at < 4 => at += 1,
            c => fields[at].push(c),
        }
    }
    let [host, port, database, user, password] = fields;
    (at == 4).then_some(PgpassEntry { host, port, database, user, password })
}

/// Every well-formed line of the file's text, in order.
pub fn parse(text: &str) -> impl Iterator<Item = PgpassEntry> + '_ {
    text.lines().filter_map(entry)
}

/// The password of the first line matching the connection. The file is
/// read line by line, so its size alone bounds the memory.
pub fn lookup(text: &str, host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    let host = if host.starts_with('/') { "localhost" } else { host };
    let port = port.to_string();
    parse(text).find(|e| e.matches(host, &port, database, user)).map(|e| e.password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_libpq() {
        let e = "# comment\nprod:5432:*:app:s3cr\\:et\n*:*:*:postgres:pw\nbroken line\nlocalhost:6000:db:u:x\\\\y\n";
        assert_eq!(parse(e).count(), 3);
        assert_eq!(lookup(e, "prod", 5432, "any", "app").as_deref(), Some("s3cr:et"));
        assert_eq!(lookup(e, "prod", 5433, "any", "app"), None);
        assert_eq!(lookup(e, "elsewhere", 1, "x", "postgres").as_deref(), Some("pw"));
        assert_eq!(lookup(e, "/var/run/postgresql", 6000, "db", "u").as_deref(), Some("x\\y"));
    }
}
