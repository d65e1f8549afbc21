//! Row ids as types, so a scan id cannot be passed where a finding id is
//! meant. Each is the database's own integer key (SQLite `INTEGER PRIMARY
//! KEY`, a PostgreSQL `BIGINT`), shown and parsed as that plain number: the
//! CLI (`draco show 3`), the JSON output and the audit log keep printing the
//! same digits they always did.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A number that is not an id, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{raw}` is not a {what} id (expected a whole number, as listed by Draco)")]
pub struct InvalidId {
    pub what: &'static str,
    pub raw: String,
}

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id the database gave this row.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            /// The plain number, for a subject such as `finding:3` or a log field.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(raw: i64) -> Self {
                Self(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        /// Parses the plain number (`"3"`), as `draco findings` lists it.
        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse::<i64>().map(Self).map_err(|_| InvalidId {
                    what: $what,
                    raw: s.to_owned(),
                })
            }
        }
    };
}

row_id!(
    /// A finding: one problem, kept across scans by its fingerprint.
    FindingId,
    "finding"
);
row_id!(
    /// A change request, one per finding (re-proposed in place when it failed).
    ChangeRequestId,
    "change request"
);
row_id!(
    /// One scan of a source.
    ScanId,
    "scan"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_as_the_plain_number() {
        let id: FindingId = "42".parse().expect("a number");
        assert_eq!(id, FindingId::new(42));
        assert_eq!(id.to_string(), "42");
        assert_eq!(serde_json::to_string(&id).expect("json"), "42");
        assert_eq!(
            serde_json::from_str::<ScanId>("7").expect("json"),
            ScanId::new(7)
        );
    }

    #[test]
    fn what_is_not_a_number_is_refused_naming_the_kind_of_id() {
        let error = "4x".parse::<ChangeRequestId>().unwrap_err();
        assert_eq!(error.what, "change request");
        assert!(
            error
                .to_string()
                .contains("`4x` is not a change request id")
        );
        assert!("".parse::<FindingId>().is_err());
    }
}
