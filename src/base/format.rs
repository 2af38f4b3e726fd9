//! How values appear in decisions (DESIGN §4): money with at least two decimals, tokens
//! and counts as minimal decimals, durations in milliseconds, timestamps as RFC 3339 UTC
//! with the shortest fraction.

use crate::base::lang::Unit;
use crate::base::num::Decimal;

/// A value of a limit's unit as a decision prints it.
pub(crate) fn value(unit: Unit, v: i64) -> String {
    match unit {
        Unit::Usd => money(v),
        Unit::Duration => millis(v),
        Unit::Timestamp => timestamp(v),
        _ => Decimal(v).to_string(),
    }
}

/// A value as a policy writes it, with its unit: `$5.00`, `50000 tokens`, `30m`, `10`.
pub(crate) fn quantity(unit: Unit, v: i64) -> String {
    match unit {
        Unit::Usd if v < 0 => format!("-${}", money(-v)),
        Unit::Usd => format!("${}", money(v)),
        Unit::Tokens => format!("{} tokens", Decimal(v)),
        Unit::Duration => duration(v),
        _ => value(unit, v),
    }
}

/// A value as [`value`] prints it, back in 10⁻⁹ units: `4.10`, `1200`, `1500ms`.
pub(crate) fn parse_value(text: &str) -> Option<i64> {
    match text.strip_suffix("ms") {
        Some(ms) => crate::base::num::parse_decimal(ms, 1_000_000).ok(),
        None => crate::base::num::parse_decimal(text, crate::base::num::SCALE).ok(),
    }
}

/// `4.10`, `0.0125`, `5.00`.
pub(crate) fn money(v: i64) -> String {
    let text = Decimal(v).to_string();
    match text.split_once('.') {
        None => format!("{text}.00"),
        Some((_, frac)) if frac.len() == 1 => format!("{text}0"),
        Some(_) => text,
    }
}

/// Nanoseconds as milliseconds with minimal decimals: `1500ms`, `840.5ms`.
pub(crate) fn millis(ns: i64) -> String {
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
pub(crate) fn percent(observed: i64, limit: i64) -> Option<String> {
    if limit <= 0 {
        return None;
    }
    let p = (i128::from(observed) * 100).div_euclid(i128::from(limit));
    Some(p.to_string())
}

/// A duration as the policy language writes it: `1h`, `15m`, `30s`, `250ms`.
pub(crate) fn duration(ns: i64) -> String {
    const MS: i64 = 1_000_000;
    for (unit, size) in [
        ("d", 86_400_000 * MS),
        ("h", 3_600_000 * MS),
        ("m", 60_000 * MS),
        ("s", 1_000 * MS),
    ] {
        if ns != 0 && ns % size == 0 {
            return format!("{}{unit}", ns / size);
        }
    }
    millis(ns)
}

/// Nanoseconds since the epoch as RFC 3339 UTC: `2026-01-20T10:00:03.25Z`.
pub(crate) fn timestamp(ns: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) else {
        return ns.to_string();
    };
    // Written digit by digit: every decision and record carries timestamps, and `format!`
    // was a visible share of the server's time.
    let year = t.year().unsigned_abs();
    if year > 9999 {
        return ns.to_string();
    }
    let mut out = String::with_capacity(30);
    push_digits(&mut out, year, 4);
    for (sep, value) in [
        ('-', u32::from(u8::from(t.month()))),
        ('-', u32::from(t.day())),
        ('T', u32::from(t.hour())),
        (':', u32::from(t.minute())),
        (':', u32::from(t.second())),
    ] {
        out.push(sep);
        push_digits(&mut out, value, 2);
    }
    let nanos = t.nanosecond();
    if nanos != 0 {
        out.push('.');
        let mut n = nanos;
        let mut width = 9;
        while n % 10 == 0 {
            n /= 10;
            width -= 1;
        }
        push_digits(&mut out, n, width);
    }
    out.push('Z');
    out
}

/// The last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = value / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
}

/// Parses an RFC 3339 timestamp to nanoseconds since the epoch.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::num::SCALE;

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
        // Digit by digit, as `format!` would write it.
        for ns in [
            0,
            1,
            10,
            123_456_789,
            1_768_903_200_000_000_001,
            1_768_903_200_120_000_000,
            -1,
            -86_400_000_000_000,
            i64::MAX,
        ] {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).unwrap();
            let base = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            let want = match t.nanosecond() {
                0 => format!("{base}Z"),
                n => format!("{base}.{}Z", format!("{n:09}").trim_end_matches('0')),
            };
            assert_eq!(timestamp(ns), want, "{ns}");
        }
    }
}
