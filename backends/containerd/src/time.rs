//! Timestamps as containerd sends them and as berth stores them (unix nanoseconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix nanoseconds of a protobuf timestamp; `None` for a missing timestamp and for Go's
/// zero time (`0001-01-01T00:00:00Z`, which containerd sends as the `exited_at` of a task
/// that has not exited) or anything else at or before the unix epoch.
pub fn unix_nanos(ts: Option<&prost_types::Timestamp>) -> Option<i64> {
    let ts = ts?;
    if ts.seconds < 0 || (ts.seconds == 0 && ts.nanos <= 0) {
        return None;
    }
    Some(
        ts.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(ts.nanos.max(0))),
    )
}

/// The current wall clock in unix nanoseconds.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 (UTC, whole seconds) of now + `after`, the format of containerd's
/// `containerd.io/gc.expire` lease label.
pub fn rfc3339_in(after: Duration) -> String {
    let secs = SystemTime::now()
        .checked_add(after)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// RFC 3339 (UTC) of unix seconds.
fn rfc3339(unix_secs: u64) -> String {
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(0);
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_time_is_not_a_time() {
        let zero = prost_types::Timestamp {
            seconds: -62_135_596_800,
            nanos: 0,
        };
        assert_eq!(unix_nanos(Some(&zero)), None);
        assert_eq!(unix_nanos(None), None);
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        assert_eq!(unix_nanos(Some(&t)), Some(1_700_000_000_000_000_005));
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
