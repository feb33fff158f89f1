//! Timestamps: milliseconds since the Unix epoch in storage, RFC 3339 on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ValidationError;

/// The wall clock, as services read it: the system's, or one a test sets
/// and moves (`Clock::manual`), so windows and TTLs that outlive a process
/// (rate windows shared through Redis, cache entries) are tested without
/// sleeping.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<std::sync::Arc<std::sync::atomic::AtomicI64>>);

impl Clock {
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands at `at` until moved.
    pub fn manual(at: Timestamp) -> Self {
        Self(Some(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(at.millis()))))
    }

    pub fn now(&self) -> Timestamp {
        match &self.0 {
            None => Timestamp::now(),
            Some(ms) => Timestamp(ms.load(std::sync::atomic::Ordering::Relaxed)),
        }
    }

    /// Moves a manual clock on; the system clock cannot be moved.
    pub fn advance(&self, by: std::time::Duration) {
        if let Some(ms) = &self.0 {
            let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
            ms.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A point in time with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self((nanos / 1_000_000) as i64)
    }

    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Parses RFC 3339 (`2026-11-29T10:00:00Z`, offsets allowed).
    pub fn parse_rfc3339(param: &str, s: &str) -> Result<Self, ValidationError> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
            ValidationError::new(param, format!("{param} {s:?} is not an RFC 3339 timestamp: {e}"))
        })?;
        Ok(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// The start (UTC midnight on the 1st) of this timestamp's month.
    pub fn month_start(self) -> Self {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let first = t.date().replace_day(1).unwrap_or(t.date());
                let start = first.midnight().assume_utc();
                Self((start.unix_timestamp_nanos() / 1_000_000) as i64)
            }
            Err(_) => self,
        }
    }

    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.0.to_string())
    }
}

impl Serialize for Timestamp {
    /// As [`Timestamp::to_rfc3339`], formatted on the stack (records are
    /// serialized per request).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        let mut out = std::io::Cursor::new(&mut buf[..]);
        let nanos = i128::from(self.0) * 1_000_000;
        let formatted = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| t.format_into(&mut out, &Rfc3339).ok())
            .map(|_| out.position() as usize);
        match formatted {
            Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default()),
            None => s.serialize_str(&self.0.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339("timestamp", &s).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_keeps_millis() {
        let t = Timestamp::parse_rfc3339("t", "2026-11-29T10:00:00.123Z").unwrap_or(Timestamp(0));
        assert_eq!(t.millis(), 1_795_946_400_123);
        assert_eq!(t.to_rfc3339(), "2026-11-29T10:00:00.123Z");
    }

    #[test]
    fn serialized_as_rfc3339() {
        for ms in [0, 1_795_946_400_123, 1_795_946_400_000, 253_402_300_799_999] {
            let t = Timestamp(ms);
            assert_eq!(serde_json::to_value(t).ok(), Some(serde_json::json!(t.to_rfc3339())));
        }
    }

    #[test]
    fn offsets_are_normalised() {
        let a = Timestamp::parse_rfc3339("t", "2026-11-29T11:00:00+01:00");
        let b = Timestamp::parse_rfc3339("t", "2026-11-29T10:00:00Z");
        assert_eq!(a, b);
    }

    #[test]
    fn garbage_is_rejected_with_the_param() {
        let err = Timestamp::parse_rfc3339("expires_at", "tomorrow");
        assert!(err.is_err_and(|e| e.param.as_deref() == Some("expires_at")));
    }
}
