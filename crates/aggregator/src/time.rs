//! Time: counters are kept per 15-minute UTC slot, so that the hours, days and weeks
//! of every time zone (whose offsets are multiples of 15 minutes) are exact unions of
//! slots; buckets in a zone are named by local wall-clock numbers.

use chrono::{DateTime, NaiveDate, TimeZone};
use chrono_tz::Tz;

/// Length of one counter slot.
pub const SLOT_MS: i64 = 15 * 60 * 1000;

/// The slot an event time falls in.
pub(crate) fn slot_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(SLOT_MS)
}

/// Bucket sizes of the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketSize {
    Hour,
    Day,
    /// Weeks start on Monday.
    Week,
}

/// Seconds since 1970-01-01 00:00 of the local wall clock at `ts_ms`.
fn local_secs(tz: Tz, ts_ms: i64) -> i64 {
    DateTime::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .naive_local()
        .and_utc()
        .timestamp()
}

/// The local hour (hours since the local epoch) of an event time.
pub(crate) fn local_hour(tz: Tz, ts_ms: i64) -> i32 {
    local_secs(tz, ts_ms).div_euclid(3600) as i32
}

pub(crate) fn day_of_hour(hour: i32) -> i32 {
    hour.div_euclid(24)
}

/// 1970-01-01 was a Thursday: week 0 starts on Monday 1969-12-29.
pub(crate) fn week_of_day(day: i32) -> i32 {
    (day + 3).div_euclid(7)
}

/// The bucket key of an event time for a bucket size, in a zone.
pub(crate) fn bucket_key(size: BucketSize, tz: Tz, ts_ms: i64) -> i32 {
    let hour = local_hour(tz, ts_ms);
    match size {
        BucketSize::Hour => hour,
        BucketSize::Day => day_of_hour(hour),
        BucketSize::Week => week_of_day(day_of_hour(hour)),
    }
}

/// The local day number of a date.
pub(crate) fn day_number(date: NaiveDate) -> i32 {
    date.signed_duration_since(NaiveDate::default()).num_days() as i32
}

/// The first UTC instant (ms) of a local date: its midnight, or the first moment after
/// it that exists when a clock change skips midnight.
pub(crate) fn start_of_local_date(tz: Tz, date: NaiveDate) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for quarter in 0..=16 {
        let local = midnight + chrono::Duration::minutes(15 * quarter);
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.timestamp_millis();
        }
    }
    midnight.and_utc().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kyiv_days_start_at_local_midnight() {
        let tz: Tz = "Europe/Kyiv".parse().expect("zone");
        let date = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        let start = start_of_local_date(tz, date);
        // Kyiv is UTC+2 in November: local midnight is 22:00 UTC the day before.
        assert_eq!(
            DateTime::from_timestamp_millis(start)
                .expect("time")
                .to_rfc3339(),
            "2026-11-25T22:00:00+00:00"
        );
        assert_eq!(bucket_key(BucketSize::Day, tz, start), day_number(date));
        assert_eq!(
            bucket_key(BucketSize::Day, tz, start - 1),
            day_number(date) - 1
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let monday = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
        let sunday = NaiveDate::from_ymd_opt(2026, 11, 29).expect("date");
        assert_eq!(
            week_of_day(day_number(monday)),
            week_of_day(day_number(sunday))
        );
        assert_eq!(
            week_of_day(day_number(monday)) - 1,
            week_of_day(day_number(monday) - 1)
        );
    }

    #[test]
    fn half_hour_zones_fall_on_whole_slots() {
        let tz: Tz = "Asia/Kolkata".parse().expect("zone");
        let date = NaiveDate::from_ymd_opt(2026, 11, 26).expect("date");
        assert_eq!(start_of_local_date(tz, date) % SLOT_MS, 0);
    }
}
