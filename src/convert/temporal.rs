//! DATE, DATETIME(n), TIMESTAMP(n), TIME(n).
//!
//! Strings: RFC 3339 / ISO 8601 with an offset (or `Z`), converted to the
//! route's time zone; `YYYY-MM-DD HH:MM:SS[.f]` or `YYYY-MM-DDTHH:MM:SS[.f]`
//! without one, taken as already in that zone; `YYYY-MM-DD`. Numbers: epoch
//! time in the route's (or column's) unit, fractions exact. TIME also takes
//! `[-]H:MM:SS[.f]` durations, up to MySQL's 838 hours.
//!
//! Fractional seconds beyond the column's precision are rounded half away
//! from zero, as MySQL does in strict mode (a note, not an error); done here
//! because MariaDB truncates instead, and the two servers should store the
//! same value. DATE keeps the date of a value with a time, as MySQL does.
//!
//! TIMESTAMP literals are local times that the server reads in the
//! session's `time_zone`, so the sessions that write a route must run in the
//! route's zone (for a named zone the server needs its time zone tables):
//! `run` sets it on the writers' sessions of a route with TIMESTAMP columns.
//! Several routes in one run will need TIMESTAMP values written in UTC
//! under `+00:00` instead.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, Unit};

use super::decimal::digits_of;
use super::{Input, Refused};
use crate::config::EpochUnit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemporalKind {
    Date,
    DateTime,
    Timestamp,
    Time,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Temporal {
    pub kind: TemporalKind,
    /// Fractional digits the column keeps, 0 to 6.
    pub fsp: u8,
    pub zone: TimeZone,
    pub epoch: EpochUnit,
}

impl fmt::Display for Temporal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            TemporalKind::Date => "date",
            TemporalKind::DateTime => "datetime",
            TemporalKind::Timestamp => "timestamp",
            TemporalKind::Time => "time",
        };
        f.write_str(name)?;
        if self.kind != TemporalKind::Date && self.fsp > 0 {
            write!(f, "({})", self.fsp)?;
        }
        let zone = self.zone.iana_name().map(str::to_owned).unwrap_or_else(|| {
            let offset = self.zone.to_offset(Timestamp::UNIX_EPOCH);
            if offset.seconds() == 0 {
                "UTC".into()
            } else {
                offset.to_string()
            }
        });
        match self.kind {
            TemporalKind::Time => write!(f, " in {zone}"),
            _ => write!(f, " in {zone}, epochs in {}", self.epoch.as_str()),
        }
    }
}

/// Nanoseconds in one unit of each epoch unit.
fn nanos_per(unit: EpochUnit) -> i128 {
    match unit {
        EpochUnit::Seconds => 1_000_000_000,
        EpochUnit::Millis => 1_000_000,
        EpochUnit::Micros => 1_000,
    }
}

