//! Timestamps as PostgreSQL's `recovery_target_time` takes them
//! (`timestamptz` input, `src/backend/utils/adt/datetime.c`), in the forms
//! operators write: `2026-11-29 15:04:05+01`, `2026-11-29T15:04:05.123Z`,
//! `2026-11-29 15:04:05 UTC`. A time zone is required: without one the
//! restored server would read the time in its own zone, which may not be
//! the operator's.

use chrono::{DateTime, FixedOffset, NaiveDateTime};

/// Parse a timestamp with a zone; `None` if it is not one of the forms.
pub fn parse(text: &str) -> Option<DateTime<FixedOffset>> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d);
    }
    // A zone name PostgreSQL always knows, as a suffix.
    for (suffix, offset) in [(" UTC", "+00:00"), (" GMT", "+00:00"), ("Z", "+00:00")] {
        if let Some(rest) = t.strip_suffix(suffix) {
            return parse(&format!("{}{offset}", rest.trim_end()));
        }
    }
    // `YYYY-MM-DD HH:MM:SS[.f]` (space or T) and an offset `+HH`,
    // `+HHMM` or `+HH:MM`.
    let split = t.rfind(['+', '-']).filter(|i| *i > 10)?;
    let (stamp, zone) = t.split_at(split);
    if !zone.is_ascii() {
        return None;
    }
    let zone = match zone.len() {
        3 => format!("{zone}:00"),
        5 => format!("{}:{}", &zone[..3], &zone[3..]),
        _ => zone.to_string(),
    };
    let offset: FixedOffset = zone.parse().ok()?;
    let stamp = stamp.trim().replacen('T', " ", 1);
    let naive = NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    naive.and_local_timezone(offset).single()
}

/// The form pgdrill writes into `recovery_target_time`: unambiguous for
/// every PostgreSQL major.
pub fn render(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_operators_write() {
        let want = parse("2026-11-29T14:04:05Z").unwrap();
        for t in [
            "2026-11-29 15:04:05+01",
            "2026-11-29 15:04:05+0100",
            "2026-11-29 15:04:05+01:00",
            "2026-11-29T15:04:05+01:00",
            "2026-11-29 14:04:05 UTC",
            "2026-11-29 14:04:05 GMT",
            "2026-11-29 14:04:05Z",
            "2026-11-29 09:04:05-05",
        ] {
            assert_eq!(parse(t), Some(want), "{t}");
        }
        assert_eq!(render(&parse("2026-11-29 14:04:05.25+00").unwrap()), "2026-11-29 14:04:05.250000+00:00");
        for bad in ["2026-11-29 14:04:05", "yesterday", "", "2026-13-40 00:00:00+00", "14:04:05+00"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse(&s);
        }
    }
}
