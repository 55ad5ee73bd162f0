//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`, `128974848`): parsing with every
//! suffix Kubernetes accepts, comparison (requests ≤ limits) and conversion to the integer
//! units the node agent needs (millicores for cpu, bytes for memory).
//!
//! A quantity is held exactly as a count of nano-units in an `i128`, so `0.1`, `100m` and
//! `1e-1` compare equal and `1Ki` equals `1024`. Like Kubernetes, precision finer than a
//! nano-unit is rounded up; magnitudes beyond the `i128` range saturate.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// The regular expression Kubernetes names when it refuses a quantity.
pub const QUANTITY_REGEX_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{QUANTITY_REGEX_MESSAGE}")]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A parsed quantity: an exact count of nano-units (1e-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    /// Parses a quantity string such as `250m`, `64Mi`, `1.5`, `2e3` or `+1k`.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        parse(s)
    }

    /// Reads a quantity from JSON: a string, or a number (YAML `cpu: 1` arrives as one).
    pub fn from_json(v: &Value) -> Result<Quantity, QuantityError> {
        match v {
            Value::String(s) => parse(s),
            Value::Number(n) => parse(&n.to_string()),
            _ => Err(QuantityError::Format),
        }
    }

    /// A quantity of whole units.
    pub fn from_units(units: i64) -> Quantity {
        Quantity {
            nanos: i128::from(units) * NANOS_PER_UNIT,
        }
    }

    /// Value in thousandths, rounded up (Kubernetes' `MilliValue`): millicores for cpu.
    pub fn millis(&self) -> i64 {
        clamp_i64(div_ceil(self.nanos, 1_000_000))
    }

    /// Value in whole units, rounded up (Kubernetes' `Value`): bytes for memory.
    pub fn value(&self) -> i64 {
        clamp_i64(div_ceil(self.nanos, NANOS_PER_UNIT))
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Sum of two quantities (saturating).
    pub fn add(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// A plain decimal rendering (`0.25`, `1024`), for messages and tests; not canonical form.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let whole = abs / NANOS_PER_UNIT as u128;
        let frac = abs % NANOS_PER_UNIT as u128;
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 {
        q + 1
    } else {
        q
    }
}

/// Multiplier of a suffix: (power of ten, power of two).
fn suffix_scale(suffix: &str) -> Result<(i32, u32), QuantityError> {
    let scale = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            // Exponent form: e3, E-2, e+4.
            let rest = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or(QuantityError::Suffix)?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix);
            }
            let exp: i32 = rest.parse().map_err(|_| QuantityError::Suffix)?;
            (exp, 0)
        }
    };
    Ok(scale)
}

