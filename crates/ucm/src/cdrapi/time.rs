//! startTime / endTime formats (spec §4.3).

/// A parsed time bound. Turning it into an instant needs the PBX time zone
/// (and the clock for `now`), which the caller supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// No offset given: a wall-clock time, read in the PBX time zone (or UTC,
    /// by configuration). Time-only forms are on 2000-01-01; date-only forms
    /// at 00:00:00.
    Naive(jiff::civil::DateTime),
    /// An offset was given, or 10-digit epoch seconds: an absolute instant.
    Instant(jiff::Timestamp),
    /// `now`.
    Now,
}

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

use super::pattern::quoted;

/// Parses a startTime/endTime value (§4.3): `now`, 10-digit epoch seconds,
/// `[YYYY-MM-DD(T| )]HH:MM[:SS[.f{1,9}]][offset]` or `YYYY-MM-DD`. The offset
/// is `Z`, `±HH:MM`, `±HHMM` or `±HH`; a space stands for `+` because the old
/// GET API decodes an unescaped `+` to one (`…T00:00:00 06:00`).
/// Surrounding whitespace is an error here; the lenient API trims first.
pub fn parse_time(s: &str) -> Result<TimeSpec, String> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(TimeSpec::Now);
    }
    if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .ok()
            .and_then(|secs| Timestamp::from_second(secs).ok())
            .map(TimeSpec::Instant)
            .ok_or_else(|| format!("epoch seconds out of range: {}", quoted(s)));
    }
    let bad = || {
        format!(
            "not a time: {} (expected [YYYY-MM-DDT]HH:MM[:SS[.fff]][±HH:MM|Z], \
             YYYY-MM-DD, now or 10-digit epoch seconds)",
            quoted(s)
        )
    };
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let ((y, mo, d), (h, mi, sec, ns), offset) = c.datetime().ok_or_else(bad)?;
    let out_of_range = |e: jiff::Error| format!("invalid date or time {}: {e}", quoted(s));
    let dt = DateTime::new(y, mo, d, h, mi, sec, ns).map_err(out_of_range)?;
    match offset {
        None => Ok(TimeSpec::Naive(dt)),
        Some(secs) => {
            let off = Offset::from_seconds(secs).map_err(out_of_range)?;
            off.to_timestamp(dt)
                .map(TimeSpec::Instant)
                .map_err(out_of_range)
        }
    }
}

type Date = (i16, i8, i8);
type Time = (i8, i8, i8, i32);

