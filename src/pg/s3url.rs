//! `s3://bucket/prefix` locations: a pure parser, no I/O.
//!
//! The bucket rules are Amazon S3's ("Bucket naming rules" in the S3 user
//! guide), relaxed as S3-compatible stores and buckets made before 2018 in
//! us-east-1 allow: upper-case letters and underscores are accepted, the
//! length is 3 to 255. The prefix is a sequence of plain `/`-separated
//! segments: no empty segment, no `.` or `..` (a key of a backup must not
//! climb out of the prefix it was given), no control characters. A trailing
//! `/` is dropped, so `s3://b/p/` and `s3://b/p` are the same place.

use std::fmt;

/// The scheme that marks a location as object storage.
pub const SCHEME: &str = "s3://";

/// A bucket and a key prefix (possibly empty), the root of a backup or an
/// archive in object storage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct S3Url {
    bucket: String,
    /// Segments joined by `/`, without a leading or trailing `/`.
    prefix: String,
}

/// Why a text is not an `s3://` URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("it does not start with s3://")]
    NotS3,
    #[error("the bucket name is missing")]
    NoBucket,
    #[error("the bucket name {0:?} is not valid (3 to 255 letters, digits, '.', '-' or '_', starting and ending with a letter or digit)")]
    BadBucket(String),
    #[error("the key {0:?} has an empty, '.' or '..' segment")]
    BadSegment(String),
    #[error("the key holds a control character")]
    ControlCharacter,
    #[error("credentials do not belong in a URL (use the environment, a profile or a role)")]
    UserInfo,
    #[error("query strings and fragments are not supported")]
    Query,
    #[error("an endpoint must be an http:// or https:// URL with a host")]
    BadEndpoint,
}

/// Check an `--s3-endpoint` value: `http(s)://host[:port][/path]`, with no
/// credentials in it (they would show in the process list).
pub fn check_endpoint(text: &str) -> Result<(), UrlError> {
    let lower = text.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")).ok_or(UrlError::BadEndpoint)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    if authority.is_empty() || authority.starts_with(':') || text.chars().any(|c| c.is_control() || c == ' ') {
        return Err(UrlError::BadEndpoint);
    }
    Ok(())
}

/// Whether `text` names object storage (and should be parsed as a URL, not
/// taken as a local path).
pub fn is_s3(text: &str) -> bool {
    text.as_bytes().get(..SCHEME.len()).is_some_and(|head| head.eq_ignore_ascii_case(SCHEME.as_bytes()))
}

impl S3Url {
    /// Parse `s3://bucket[/prefix][/]`.
    pub fn parse(text: &str) -> Result<S3Url, UrlError> {
        if !is_s3(text) {
            return Err(UrlError::NotS3);
        }
        let rest = text.get(SCHEME.len()..).ok_or(UrlError::NotS3)?;
        if rest.contains(['?', '#']) {
            return Err(UrlError::Query);
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(UrlError::UserInfo);
        }
        if bucket.is_empty() {
            return Err(UrlError::NoBucket);
        }
        check_bucket(bucket)?;
        let prefix = normalise_key(key)?;
        Ok(S3Url { bucket: bucket.to_string(), prefix })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without leading or trailing `/` (empty for the
    /// bucket's root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of `rel` (a `/`-separated relative name) below the
    /// prefix. `rel` is checked like the prefix.
    pub fn key(&self, rel: &str) -> Result<String, UrlError> {
        let rel = normalise_key(rel)?;
        Ok(match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => rel,
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{rel}", self.prefix),
        })
    }

    /// The location `rel` below this one.
    pub fn join(&self, rel: &str) -> Result<S3Url, UrlError> {
        Ok(S3Url { bucket: self.bucket.clone(), prefix: self.key(rel)? })
    }

    /// The name of `key` relative to the prefix, if it lies below it.
    pub fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    /// The last segment of the prefix (the bucket for the root): a name
    /// for the location in messages and temporary names.
    pub fn last_segment(&self) -> &str {
        self.prefix.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(&self.bucket)
    }

    /// The location one level up (`None` at the bucket's root).
    pub fn parent(&self) -> Option<S3Url> {
        if self.prefix.is_empty() {
            return None;
        }
        let prefix = self.prefix.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
        Some(S3Url { bucket: self.bucket.clone(), prefix })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{SCHEME}{}", self.bucket)
        } else {
            write!(f, "{SCHEME}{}/{}", self.bucket, self.prefix)
        }
    }
}

impl std::str::FromStr for S3Url {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<S3Url, UrlError> {
        S3Url::parse(s)
    }
}

