//! `Timestamp`: an instant in UTC with second precision, the one time type
//! of the API, the database and the audit log. It has one text form, RFC
//! 3339 with a `Z` (`2026-11-25T09:00:05Z`), used by `Display`, serde and
//! the SQLite columns alike; because that form has a fixed width, its text
//! order is its time order, which the SQL filters on time columns rely on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Decode, Encode, Type};
use time::{Duration, OffsetDateTime, UtcOffset};

/// An instant in UTC, truncated to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// Text that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp")]
pub struct InvalidTimestamp;

impl Timestamp {
    /// `t` in UTC, with its fraction of a second dropped.
    pub fn from_datetime(t: OffsetDateTime) -> Timestamp {
        let t = t.to_offset(UtcOffset::UTC);
        // Cannot fail: 0 is a valid nanosecond.
        Timestamp(t.replace_nanosecond(0).unwrap_or(t))
    }

    /// The system clock's now, for the command-line verbs that run outside
    /// the server (and its injected [`super::Clock`]).
    pub fn now_utc() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    /// Parses RFC 3339 text with any offset.
    pub fn parse(s: &str) -> Result<Timestamp, InvalidTimestamp> {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(Timestamp::from_datetime)
            .map_err(|_| InvalidTimestamp)
    }

    /// This instant moved by `d` (saturating at the calendar's ends).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d))
    }

    /// This instant moved `secs` seconds later.
    pub fn plus_secs(self, secs: u64) -> Timestamp {
        self.plus(Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)))
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Timestamp {
        Timestamp::from_datetime(t)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;

    fn from_str(s: &str) -> Result<Timestamp, InvalidTimestamp> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Stored as the same TEXT the API shows, so rows written before this type
/// existed read back unchanged.
impl Type<Any> for Timestamp {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl Encode<'_, Any> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<Any>>::encode(self.to_string(), buf)
    }
}

impl<'r> Decode<'r, Any> for Timestamp {
    fn decode(value: AnyValueRef<'r>) -> Result<Timestamp, BoxDynError> {
        let text = <&str as Decode<Any>>::decode(value)?;
        Ok(Timestamp::parse(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form() {
        let t = Timestamp::parse("2026-11-25T10:00:05.75+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-25T09:00:05Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-25T09:00:05Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2026-11-25T09:00:05Z\"").unwrap();
        assert_eq!(back, t);
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Timestamp::parse("2026-11-25T09:00:05Z").unwrap();
        let b = a.plus_secs(1);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(b.to_string(), "2026-11-25T09:00:06Z");
        assert_eq!(
            a.plus(Duration::seconds(-5)).to_string(),
            "2026-11-25T09:00:00Z"
        );
    }

    #[tokio::test]
    async fn stored_as_the_same_text() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let t = Timestamp::parse("2026-11-25T09:00:05Z").unwrap();
        let text: String = sqlx::query_scalar("SELECT $1")
            .bind(t)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(text, "2026-11-25T09:00:05Z");
        let back: Timestamp = sqlx::query_scalar("SELECT '2026-11-25T09:00:05Z'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(back, t);
        let none: Option<Timestamp> = sqlx::query_scalar("SELECT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(none, None);
    }
}
