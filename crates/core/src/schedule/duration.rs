//! Interval schedules: `'5s'`, `'1m'`, `'1h30m'`, `'2 hours'`.

use crate::error::{CoreError, CoreResult};

/// The longest interval accepted: one year. Longer schedules are almost certainly a typo, and
/// the bound keeps all arithmetic on intervals far from overflow.
pub const MAX_INTERVAL_SECONDS: u64 = 366 * 24 * 3600;

const UNITS: &[(&[&str], u64)] = &[
    (&["s", "sec", "secs", "second", "seconds"], 1),
    (&["m", "min", "mins", "minute", "minutes"], 60),
    (&["h", "hr", "hrs", "hour", "hours"], 3600),
    (&["d", "day", "days"], 86400),
];

fn invalid(text: &str, why: &str) -> CoreError {
    CoreError::invalid_parameter(format!("invalid schedule {text:?}: {why}"))
}

/// Parse a duration made of one or more `<number><unit>` groups into seconds.
pub fn parse_duration_seconds(text: &str) -> CoreResult<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid(text, "it is empty"));
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(invalid(
                text,
                "expected a whole number of seconds, minutes, hours or days",
            ));
        }
        let number: u64 = rest[..digits_end]
            .parse()
            .map_err(|_| invalid(text, "the number is too large"))?;
        rest = rest[digits_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].to_ascii_lowercase();
        let factor = UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit.as_str()))
            .map(|(_, factor)| *factor)
            .ok_or_else(|| invalid(text, "the unit must be s, m, h or d"))?;
        total = number
            .checked_mul(factor)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| invalid(text, "the interval is too long"))?;
        rest = rest[unit_end..].trim_start();
    }
    if total == 0 {
        return Err(invalid(text, "the interval must be longer than zero"));
    }
    if total > MAX_INTERVAL_SECONDS {
        return Err(invalid(text, "the interval is longer than one year"));
    }
    Ok(total)
}

/// Format seconds with the largest units: 90 -> `1m30s`, 3600 -> `1h`, 86400 -> `1d`.
pub fn format_seconds(mut secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_seconds("5s"), Ok(5));
        assert_eq!(parse_duration_seconds("1m"), Ok(60));
        assert_eq!(parse_duration_seconds("1h30m"), Ok(5400));
        assert_eq!(parse_duration_seconds("2 hours"), Ok(7200));
        assert_eq!(parse_duration_seconds("1d"), Ok(86400));
        assert!(parse_duration_seconds("99999999999999999999s").is_err());
        assert!(parse_duration_seconds("400d").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for secs in [1, 59, 60, 61, 3599, 3600, 5400, 86400, 90061] {
            assert_eq!(parse_duration_seconds(&format_seconds(secs)), Ok(secs));
        }
        assert_eq!(format_seconds(90061), "1d1h1m1s");
    }
}