fn check_bucket(bucket: &str) -> Result<(), UrlError> {
    let bad = || UrlError::BadBucket(bucket.to_string());
    if !(3..=255).contains(&bucket.len()) {
        return Err(bad());
    }
    if !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err(bad());
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge_ok(bucket.bytes().next()) || !edge_ok(bucket.bytes().last()) || bucket.contains("..") {
        return Err(bad());
    }
    Ok(())
}

/// Check a `/`-separated key and drop one trailing `/`.
fn normalise_key(key: &str) -> Result<String, UrlError> {
    if key.chars().any(char::is_control) {
        return Err(UrlError::ControlCharacter);
    }
    if key.is_empty() {
        return Ok(String::new());
    }
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    if trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(UrlError::BadSegment(key.to_string()));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buckets_and_prefixes() {
        let u = S3Url::parse("s3://backups/fleet/db1/").unwrap();
        assert_eq!((u.bucket(), u.prefix()), ("backups", "fleet/db1"));
        assert_eq!(u.to_string(), "s3://backups/fleet/db1");
        assert_eq!(u.key("base/1/1259").unwrap(), "fleet/db1/base/1/1259");
        assert_eq!(u.key("").unwrap(), "fleet/db1");
        assert_eq!(u.last_segment(), "db1");
        assert_eq!(u.parent().unwrap().to_string(), "s3://backups/fleet");
        let root = S3Url::parse("S3://Old_Bucket").unwrap();
        assert_eq!((root.bucket(), root.prefix()), ("Old_Bucket", ""));
        assert_eq!(root.key("x/y").unwrap(), "x/y");
        assert_eq!(root.parent(), None);
        assert_eq!(root.last_segment(), "Old_Bucket");
        assert_eq!(S3Url::parse("s3://b12/").unwrap().prefix(), "");
    }

    #[test]
    fn relative_names_stay_below_the_prefix() {
        let u = S3Url::parse("s3://bkt/a/b").unwrap();
        assert_eq!(u.relative("a/b/c/d"), Some("c/d"));
        assert_eq!(u.relative("a/bc/d"), None);
        assert_eq!(u.relative("a/b"), None);
        assert_eq!(S3Url::parse("s3://bkt").unwrap().relative("a/b"), Some("a/b"));
    }

    #[test]
    fn refuses_what_is_not_a_plain_location() {
        let cases = [
            ("/var/backups", UrlError::NotS3),
            ("s3:/bkt", UrlError::NotS3),
            ("s3://", UrlError::NoBucket),
            ("s3:///x", UrlError::NoBucket),
            ("s3://ab", UrlError::BadBucket("ab".into())),
            ("s3://-bkt", UrlError::BadBucket("-bkt".into())),
            ("s3://bkt-", UrlError::BadBucket("bkt-".into())),
            ("s3://b..k", UrlError::BadBucket("b..k".into())),
            ("s3://bk t/x", UrlError::BadBucket("bk t".into())),
            ("s3://key:secret@bkt/x", UrlError::UserInfo),
            ("s3://bkt/x?versionId=1", UrlError::Query),
            ("s3://bkt/a//b", UrlError::BadSegment("a//b".into())),
            ("s3://bkt/a/../b", UrlError::BadSegment("a/../b".into())),
            ("s3://bkt/./b", UrlError::BadSegment("./b".into())),
            ("s3://bkt//", UrlError::BadSegment("/".into())),
            ("s3://bkt/a\nb", UrlError::ControlCharacter),
        ];
        for (text, want) in cases {
            assert_eq!(S3Url::parse(text), Err(want), "{text}");
        }
        let u = S3Url::parse("s3://bkt/p").unwrap();
        assert!(u.key("../q").is_err());
        assert!(u.key("/abs").is_err());
        assert!(u.join("a//b").is_err());
    }

    #[test]
    fn endpoints_are_plain_http_urls_without_credentials() {
        for ok in ["http://127.0.0.1:9000", "https://s3.example.com", "HTTPS://minio.local:9000/"] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_endpoint("https://key:secret@minio"), Err(UrlError::UserInfo));
        for bad in ["minio:9000", "ftp://x", "http://", "http://:9000", "http://a b"] {
            assert_eq!(check_endpoint(bad), Err(UrlError::BadEndpoint), "{bad}");
        }
    }

    #[test]
    fn is_s3_needs_the_whole_scheme() {
        assert!(is_s3("s3://b"));
        assert!(is_s3("S3://b"));
        assert!(!is_s3("s3:"));
        assert!(!is_s3("./s3://b"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(text in "\\PC{0,40}") {
            let _ = S3Url::parse(&text);
            let with_scheme = format!("s3://{text}");
            if let Ok(u) = S3Url::parse(&with_scheme) {
                proptest::prop_assert_eq!(S3Url::parse(&u.to_string()), Ok(u.clone()));
                proptest::prop_assert!(!u.prefix().starts_with('/') && !u.prefix().ends_with('/'));
            }
        }
    }
}
