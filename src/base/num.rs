//! Exact fixed-point numbers: the one definition of Lever arithmetic.
//!
//! Every quantity (count, tokens, usd, seconds) is a signed 64-bit count of 10⁻⁹ units.
//! `+`, `-` and comparisons are exact; `*` and `/` go through an exact 128-bit intermediate
//! and truncate toward zero to nine places. Overflow and division by zero are errors,
//! never wrapped or saturated. The checker's constant folding, the interpreter and the JIT
//! all call these functions, so the semantics live here once. No floating point anywhere.

use std::fmt;

/// 10⁻⁹ units per whole unit.
pub(crate) const SCALE: i64 = 1_000_000_000;
/// Decimal places a literal or event value may carry.
pub(crate) const MAX_DECIMALS: usize = 9;

/// An evaluation error of Lever arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub(crate) enum ArithError {
    /// The result does not fit in a signed 64-bit count of 10⁻⁹ units.
    #[error("overflow")]
    Overflow,
    /// A divisor was zero.
    #[error("division_by_zero")]
    DivisionByZero,
}

/// Adds exactly.
pub(crate) fn add(a: i64, b: i64) -> Result<i64, ArithError> {
    a.checked_add(b).ok_or(ArithError::Overflow)
}

/// Subtracts exactly.
pub(crate) fn sub(a: i64, b: i64) -> Result<i64, ArithError> {
    a.checked_sub(b).ok_or(ArithError::Overflow)
}

/// Negates exactly.
pub(crate) fn neg(a: i64) -> Result<i64, ArithError> {
    a.checked_neg().ok_or(ArithError::Overflow)
}

/// Multiplies two fixed-point values: `a × b / 10⁹`, truncated toward zero.
pub(crate) fn mul(a: i64, b: i64) -> Result<i64, ArithError> {
    // The same truncating division in 64 bits when the product fits (division by a
    // constant there is a multiplication; in 128 bits it is a library call).
    if let Some(product) = a.checked_mul(b) {
        return Ok(product / SCALE);
    }
    let wide = i128::from(a) * i128::from(b) / i128::from(SCALE);
    i64::try_from(wide).map_err(|_| ArithError::Overflow)
}

/// Divides two fixed-point values: `a × 10⁹ / b`, truncated toward zero.
pub(crate) fn div(a: i64, b: i64) -> Result<i64, ArithError> {
    if b == 0 {
        return Err(ArithError::DivisionByZero);
    }
    if let Some(scaled) = a.checked_mul(SCALE) {
        // `i64::MIN / -1` is the one 64-bit quotient that overflows.
        return scaled.checked_div(b).ok_or(ArithError::Overflow);
    }
    let wide = i128::from(a) * i128::from(SCALE) / i128::from(b);
    i64::try_from(wide).map_err(|_| ArithError::Overflow)
}

/// Why a decimal text could not be read as an exact value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecimalError {
    /// Not `digits[.digits]` (underscores allowed between integer digits).
    #[error("not a decimal number")]
    Malformed,
    /// More than nine decimal places; Lever never rounds.
    #[error("more than 9 decimal places")]
    TooManyDecimals,
    /// Outside the signed 64-bit range of 10⁻⁹ units.
    #[error("out of range")]
    OutOfRange,
}

/// Reads `123`, `1_000`, `0.0125` or `-4.5` into 10⁻⁹ units of `per_unit`-sized units,
/// exactly. `per_unit` is `SCALE` for plain quantities (a whole unit is 10⁹ nano-units);
/// other values scale larger units (a minute is 60 × 10⁹ ns).
pub(crate) fn parse_decimal(text: &str, per_unit: i64) -> Result<i64, DecimalError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(DecimalError::Malformed);
    }
    if int_part.starts_with('_') || int_part.ends_with('_') || int_part.contains("__") {
        return Err(DecimalError::Malformed);
    }
    let frac = frac_part.unwrap_or("");
    if frac_part.is_some() && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return Err(DecimalError::Malformed);
    }
    if frac.len() > MAX_DECIMALS {
        return Err(DecimalError::TooManyDecimals);
    }
    let mut whole: i128 = 0;
    for b in int_part.bytes().filter(|b| *b != b'_') {
        whole = whole * 10 + i128::from(b - b'0');
        if whole > i128::from(i64::MAX) * 10 {
            return Err(DecimalError::OutOfRange);
        }
    }
    let mut nanos: i128 = 0;
    for (i, b) in frac.bytes().enumerate() {
        let place = 10i128.pow(u32::try_from(MAX_DECIMALS - 1 - i).unwrap_or(0));
        nanos += i128::from(b - b'0') * place;
    }
    // whole units plus the fraction of one unit, both in 10⁻⁹ of `per_unit`.
    let value = whole * i128::from(per_unit) + nanos * i128::from(per_unit) / i128::from(SCALE);
    if nanos * i128::from(per_unit) % i128::from(SCALE) != 0 {
        return Err(DecimalError::TooManyDecimals);
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| DecimalError::OutOfRange)
}

