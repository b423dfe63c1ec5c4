//! Schedules as users write them: `'5s'`, `'1m'`, `'1h30m'`, `'calculated'`, `'IMMEDIATE'`,
//! a standard five-field cron expression (`'*/5 * * * *'`) or `@hourly` and friends; and
//! `schedule_seconds => N`. Parsing validates and produces a canonical spelling to store.

mod cron;
mod duration;
pub mod groups;
pub mod policy;

pub use cron::{CronField, CronSchedule, CronTime};
pub use duration::{format_seconds, parse_duration_seconds, MAX_INTERVAL_SECONDS};

use crate::error::{CoreError, CoreResult};

/// When a stream table is refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Refreshed when an upstream stream table changed; an upstream with this schedule takes
    /// the tightest schedule among its downstream dependants.
    Calculated,
    /// Maintained inside the writing transaction.
    Immediate,
    /// Refreshed when this many seconds have passed since the last refresh.
    Every(u64),
    /// Refreshed when the cron expression fires.
    Cron(CronSchedule),
}

impl Schedule {
    /// Parse a `schedule =>` argument.
    pub fn parse(text: &str) -> CoreResult<Schedule> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("calculated") {
            return Ok(Schedule::Calculated);
        }
        if trimmed.eq_ignore_ascii_case("immediate") {
            return Ok(Schedule::Immediate);
        }
        if trimmed.starts_with('@') || trimmed.split_whitespace().count() == 5 {
            return CronSchedule::parse(trimmed).map(Schedule::Cron);
        }
        parse_duration_seconds(trimmed)
            .map(Schedule::Every)
            .map_err(|e| {
                e.with_hint(
                "Use a duration such as '5s', '1m', '2h' or '1h30m', 'calculated', 'IMMEDIATE', \
                 or a five-field cron expression such as '*/5 * * * *'.",
            )
            })
    }

    /// Build a schedule from the `schedule =>` and `schedule_seconds =>` arguments, either of
    /// which may be absent. Giving both is allowed only when they agree.
    pub fn from_arguments(
        schedule: Option<&str>,
        seconds: Option<i64>,
    ) -> CoreResult<Option<Schedule>> {
        let from_seconds = match seconds {
            None => None,
            Some(s) if s <= 0 => {
                return Err(CoreError::invalid_parameter(format!(
                    "schedule_seconds must be positive, got {s}"
                ))
                .with_hint("Pass a whole number of seconds greater than zero."))
            }
            Some(s) if s as u64 > MAX_INTERVAL_SECONDS => {
                return Err(CoreError::invalid_parameter(format!(
                    "schedule_seconds {s} is longer than the maximum of {MAX_INTERVAL_SECONDS}"
                ))
                .with_hint("Use a schedule of at most one year, or tier => 'frozen' for manual refreshes only."))
            }
            Some(s) => Some(Schedule::Every(s as u64)),
        };
        let from_text = schedule.map(Schedule::parse).transpose()?;
        match (from_text, from_seconds) {
            (Some(a), Some(b)) if a != b => Err(CoreError::invalid_parameter(
                "schedule and schedule_seconds disagree",
            )
            .with_hint("Give only one of schedule and schedule_seconds.")),
            (a, b) => Ok(a.or(b)),
        }
    }

    /// The spelling stored in the catalog and shown to users.
    pub fn canonical(&self) -> String {
        match self {
            Schedule::Calculated => "calculated".to_string(),
            Schedule::Immediate => "IMMEDIATE".to_string(),
            Schedule::Every(secs) => format_seconds(*secs),
            Schedule::Cron(cron) => cron.source().to_string(),
        }
    }

    /// The fixed interval in seconds, for interval schedules.
    pub fn interval_seconds(&self) -> Option<u64> {
        match self {
            Schedule::Every(secs) => Some(*secs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn spec_schedules_parse() {
        for (text, canonical) in [
            ("1s", "1s"),
            ("2s", "2s"),
            ("5s", "5s"),
            ("10s", "10s"),
            ("30s", "30s"),
            ("1m", "1m"),
            ("5m", "5m"),
            ("2h", "2h"),
            ("90s", "1m30s"),
            ("calculated", "calculated"),
            ("IMMEDIATE", "IMMEDIATE"),
            ("immediate", "IMMEDIATE"),
            ("*/5 * * * *", "*/5 * * * *"),
            ("@hourly", "@hourly"),
        ] {
            let s = Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.canonical(), canonical, "{text}");
        }
    }

    #[test]
    fn invalid_schedules_are_refused() {
        for bad in [
            "5x",
            "-1s",
            "0s",
            "",
            "s",
            "1.5s",
            "* * * *",
            "61 * * * *",
            "@sometimes",
        ] {
            let err = Schedule::parse(bad).expect_err(bad);
            assert_eq!(err.kind, ErrorKind::InvalidParameterValue, "{bad}");
        }
    }

    #[test]
    fn schedule_seconds_and_schedule_combine() {
        assert_eq!(
            Schedule::from_arguments(None, Some(5)),
            Ok(Some(Schedule::Every(5)))
        );
        assert_eq!(
            Schedule::from_arguments(Some("5s"), Some(5)),
            Ok(Some(Schedule::Every(5)))
        );
        assert_eq!(Schedule::from_arguments(None, None), Ok(None));
        assert!(Schedule::from_arguments(Some("1m"), Some(5)).is_err());
        assert!(Schedule::from_arguments(None, Some(0)).is_err());
        assert!(Schedule::from_arguments(None, Some(-3)).is_err());
    }
}