fn parse(s: &str) -> Result<Quantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Format);
    }
    let (negative, body) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    // The number part: digits with at most one '.', at least one digit.
    let num_len = body
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = body.split_at(num_len);
    if number.bytes().filter(|b| *b == b'.').count() > 1
        || !number.bytes().any(|b| b.is_ascii_digit())
    {
        return Err(QuantityError::Format);
    }
    if !suffix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
    {
        return Err(QuantityError::Format);
    }
    let (pow10, pow2) = suffix_scale(suffix)?;
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let frac_part = frac_part.trim_end_matches('0');
    // mantissa * 10^(pow10 - frac_len) * 2^pow2 units, in nanos: exponent + 9.
    let mut mantissa: i128 = 0;
    let mut overflow = false;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        match mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(b - b'0')))
        {
            Some(m) => mantissa = m,
            None => {
                overflow = true;
                break;
            }
        }
    }
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| QuantityError::Format)?;
    let exp = pow10 - frac_len + 9;
    let mut nanos = if overflow {
        i128::MAX
    } else {
        mantissa.saturating_mul(1i128 << pow2)
    };
    if exp >= 0 {
        for _ in 0..exp {
            nanos = nanos.saturating_mul(10);
        }
    } else {
        let mut divisor: i128 = 1;
        let mut underflow = false;
        for _ in 0..(-exp) {
            match divisor.checked_mul(10) {
                Some(d) => divisor = d,
                None => {
                    underflow = true;
                    break;
                }
            }
        }
        // Precision below a nano-unit rounds up, as Kubernetes does.
        nanos = if underflow {
            i128::from(nanos != 0)
        } else {
            div_ceil(nanos, divisor)
        };
    }
    Ok(Quantity {
        nanos: if negative { -nanos } else { nanos },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn decimal_suffixes() {
        assert_eq!(q("250m").millis(), 250);
        assert_eq!(q("1").millis(), 1000);
        assert_eq!(q("1k").value(), 1000);
        assert_eq!(q("2M").value(), 2_000_000);
        assert_eq!(q("3G").value(), 3_000_000_000);
        assert_eq!(q("1T").value(), 1_000_000_000_000);
        assert_eq!(q("1P").value(), 1_000_000_000_000_000);
        assert_eq!(q("2E").value(), 2_000_000_000_000_000_000);
        assert_eq!(q("500u").nanos(), 500_000);
        assert_eq!(q("7n").nanos(), 7);
    }

    #[test]
    fn binary_suffixes() {
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("64Mi").value(), 64 * 1024 * 1024);
        assert_eq!(q("1.5Gi").value(), 1536 * 1024 * 1024);
        assert_eq!(q("1Ti").value(), 1 << 40);
        assert_eq!(q("1Pi").value(), 1 << 50);
        assert_eq!(q("1Ei").value(), 1 << 60);
    }

    #[test]
    fn plain_decimal_and_exponent_forms() {
        assert_eq!(q("0.5").millis(), 500);
        assert_eq!(q(".5").millis(), 500);
        assert_eq!(q("1.").millis(), 1000);
        assert_eq!(q("+2").value(), 2);
        assert_eq!(q("-2").value(), -2);
        assert!(q("-1m").is_negative());
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("5e-3").millis(), 5);
        assert_eq!(q("1e+2").value(), 100);
        assert_eq!(q("128974848").value(), 128_974_848);
    }

    #[test]
    fn equal_values_compare_equal() {
        assert_eq!(q("0.1"), q("100m"));
        assert_eq!(q("1e-1"), q("100m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("2") > q("1"));
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m").cmp(&q("1")), Ordering::Equal);
    }

    #[test]
    fn rounds_up_below_nano_and_in_conversions() {
        assert_eq!(q("0.1n").nanos(), 1);
        assert_eq!(q("1m").value(), 1);
        assert_eq!(q("0.0001").millis(), 1);
    }

    #[test]
    fn json_numbers_and_strings() {
        assert_eq!(
            Quantity::from_json(&serde_json::json!(2)).unwrap().millis(),
            2000
        );
        assert_eq!(
            Quantity::from_json(&serde_json::json!(0.5))
                .unwrap()
                .millis(),
            500
        );
        assert_eq!(
            Quantity::from_json(&serde_json::json!("1Mi"))
                .unwrap()
                .value(),
            1 << 20
        );
        assert!(Quantity::from_json(&serde_json::json!(true)).is_err());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "abc", "1x", "1..2", ".", "m", "1Mii", "1e", "1e+", "1 Gi", "--1", "1K", "Gi1",
            "1ki",
        ] {
            let err = Quantity::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("quantities must match") || err == QuantityError::Suffix,
                "{bad}: {err}"
            );
        }
        assert!(Quantity::parse("abc")
            .unwrap_err()
            .to_string()
            .contains("regular expression"));
    }

    #[test]
    fn display_is_plain_decimal() {
        assert_eq!(q("250m").to_string(), "0.25");
        assert_eq!(q("1Ki").to_string(), "1024");
        assert_eq!(q("-1.5").to_string(), "-1.5");
    }
}
