//! How values appear in decisions (DESIGN §4): money with at least two decimals, tokens
//! and counts as minimal decimals, durations in milliseconds, timestamps as RFC 3339 UTC
//! with the shortest fraction.

use crate::num::Decimal;
use crate::syntax::ast::Unit;

/// A value of a limit's unit as a decision prints it.
pub fn value(unit: Unit, v: i64) -> String {
    match unit {
        Unit::Usd => money(v),
        Unit::Duration => millis(v),
        Unit::Timestamp => timestamp(v),
        _ => Decimal(v).to_string(),
    }
}

/// `4.10`, `0.0125`, `5.00`.
pub fn money(v: i64) -> String {
    let text = Decimal(v).to_string();
    match text.split_once('.') {
        None => format!("{text}.00"),
        Some((_, frac)) if frac.len() == 1 => format!("{text}0"),
        Some(_) => text,
    }
}

/// Nanoseconds as milliseconds with minimal decimals: `1500ms`, `840.5ms`.
pub fn millis(ns: i64) -> String {
    let ns = i128::from(ns);
    let sign = if ns < 0 { "-" } else { "" };
    let (whole, frac) = (ns.abs() / 1_000_000, ns.abs() % 1_000_000);
    if frac == 0 {
        return format!("{sign}{whole}ms");
    }
    let digits = format!("{frac:06}");
    format!("{sign}{whole}.{}ms", digits.trim_end_matches('0'))
}

/// `observed / limit × 100`, rounded down; `None` when the limit is at or below zero.
pub fn percent(observed: i64, limit: i64) -> Option<String> {
    if limit <= 0 {
        return None;
    }
    let p = (i128::from(observed) * 100).div_euclid(i128::from(limit));
    Some(p.to_string())
}

/// Nanoseconds since the epoch as RFC 3339 UTC: `2026-01-20T10:00:03.25Z`.
pub fn timestamp(ns: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) else {
        return ns.to_string();
    };
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match t.nanosecond() {
        0 => format!("{base}Z"),
        n => format!("{base}.{}Z", format!("{n:09}").trim_end_matches('0')),
    }
}

/// Parses an RFC 3339 timestamp to nanoseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::num::SCALE;

    #[test]
    fn formats_follow_the_decision_contract() {
        assert_eq!(money(4_100_000_000), "4.10");
        assert_eq!(money(12_500_000), "0.0125");
        assert_eq!(money(5 * SCALE), "5.00");
        assert_eq!(millis(1_500_000_000), "1500ms");
        assert_eq!(millis(840_500_000), "840.5ms");
        assert_eq!(value(Unit::Tokens, 1_200 * SCALE), "1200");
        assert_eq!(value(Unit::Tokens, 1_500_000_000), "1.5");
        assert_eq!(percent(4_100_000_000, 5 * SCALE).as_deref(), Some("82"));
        assert_eq!(percent(1, 0), None);
        assert_eq!(percent(-1, 100), Some("-1".into()));
    }

    #[test]
    fn timestamps_round_trip_in_utc_with_the_shortest_fraction() {
        let t = parse_timestamp("2026-01-20T11:00:03.250+01:00").unwrap();
        assert_eq!(timestamp(t), "2026-01-20T10:00:03.25Z");
        assert_eq!(
            timestamp(parse_timestamp("2026-01-20T10:00:00Z").unwrap()),
            "2026-01-20T10:00:00Z"
        );
        assert!(parse_timestamp("2026-01-20 10:00").is_none());
    }
}