/// A fixed-point value printed as a minimal decimal (`4.1`, `0.0125`, `-3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Decimal(pub i64);

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = i128::from(self.0);
        let sign = if v < 0 { "-" } else { "" };
        let abs = v.abs();
        let scale = i128::from(SCALE);
        let whole = abs / scale;
        let frac = abs % scale;
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:09}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenth_plus_two_tenths_is_exactly_three_tenths() {
        let a = parse_decimal("0.1", SCALE).unwrap();
        let b = parse_decimal("0.2", SCALE).unwrap();
        assert_eq!(add(a, b).unwrap(), parse_decimal("0.3", SCALE).unwrap());
    }

    #[test]
    fn the_64_bit_fast_paths_agree_with_128_bit_arithmetic() {
        let wide_mul =
            |a: i64, b: i64| i64::try_from(i128::from(a) * i128::from(b) / i128::from(SCALE)).ok();
        let wide_div =
            |a: i64, b: i64| i64::try_from(i128::from(a) * i128::from(SCALE) / i128::from(b)).ok();
        let mut values = vec![
            0,
            1,
            -1,
            7,
            -7,
            SCALE,
            -SCALE,
            3 * SCALE + 1,
            i64::MAX,
            i64::MIN,
            i64::MAX / SCALE,
            i64::MIN / SCALE,
            3_037_000_499,
            -3_037_000_500,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push((x as i64) >> (x % 63));
        }
        for &a in &values {
            for &b in values.iter().step_by(7) {
                assert_eq!(mul(a, b).ok(), wide_mul(a, b), "{a} * {b}");
                if b != 0 {
                    assert_eq!(div(a, b).ok(), wide_div(a, b), "{a} / {b}");
                }
            }
        }
    }

    #[test]
    fn multiply_truncates_toward_zero() {
        // 0.000000001 × 0.5 = 0.0000000005 → 0 (toward zero), also for negatives.
        assert_eq!(mul(1, SCALE / 2), Ok(0));
        assert_eq!(mul(-1, SCALE / 2), Ok(0));
        assert_eq!(mul(3 * SCALE, 2 * SCALE), Ok(6 * SCALE));
    }

    #[test]
    fn divide_by_zero_and_overflow_are_errors() {
        assert_eq!(div(SCALE, 0), Err(ArithError::DivisionByZero));
        assert_eq!(mul(i64::MAX, 2 * SCALE), Err(ArithError::Overflow));
        assert_eq!(add(i64::MAX, 1), Err(ArithError::Overflow));
        assert_eq!(div(SCALE, 3 * SCALE), Ok(333_333_333));
        assert_eq!(div(-SCALE, 3 * SCALE), Ok(-333_333_333));
    }

    #[test]
    fn decimals_are_read_exactly_or_refused() {
        assert_eq!(parse_decimal("5.00", SCALE), Ok(5 * SCALE));
        assert_eq!(parse_decimal("200_000", SCALE), Ok(200_000 * SCALE));
        assert_eq!(parse_decimal("0.123456789", SCALE), Ok(123_456_789));
        assert_eq!(
            parse_decimal("0.1234567891", SCALE),
            Err(DecimalError::TooManyDecimals)
        );
        assert_eq!(
            parse_decimal("99999999999", SCALE),
            Err(DecimalError::OutOfRange)
        );
        assert_eq!(parse_decimal("1__0", SCALE), Err(DecimalError::Malformed));
        assert_eq!(parse_decimal("840.5", 1_000_000), Ok(840_500_000));
    }

    #[test]
    fn decimals_print_minimally() {
        assert_eq!(Decimal(4_100_000_000).to_string(), "4.1");
        assert_eq!(Decimal(12_500_000).to_string(), "0.0125");
        assert_eq!(Decimal(-3 * SCALE).to_string(), "-3");
        assert_eq!(Decimal(i64::MIN).to_string(), "-9223372036.854775808");
    }
}
