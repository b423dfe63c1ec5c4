//! The enumerated options of a stream table (refresh mode, tier, diamond consistency) and its
//! status, with their SQL spellings. Parsing is case-insensitive; the stored spelling is the
//! canonical one returned by `as_str`.

use crate::error::{CoreError, CoreResult};

macro_rules! sql_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical SQL spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parse a user-supplied value, ignoring case and surrounding blanks.
            pub fn parse(value: &str) -> CoreResult<Self> {
                let wanted = value.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| {
                        let valid: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        CoreError::invalid_parameter(format!("unknown {} {:?}", $what, value))
                            .with_hint(format!("Valid values are: {}.", valid.join(", ")))
                    })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

sql_enum!(
    /// How a stream table is brought up to date.
    RefreshMode, "refresh mode", {
        Auto => "AUTO",
        Full => "FULL",
        Differential => "DIFFERENTIAL",
        Immediate => "IMMEDIATE",
    }
);

sql_enum!(
    /// Scheduling importance; multiplies the schedule interval.
    Tier, "tier", {
        Hot => "hot",
        Warm => "warm",
        Cold => "cold",
        Frozen => "frozen",
    }
);

sql_enum!(
    /// Whether stream tables that share an upstream and meet again downstream are refreshed
    /// together.
    DiamondConsistency, "diamond consistency", {
        None => "none",
        Atomic => "atomic",
    }
);

sql_enum!(
    /// Life-cycle state of a stream table.
    Status, "status", {
        Initializing => "INITIALIZING",
        Active => "ACTIVE",
        Suspended => "SUSPENDED",
        Error => "ERROR",
    }
);

impl Tier {
    /// The factor applied to the schedule interval; `None` means the scheduler never refreshes
    /// the stream table (manual refresh still works).
    pub fn interval_multiplier(self) -> Option<u32> {
        match self {
            Tier::Hot => Some(1),
            Tier::Warm => Some(2),
            Tier::Cold => Some(10),
            Tier::Frozen => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn parse_is_case_insensitive_and_canonical() {
        assert_eq!(
            RefreshMode::parse("differential"),
            Ok(RefreshMode::Differential)
        );
        assert_eq!(RefreshMode::parse(" Full "), Ok(RefreshMode::Full));
        assert_eq!(Tier::parse("HOT"), Ok(Tier::Hot));
        assert_eq!(
            DiamondConsistency::parse("Atomic").map(|d| d.as_str()),
            Ok("atomic")
        );
    }

    #[test]
    fn unknown_values_list_the_valid_ones() {
        let err = RefreshMode::parse("FAST").expect_err("FAST is not a mode");
        assert_eq!(err.kind, ErrorKind::InvalidParameterValue);
        assert_eq!(
            err.hint.as_deref(),
            Some("Valid values are: AUTO, FULL, DIFFERENTIAL, IMMEDIATE.")
        );
        assert!(Tier::parse("").is_err());
    }

    #[test]
    fn tier_multipliers_match_the_spec() {
        let m: Vec<Option<u32>> = Tier::ALL.iter().map(|t| t.interval_multiplier()).collect();
        assert_eq!(m, vec![Some(1), Some(2), Some(10), None]);
    }
}