pub(super) fn push(t: &Temporal, input: &Input<'_, '_>, buf: &mut String) -> Result<(), Refused> {
    let expected = || match t.kind {
        TemporalKind::Date => "a date (YYYY-MM-DD, RFC 3339, or an epoch number)",
        TemporalKind::DateTime | TemporalKind::Timestamp => {
            "a date-time (RFC 3339, YYYY-MM-DD HH:MM:SS[.ffffff], or an epoch number)"
        }
        TemporalKind::Time => "a time (HH:MM:SS[.ffffff] or RFC 3339)",
    };
    if t.kind == TemporalKind::Time {
        if let Some(s) = input.str() {
            if let Some(nanos) = duration_nanos(s.trim()) {
                return push_time(nanos, t.fsp, buf).map_err(|d| Refused::because(expected(), d));
            }
        }
    }
    let dt = if let Some(s) = input.str() {
        civil(s.trim(), &t.zone).ok_or_else(|| Refused::expected(expected()))?
    } else if input.number().is_some() && t.kind != TemporalKind::Time {
        let d = digits_of(input).ok_or_else(|| Refused::expected(expected()))?;
        let ts = epoch(&d, t.epoch)
            .ok_or_else(|| Refused::because(expected(), "an epoch out of range"))?;
        t.zone.to_datetime(ts)
    } else {
        return Err(Refused::expected(expected()));
    };
    if t.kind == TemporalKind::Time {
        let nanos = i128::from(dt.hour()) * 3_600_000_000_000
            + i128::from(dt.minute()) * 60_000_000_000
            + i128::from(dt.second()) * 1_000_000_000
            + i128::from(dt.subsec_nanosecond());
        return push_time(nanos, t.fsp, buf).map_err(|d| Refused::because(expected(), d));
    }
    let dt = if t.kind == TemporalKind::Date {
        dt
    } else {
        round(dt, t.fsp).ok_or_else(|| Refused::because(expected(), "out of range"))?
    };
    if dt.year() < 0 {
        return Err(Refused::because(expected(), "a year from 0000 to 9999"));
    }
    buf.push('\'');
    push_date(buf, dt.date());
    if t.kind != TemporalKind::Date {
        use std::fmt::Write;
        let _ = write!(
            buf,
            " {:02}:{:02}:{:02}",
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        push_fraction(buf, dt.subsec_nanosecond() as u32, t.fsp);
    }
    buf.push('\'');
    Ok(())
}

/// The local date-time a string names, in `zone`.
fn civil(s: &str, zone: &TimeZone) -> Option<DateTime> {
    // jiff reads RFC 3339 and ISO 8601, space or `T` between date and time;
    // an offset makes an instant, without one the time is local already.
    let has_offset = s
        .get(10..)
        .is_some_and(|time| time.ends_with(['Z', 'z']) || time.contains(['+', '-']));
    if has_offset {
        return s.parse::<Timestamp>().ok().map(|ts| zone.to_datetime(ts));
    }
    if s.len() == 10 {
        return s
            .parse::<Date>()
            .ok()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()));
    }
    s.parse::<DateTime>().ok()
}

/// The instant an epoch number names.
fn epoch(d: &super::decimal::Digits, unit: EpochUnit) -> Option<Timestamp> {
    let per = nanos_per(unit);
    if d.int.len() > 20 {
        return None;
    }
    let whole: i128 = if d.int.is_empty() {
        0
    } else {
        d.int.parse().ok()?
    };
    // Digits past a nanosecond cannot be kept; they are below any column's
    // precision anyway.
    let per_digits = per.ilog10() as usize;
    let frac: String = d.frac.chars().take(per_digits).collect();
    let frac_nanos: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i128>().ok()? * 10i128.pow((per_digits - frac.len()) as u32)
    };
    let magnitude = whole.checked_mul(per)? + frac_nanos;
    let nanos = if d.negative { -magnitude } else { magnitude };
    Timestamp::from_nanosecond(nanos).ok()
}

/// `dt` rounded to `fsp` fractional digits, half away from zero.
fn round(dt: DateTime, fsp: u8) -> Option<DateTime> {
    let (unit, increment) = match fsp {
        0 => (Unit::Second, 1),
        1 => (Unit::Millisecond, 100),
        2 => (Unit::Millisecond, 10),
        3 => (Unit::Millisecond, 1),
        4 => (Unit::Microsecond, 100),
        5 => (Unit::Microsecond, 10),
        _ => (Unit::Microsecond, 1),
    };
    dt.round(
        jiff::civil::DateTimeRound::new()
            .smallest(unit)
            .increment(increment)
            .mode(RoundMode::HalfExpand),
    )
    .ok()
}