/// A byte cursor; `eat` and `num` consume only on success.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, set: &[u8]) -> Option<u8> {
        let b = *self.s.get(self.i).filter(|b| set.contains(b))?;
        self.i += 1;
        Some(b)
    }

    /// Exactly `n` ASCII digits.
    fn num(&mut self, n: usize) -> Option<i32> {
        let digits = self.s.get(self.i..self.i + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(
            digits
                .iter()
                .fold(0, |acc, &b| acc * 10 + i32::from(b - b'0')),
        )
    }

    fn two(&mut self) -> Option<i8> {
        self.num(2).and_then(|v| i8::try_from(v).ok())
    }

    /// The whole input; syntax only, ranges are checked by jiff.
    fn datetime(&mut self) -> Option<(Date, Time, Option<i32>)> {
        // A date is four digits and a '-'; otherwise this is a time-only form.
        let date = if self.s.get(4) == Some(&b'-') {
            let y = i16::try_from(self.num(4)?).ok()?;
            self.eat(b"-")?;
            let mo = self.two()?;
            self.eat(b"-")?;
            let d = self.two()?;
            if self.done() {
                return Some(((y, mo, d), (0, 0, 0, 0), None));
            }
            self.eat(b"T ")?;
            (y, mo, d)
        } else {
            (2000, 1, 1)
        };
        let time = self.time()?;
        let offset = self.offset()?;
        self.done().then_some((date, time, offset))
    }

    fn time(&mut self) -> Option<Time> {
        let h = self.two()?;
        self.eat(b":")?;
        let mi = self.two()?;
        let (mut sec, mut ns) = (0, 0);
        if self.eat(b":").is_some() {
            sec = self.two()?;
            if self.eat(b".").is_some() {
                let start = self.i;
                while self.i - start < 9 && self.eat(b"0123456789").is_some() {}
                let frac = self.s.get(start..self.i)?;
                if frac.is_empty() {
                    return None;
                }
                // Scale to nanoseconds: pad to 9 digits.
                ns = (0..9).fold(0, |acc, k| {
                    acc * 10 + frac.get(k).map_or(0, |&b| i32::from(b - b'0'))
                });
            }
        }
        Some((h, mi, sec, ns))
    }

    /// `Some(None)`: no offset; `Some(Some(secs))`: an offset; `None`: junk.
    fn offset(&mut self) -> Option<Option<i32>> {
        if self.done() {
            return Some(None);
        }
        if self.eat(b"Zz").is_some() {
            return Some(Some(0));
        }
        let sign = if self.eat(b"+- ")? == b'-' { -1 } else { 1 };
        let h = self.num(2)?;
        let m = if self.done() {
            0
        } else {
            self.eat(b":");
            self.num(2)?
        };
        (h <= 23 && m <= 59).then_some(Some(sign * (h * 3600 + m * 60)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn naive(s: &str) -> DateTime {
        match parse_time(s).unwrap() {
            TimeSpec::Naive(dt) => dt,
            other => panic!("{s:?} gave {other:?}"),
        }
    }
    fn instant(s: &str) -> Timestamp {
        match parse_time(s).unwrap() {
            TimeSpec::Instant(ts) => ts,
            other => panic!("{s:?} gave {other:?}"),
        }
    }
    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn date_time_forms() {
        assert_eq!(naive("2024-05-01T13:45"), date(2024, 5, 1).at(13, 45, 0, 0));
        assert_eq!(
            naive("2024-05-01T13:45:07"),
            date(2024, 5, 1).at(13, 45, 7, 0)
        );
        assert_eq!(
            naive("2024-05-01T13:45:07.250"),
            date(2024, 5, 1).at(13, 45, 7, 250_000_000)
        );
        assert_eq!(
            naive("2024-05-01T13:45:07.5"),
            date(2024, 5, 1).at(13, 45, 7, 500_000_000)
        );
        assert_eq!(
            naive("2024-05-01T13:45:07.123456789"),
            date(2024, 5, 1).at(13, 45, 7, 123_456_789)
        );
        assert_eq!(
            naive("2024-05-01 13:45:07"),
            date(2024, 5, 1).at(13, 45, 7, 0)
        );
        assert_eq!(naive("2024-05-01"), date(2024, 5, 1).at(0, 0, 0, 0));
    }

    #[test]
    fn time_only_is_on_2000_01_01() {
        assert_eq!(naive("13:45"), date(2000, 1, 1).at(13, 45, 0, 0));
        assert_eq!(naive("13:45:07"), date(2000, 1, 1).at(13, 45, 7, 0));
        assert_eq!(
            naive("13:45:07.001"),
            date(2000, 1, 1).at(13, 45, 7, 1_000_000)
        );
        assert_eq!(instant("13:45Z"), ts("2000-01-01T13:45:00Z"));
    }

    #[test]
    fn now_and_epoch() {
        assert_eq!(parse_time("now").unwrap(), TimeSpec::Now);
        assert_eq!(parse_time("NOW").unwrap(), TimeSpec::Now);
        assert_eq!(instant("1714521600"), ts("2024-05-01T00:00:00Z"));
        assert_eq!(instant("0000000000"), Timestamp::UNIX_EPOCH);
        // Not 10 digits: neither epoch nor any other form.
        assert!(parse_time("171452160").is_err() && parse_time("17145216000").is_err());
    }

    #[test]
    fn offsets() {
        let want = ts("2013-07-01T06:00:00Z");
        for s in [
            "2013-07-01T00:00:00-06:00",
            "2013-07-01T00:00:00-0600",
            "2013-07-01T00:00:00-06",
            "2013-07-01T00:00-06:00",
            "2013-07-01T12:00:00+06:00",
            "2013-07-01T12:00:00+0600",
            "2013-07-01T12:00:00+06",
            "2013-07-01T06:00:00Z",
            "2013-07-01T06:00:00.000Z",
            "2013-07-01 06:00:00Z",
        ] {
            assert_eq!(instant(s), want, "{s}");
        }
        assert_eq!(
            instant("2024-05-01T00:00+05:30"),
            ts("2024-04-30T18:30:00Z")
        );
    }

    #[test]
    fn space_is_a_decoded_plus() {
        let want = ts("2013-07-01T06:00:00Z");
        assert_eq!(instant("2013-07-01T12:00:00 06:00"), want);
        assert_eq!(instant("2013-07-01T12:00 0600"), want);
        assert_eq!(instant("12:00 06:00"), ts("2000-01-01T06:00:00Z"));
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "yesterday",
            "2024-02-30",
            "2024-02-30T00:00",
            "2024-13-01T00:00",
            "24:00",
            "2024-05-01T24:00:00",
            "12:60",
            "23:59:60",
            "2016-12-31T23:59:60Z",
            "2024-05-01T",
            "2024-05-01T1:00",
            "2024-5-1",
            "2024-05-01T00:00:00.",
            "2024-05-01T00:00:00.1234567890",
            "2024-05-01T00:00:00+24:00",
            "2024-05-01T00:00:00+05:60",
            "2024-05-01T00:00:00+5",
            "2024-05-01T00:00:00+05:",
            "2024-05-01T00:00:00+05:3",
            "2024-05-01T00:00:00  06:00",
            "2024-05-01Z",
            "2024-05-01T00:00Zx",
            " 2024-05-01",
            "2024-05-01 ",
            "12:00 ",
            "12:00.5",
            "２024-05-01",
        ] {
            assert!(
                parse_time(bad).is_err(),
                "{bad:?} gave {:?}",
                parse_time(bad)
            );
        }
    }

    #[test]
    fn error_names_the_value() {
        let e = parse_time("2024-02-30").unwrap_err();
        assert!(e.contains("\"2024-02-30\""), "{e}");
        let e = parse_time("x".repeat(1000).as_str()).unwrap_err();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn display_round_trips() {
        for dt in [
            date(2024, 5, 1).at(0, 0, 0, 0),
            date(1999, 12, 31).at(23, 59, 59, 999_999_999),
        ] {
            assert_eq!(naive(&dt.to_string()), dt);
        }
    }
}
