//! Standard five-field cron expressions (minute hour day-of-month month day-of-week) and the
//! `@hourly`-style shorthands. Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`,
//! lists `a,b`, and month or weekday names. As in Vixie cron, when both day fields are
//! restricted a time matches if either day field matches (a field starting with `*`, such as
//! `*/2`, is not restricted); day-of-week 7 is Sunday, like 0.

use crate::error::{CoreError, CoreResult};

/// One field: the set of allowed values as a bit mask, and whether it was restricted (does not
/// start with `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronField {
    pub allowed: u64,
    pub restricted: bool,
}

impl CronField {
    pub fn contains(&self, value: u32) -> bool {
        value < 64 && self.allowed & (1u64 << value) != 0
    }
}

/// A parsed cron expression; keeps the text it came from for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    source: String,
    pub minute: CronField,
    pub hour: CronField,
    pub day_of_month: CronField,
    pub month: CronField,
    pub day_of_week: CronField,
}

/// A wall-clock minute to test against a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronTime {
    pub minute: u32,
    pub hour: u32,
    pub day_of_month: u32,
    pub month: u32,
    /// 0 = Sunday .. 6 = Saturday
    pub day_of_week: u32,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    names_start: u32,
}

const SPECS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_start: 0,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_start: 0,
    },
    FieldSpec {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        names_start: 1,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        names_start: 1,
    },
    FieldSpec {
        name: "day of week",
        min: 0,
        max: 7,
        names: WEEKDAYS,
        names_start: 0,
    },
];

fn invalid(text: &str, why: String) -> CoreError {
    CoreError::invalid_parameter(format!("invalid cron schedule {text:?}: {why}")).with_hint(
        "A cron schedule has five fields: minute hour day-of-month month day-of-week, \
         for example '*/5 * * * *' or '0 3 * * mon-fri'.",
    )
}

impl CronSchedule {
    pub fn parse(text: &str) -> CoreResult<CronSchedule> {
        let trimmed = text.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            s if s.starts_with('@') => return Err(invalid(text, "unknown shorthand".to_string())),
            _ => trimmed.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(invalid(
                text,
                format!("expected 5 fields, found {}", fields.len()),
            ));
        }
        let mut parsed = [CronField {
            allowed: 0,
            restricted: false,
        }; 5];
        for (i, (field, spec)) in fields.iter().zip(SPECS.iter()).enumerate() {
            parsed[i] = parse_field(field, spec).map_err(|why| invalid(text, why))?;
        }
        let mut day_of_week = parsed[4];
        if day_of_week.contains(7) {
            day_of_week.allowed |= 1;
            day_of_week.allowed &= !(1u64 << 7);
        }
        Ok(CronSchedule {
            source: trimmed.to_string(),
            minute: parsed[0],
            hour: parsed[1],
            day_of_month: parsed[2],
            month: parsed[3],
            day_of_week,
        })
    }

    /// The expression as the user wrote it (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression fires at `t`.
    pub fn matches(&self, t: CronTime) -> bool {
        let dom = self.day_of_month.contains(t.day_of_month);
        let dow = self.day_of_week.contains(t.day_of_week);
        let day = if self.day_of_month.restricted && self.day_of_week.restricted {
            dom || dow
        } else {
            dom && dow
        };
        day && self.minute.contains(t.minute)
            && self.hour.contains(t.hour)
            && self.month.contains(t.month)
    }
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(pos) = spec.names.iter().position(|n| *n == lower) {
        return Ok(spec.names_start + pos as u32);
    }
    let value: u32 = text
        .parse()
        .map_err(|_| format!("{:?} is not a valid {}", text, spec.name))?;
    if value < spec.min || value > spec.max {
        return Err(format!(
            "{} {} is outside {}-{}",
            spec.name, value, spec.min, spec.max
        ));
    }
    Ok(value)
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<CronField, String> {
    let mut allowed = 0u64;
    let mut restricted = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| {
                    format!("step {:?} in the {} field is not a number", step, spec.name)
                })?;
                if step == 0 {
                    return Err(format!("step 0 in the {} field", spec.name));
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            restricted = true;
            (parse_value(a, spec)?, parse_value(b, spec)?)
        } else {
            restricted = true;
            let v = parse_value(range, spec)?;
            // "5/15" means "from 5, every 15" as in common cron implementations
            (v, if step > 1 { spec.max } else { v })
        };
        if low > high {
            return Err(format!(
                "range {}-{} in the {} field runs backwards",
                low, high, spec.name
            ));
        }
        let mut v = low;
        while v <= high {
            allowed |= 1u64 << v;
            v += step;
        }
    }
    Ok(CronField {
        allowed,
        restricted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32, hour: u32, day_of_month: u32, month: u32, day_of_week: u32) -> CronTime {
        CronTime {
            minute,
            hour,
            day_of_month,
            month,
            day_of_week,
        }
    }

    #[test]
    fn every_five_minutes() {
        let c = CronSchedule::parse("*/5 * * * *").expect("valid");
        assert!(c.matches(at(0, 3, 1, 1, 0)));
        assert!(c.matches(at(55, 23, 31, 12, 6)));
        assert!(!c.matches(at(7, 3, 1, 1, 0)));
    }

    #[test]
    fn names_ranges_and_lists() {
        let c = CronSchedule::parse("0 3 * jan,jul mon-fri").expect("valid");
        assert!(c.matches(at(0, 3, 15, 7, 3)));
        assert!(!c.matches(at(0, 3, 15, 7, 0)));
        assert!(!c.matches(at(0, 3, 15, 8, 3)));
    }

    #[test]
    fn sunday_is_zero_or_seven_and_day_fields_or_together() {
        let c = CronSchedule::parse("0 0 1 * 7").expect("valid");
        assert!(c.matches(at(0, 0, 1, 5, 3)), "day of month matches");
        assert!(c.matches(at(0, 0, 9, 5, 0)), "Sunday matches");
        assert!(!c.matches(at(0, 0, 9, 5, 1)));
    }

    #[test]
    fn a_stepped_star_day_field_is_not_restricted() {
        // every other day AND Monday, as in Vixie cron
        let c = CronSchedule::parse("0 0 */2 * mon").expect("valid");
        assert!(c.matches(at(0, 0, 3, 5, 1)), "odd day, Monday");
        assert!(!c.matches(at(0, 0, 2, 5, 1)), "even day, Monday");
        assert!(!c.matches(at(0, 0, 3, 5, 2)), "odd day, Tuesday");
    }

    #[test]
    fn shorthands() {
        let c = CronSchedule::parse("@daily").expect("valid");
        assert!(c.matches(at(0, 0, 9, 5, 1)));
        assert!(!c.matches(at(0, 1, 9, 5, 1)));
        assert_eq!(c.source(), "@daily");
    }

    #[test]
    fn invalid_expressions() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "* * * * 8",
            "@never",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad}");
        }
    }
}