fn push_date(buf: &mut String, d: Date) {
    use std::fmt::Write;
    let _ = write!(buf, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
}

/// `.fff` to `fsp` digits of `nanos` (already rounded), or nothing.
fn push_fraction(buf: &mut String, nanos: u32, fsp: u8) {
    if fsp == 0 {
        return;
    }
    let digits = format!("{nanos:09}");
    buf.push('.');
    buf.push_str(&digits[..fsp as usize]);
}

/// `[-]H:MM:SS[.f]` (any number of hour digits) in nanoseconds.
fn duration_nanos(s: &str) -> Option<i128> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut parts = s.splitn(3, ':');
    let (h, m, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (sec, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |t: &str, max: usize| {
        !t.is_empty() && t.len() <= max && t.bytes().all(|b| b.is_ascii_digit())
    };
    if !(digits(h, 4) && m.len() == 2 && digits(m, 2) && sec.len() == 2 && digits(sec, 2)) {
        return None;
    }
    if !frac.is_empty() && !digits(frac, 9) || rest.ends_with('.') {
        return None;
    }
    let (h, m, sec): (i128, i128, i128) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    if m > 59 || sec > 59 {
        return None;
    }
    let frac_nanos: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i128>().ok()? * 10i128.pow(9 - frac.len() as u32)
    };
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000_000 + frac_nanos;
    Some(if negative { -total } else { total })
}

/// Largest TIME magnitude MySQL keeps: 838:59:59.
const TIME_MAX_NANOS: i128 = (838 * 3600 + 59 * 60 + 59) * 1_000_000_000;

fn push_time(nanos: i128, fsp: u8, buf: &mut String) -> Result<(), String> {
    use std::fmt::Write;
    let step = 10i128.pow(9 - u32::from(fsp));
    let magnitude = nanos.abs();
    let rounded = (magnitude + step / 2) / step * step;
    if rounded > TIME_MAX_NANOS + 999_999_999 - (999_999_999 % step) {
        return Err("at most 838:59:59".into());
    }
    let secs = rounded / 1_000_000_000;
    buf.push('\'');
    if nanos < 0 && rounded > 0 {
        buf.push('-');
    }
    let _ = write!(
        buf,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    push_fraction(buf, (rounded % 1_000_000_000) as u32, fsp);
    buf.push('\'');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::super::Conversion;
    use super::*;

    fn conv(kind: TemporalKind, fsp: u8, zone: &str, epoch: EpochUnit) -> Conversion {
        Conversion::Temporal(Temporal {
            kind,
            fsp,
            zone: crate::config::parse_time_zone(zone).unwrap(),
            epoch,
        })
    }

    fn dt(fsp: u8) -> Conversion {
        conv(TemporalKind::DateTime, fsp, "UTC", EpochUnit::Millis)
    }

    #[test]
    fn rfc3339_offsets_convert_to_the_route_zone() {
        let c = dt(6);
        assert_eq!(
            run(&c, r#""2024-02-29T23:30:00.123456+05:30""#).unwrap(),
            "'2024-02-29 18:00:00.123456'"
        );
        assert_eq!(
            run(&c, r#""2024-03-01T00:15:00-00:30""#).unwrap(),
            "'2024-03-01 00:45:00.000000'"
        );
        assert_eq!(
            run(&c, r#""2024-01-01T00:00:00Z""#).unwrap(),
            "'2024-01-01 00:00:00.000000'"
        );
        let kolkata = conv(TemporalKind::DateTime, 0, "+05:30", EpochUnit::Millis);
        assert_eq!(
            run(&kolkata, r#""2024-01-01T00:00:00Z""#).unwrap(),
            "'2024-01-01 05:30:00'"
        );
    }

    #[test]
    fn named_zones_follow_daylight_saving() {
        let paris = conv(TemporalKind::DateTime, 0, "Europe/Paris", EpochUnit::Millis);
        assert_eq!(
            run(&paris, r#""2024-01-15T12:00:00Z""#).unwrap(),
            "'2024-01-15 13:00:00'"
        );
        assert_eq!(
            run(&paris, r#""2024-07-15T12:00:00Z""#).unwrap(),
            "'2024-07-15 14:00:00'"
        );
    }

    #[test]
    fn local_texts_are_taken_as_written() {
        let c = dt(0);
        assert_eq!(
            run(&c, r#""2024-05-06 07:08:09""#).unwrap(),
            "'2024-05-06 07:08:09'"
        );
        assert_eq!(
            run(&c, r#""2024-05-06T07:08:09""#).unwrap(),
            "'2024-05-06 07:08:09'"
        );
        assert_eq!(run(&c, r#""1969-12-31""#).unwrap(), "'1969-12-31 00:00:00'");
        assert_eq!(
            run(&c, r#""0999-01-01 00:00:00""#).unwrap(),
            "'0999-01-01 00:00:00'"
        );
    }

    #[test]
    fn fractions_keep_the_column_precision_rounding_half_up() {
        let c = dt(3);
        assert_eq!(
            run(&c, r#""2024-01-01 00:00:00.1234""#).unwrap(),
            "'2024-01-01 00:00:00.123'"
        );
        assert_eq!(
            run(&c, r#""2024-01-01 00:00:00.1235""#).unwrap(),
            "'2024-01-01 00:00:00.124'"
        );
        // Rounding carries through the day, month and year.
        assert_eq!(
            run(&dt(0), r#""2023-12-31 23:59:59.5""#).unwrap(),
            "'2024-01-01 00:00:00'"
        );
        assert_eq!(
            run(&dt(6), r#""2024-01-01 00:00:00.0000005""#).unwrap(),
            "'2024-01-01 00:00:00.000001'"
        );
    }

    #[test]
    fn epochs_in_each_unit() {
        let s = conv(TemporalKind::DateTime, 0, "UTC", EpochUnit::Seconds);
        let ms = conv(TemporalKind::Timestamp, 3, "UTC", EpochUnit::Millis);
        let us = conv(TemporalKind::DateTime, 6, "UTC", EpochUnit::Micros);
        assert_eq!(run(&s, "1699267200").unwrap(), "'2023-11-06 10:40:00'");
        assert_eq!(run(&s, "-86400").unwrap(), "'1969-12-31 00:00:00'");
        assert_eq!(run(&s, "1.5").unwrap(), "'1970-01-01 00:00:02'");
        assert_eq!(
            run(&ms, "1699267200123").unwrap(),
            "'2023-11-06 10:40:00.123'"
        );
        assert_eq!(
            run(&us, "1709251199999999").unwrap(),
            "'2024-02-29 23:59:59.999999'"
        );
        assert!(run(&s, "1e30").is_err());
    }

    #[test]
    fn dates_keep_the_day_in_the_zone() {
        let c = conv(TemporalKind::Date, 0, "+05:30", EpochUnit::Millis);
        assert_eq!(run(&c, r#""2024-02-29""#).unwrap(), "'2024-02-29'");
        assert_eq!(
            run(&c, r#""2024-02-28T20:00:00Z""#).unwrap(),
            "'2024-02-29'"
        );
        assert_eq!(run(&c, r#""1900-01-01""#).unwrap(), "'1900-01-01'");
        assert!(run(&c, r#""2023-02-29""#).is_err());
        assert!(run(&c, r#""yesterday""#).is_err());
    }

    #[test]
    fn times_of_day_and_durations() {
        let c = conv(TemporalKind::Time, 2, "UTC", EpochUnit::Millis);
        assert_eq!(run(&c, r#""12:34:56.789""#).unwrap(), "'12:34:56.79'");
        assert_eq!(run(&c, r#""-838:59:59""#).unwrap(), "'-838:59:59.00'");
        assert!(run(&c, r#""839:00:00""#).is_err());
        assert_eq!(
            run(&c, r#""2024-01-01T10:00:00+02:00""#).unwrap(),
            "'08:00:00.00'"
        );
        assert!(run(&c, "3600").is_err());
        assert!(run(&c, r#""12:60:00""#).is_err());
    }

    #[test]
    fn other_values_are_refused() {
        let c = dt(0);
        for bad in [
            "true",
            "[1]",
            r#""2024-13-01 00:00:00""#,
            r#""""#,
            r#""-0001-01-01T00:00:00Z""#,
        ] {
            assert!(run(&c, bad).is_err(), "{bad}");
        }
    }
}
