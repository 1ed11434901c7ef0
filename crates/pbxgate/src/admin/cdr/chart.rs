//! Calls per hour as an inline SVG bar chart: answered and not answered
//! calls stacked, per hour of the PBX time zone (per day or month when the
//! window is longer than a month). The database counts calls per quarter
//! hour of UTC; every time zone's offset is a whole number of quarter hours,
//! so those buckets add up exactly into local hours, days and months here.

use jiff::ToSpan;
use jiff::tz::TimeZone;
use store::CallBucket;

use crate::admin::page::escape;

/// The buckets the store counts in.
pub const BUCKET_MS: i64 = 15 * 60_000;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Longest window drawn per hour (745 bars), then per day up to this many days.
const HOURLY_DAYS: i64 = 31;
const DAILY_DAYS: i64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Hour,
    Day,
    Month,
}

/// One bar: `[start_ms, end_ms)` and its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub start_ms: i64,
    pub end_ms: i64,
    pub answered: u64,
    pub unanswered: u64,
}

/// The bars of a window. `from`/`to`: the filter's bounds; without them the
/// window is that of the calls (up to `now`). A window longer than a month
/// is cut to the span that has calls. `None` when there are no calls.
pub fn bars(
    buckets: &[CallBucket],
    from: Option<i64>,
    to: Option<i64>,
    now: i64,
    tz: &TimeZone,
) -> Option<(Unit, Vec<Bar>)> {
    let first = buckets.first()?.start_ms;
    let last_end = buckets.last()?.start_ms + BUCKET_MS;
    let mut lo = from.unwrap_or(first).min(first);
    let mut hi = to.unwrap_or(now).max(last_end);
    if hi - lo > HOURLY_DAYS * DAY_MS {
        lo = lo.max(first);
        hi = hi.min(last_end);
    }
    let unit = if hi - lo <= HOURLY_DAYS * DAY_MS {
        Unit::Hour
    } else if hi - lo <= DAILY_DAYS * DAY_MS {
        Unit::Day
    } else {
        Unit::Month
    };
    let mut bars: Vec<Bar> = Vec::new();
    let mut start = floor(lo, unit, tz)?;
    while start < hi {
        let end = next(start, unit, tz)?;
        bars.push(Bar {
            start_ms: start,
            end_ms: end,
            answered: 0,
            unanswered: 0,
        });
        start = end;
    }
    for b in buckets {
        let i = bars.partition_point(|bar| bar.end_ms <= b.start_ms);
        if let Some(bar) = bars.get_mut(i) {
            bar.answered += b.answered;
            bar.unanswered += b.unanswered;
        }
    }
    Some((unit, bars))
}

fn zoned(ms: i64, tz: &TimeZone) -> Option<jiff::ZonedDateTime> {
    Some(
        jiff::Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned_datetime(tz.clone()),
    )
}

/// The start of the local hour, day or month holding `ms`.
fn floor(ms: i64, unit: Unit, tz: &TimeZone) -> Option<i64> {
    let z = zoned(ms, tz)?;
    let start = match unit {
        Unit::Hour => {
            let offset_ms = i64::from(z.offset().seconds()) * 1000;
            return Some(ms - (ms + offset_ms).rem_euclid(HOUR_MS));
        }
        Unit::Day => z.start_of_day().ok()?,
        Unit::Month => z.first_of_month().ok()?.start_of_day().ok()?,
    };
    Some(start.timestamp().as_millisecond())
}

/// The start of the next bar. Hours are steps of 60 minutes on the clock
/// (a DST change repeats or skips one local hour, as clocks do).
fn next(ms: i64, unit: Unit, tz: &TimeZone) -> Option<i64> {
    let z = zoned(ms, tz)?;
    let next = match unit {
        Unit::Hour => return Some(ms + HOUR_MS),
        Unit::Day => z.tomorrow().ok()?.start_of_day().ok()?,
        Unit::Month => z.checked_add(1.month()).ok()?.start_of_day().ok()?,
    };
    Some(next.timestamp().as_millisecond())
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 6.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 42.0;

/// The chart, or a line saying there is nothing to draw.
pub fn render(chart: Option<&(Unit, Vec<Bar>)>, tz: &TimeZone, tz_name: &str) -> String {
    let Some((unit, bars)) = chart.filter(|(_, b)| !b.is_empty()) else {
        return "<section class=\"cdr-chart\" aria-labelledby=\"chart-title\">\
                <h3 id=\"chart-title\">Calls per hour</h3>\
                <p class=\"muted\" id=\"chart-empty\">No calls in this window.</p></section>"
            .into();
    };
    let per = match unit {
        Unit::Hour => "hour",
        Unit::Day => "day",
        Unit::Month => "month",
    };
    let answered: u64 = bars.iter().map(|b| b.answered).sum();
    let unanswered: u64 = bars.iter().map(|b| b.unanswered).sum();
    let max = bars
        .iter()
        .map(|b| b.answered + b.unanswered)
        .max()
        .unwrap_or(0);
    let (step, top) = scale(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bw = plot_w / bars.len() as f64;
    let gap = if bw > 4.0 { bw * 0.18 } else { 0.0 };
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / top as f64;

    let mut svg = format!(
        "<svg class=\"chart\" id=\"cdr-chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"chart-title chart-summary\" data-unit=\"{per}\">"
    );
    // Grid lines and the count scale.
    let mut v = 0;
    while v <= top {
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            WIDTH - RIGHT,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0
        ));
        v += step;
    }
    let label_every = label_step(*unit, bars.len());
    let mut last_day = String::new();
    for (i, bar) in bars.iter().enumerate() {
        let x = LEFT + i as f64 * bw;
        let (Some(start), Some(end)) = (zoned(bar.start_ms, tz), zoned(bar.end_ms, tz)) else {
            continue;
        };
        let total = bar.answered + bar.unanswered;
        let when = match unit {
            Unit::Hour => format!(
                "{}–{}",
                start.strftime("%Y-%m-%d %H:%M"),
                end.strftime("%H:%M")
            ),
            Unit::Day => start.strftime("%Y-%m-%d").to_string(),
            Unit::Month => start.strftime("%Y-%m").to_string(),
        };
        svg.push_str(&format!(
            "<g class=\"bar\" data-start=\"{}\" data-answered=\"{}\" data-unanswered=\"{}\">\
             <title>{}: {total} call{}, {} answered, {} not answered</title>",
            start.strftime("%Y-%m-%dT%H:%M%:z"),
            bar.answered,
            bar.unanswered,
            escape(&when),
            if total == 1 { "" } else { "s" },
            bar.answered,
            bar.unanswered,
        ));
        // A transparent column: the tooltip shows over the whole hour.
        svg.push_str(&format!(
            "<rect class=\"hit\" x=\"{x:.2}\" y=\"{TOP}\" width=\"{bw:.2}\" height=\"{plot_h:.1}\"/>"
        ));
        let w = (bw - gap).max(0.5);
        if bar.answered > 0 {
            svg.push_str(&format!(
                "<rect class=\"answered\" x=\"{:.2}\" y=\"{:.2}\" width=\"{w:.2}\" height=\"{:.2}\"/>",
                x + gap / 2.0,
                y(bar.answered),
                y(0) - y(bar.answered)
            ));
        }
        if bar.unanswered > 0 {
            svg.push_str(&format!(
                "<rect class=\"unanswered\" x=\"{:.2}\" y=\"{:.2}\" width=\"{w:.2}\" height=\"{:.2}\"/>",
                x + gap / 2.0,
                y(total),
                y(bar.answered) - y(total)
            ));
        }
        svg.push_str("</g>");
        if i % label_every == 0 {
            let cx = x + bw / 2.0;
            let (first, second) = match unit {
                Unit::Hour => {
                    let day = start.strftime("%b %d").to_string();
                    let second = if day != last_day {
                        last_day = day.clone();
                        day
                    } else {
                        String::new()
                    };
                    (start.strftime("%H:%M").to_string(), second)
                }
                Unit::Day => (start.strftime("%b %d").to_string(), String::new()),
                Unit::Month => (start.strftime("%Y-%m").to_string(), String::new()),
            };
            svg.push_str(&format!(
                "<line class=\"tick\" x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                 <text class=\"axis\" x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                y(0),
                y(0) + 4.0,
                y(0) + 16.0,
                escape(&first)
            ));
            if !second.is_empty() {
                svg.push_str(&format!(
                    "<text class=\"axis day\" x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    y(0) + 30.0,
                    escape(&second)
                ));
            }
        }
    }
    svg.push_str(&format!(
        "<line class=\"baseline\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/></svg>",
        WIDTH - RIGHT,
        y(0),
        y(0)
    ));
    let calls = answered + unanswered;
    format!(
        "<section class=\"cdr-chart\" aria-labelledby=\"chart-title\">\
         <h3 id=\"chart-title\">Calls per {per} <span class=\"muted\">({tz})</span></h3>\
         <p id=\"chart-summary\" class=\"chart-legend\"><span class=\"key answered\"></span> {} answered \
         <span class=\"key unanswered\"></span> {} not answered · {} call{} in {} {per}{}</p>{svg}</section>",
        group(answered),
        group(unanswered),
        group(calls),
        if calls == 1 { "" } else { "s" },
        bars.len(),
        if bars.len() == 1 { "" } else { "s" },
        tz = escape(tz_name),
    )
}

/// A grid step of 1, 2 or 5 × 10ⁿ giving at most five lines, and the top.
fn scale(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let mut unit = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = unit.saturating_mul(m);
            if max.div_ceil(step) <= 5 {
                return (step, max.div_ceil(step) * step);
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// Every how many bars a time is written (about a dozen labels).
fn label_step(unit: Unit, n: usize) -> usize {
    let steps: &[usize] = match unit {
        Unit::Hour => &[1, 2, 3, 4, 6, 12, 24, 48, 72, 96, 168],
        Unit::Day => &[1, 2, 7, 14, 28, 56],
        Unit::Month => &[1, 2, 3, 6, 12, 24, 60, 120],
    };
    steps
        .iter()
        .copied()
        .find(|s| n.div_ceil(*s) <= 14)
        .unwrap_or(n.max(1))
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b(start_ms: i64, answered: u64, unanswered: u64) -> CallBucket {
        CallBucket {
            start_ms,
            answered,
            unanswered,
        }
    }

    /// 2026-03-28 00:00 in Berlin (UTC+1).
    const DAY0: i64 = 1_774_652_400_000;

    #[test]
    fn quarter_hours_add_up_into_local_hours() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let buckets = [
            b(DAY0 + 10 * HOUR_MS, 1, 0),
            b(DAY0 + 10 * HOUR_MS + 45 * 60_000, 2, 1),
            b(DAY0 + 12 * HOUR_MS + 15 * 60_000, 0, 4),
        ];
        let (unit, hours) = bars(
            &buckets,
            Some(DAY0 + 9 * HOUR_MS + 30 * 60_000),
            Some(DAY0 + 13 * HOUR_MS),
            DAY0 + 20 * HOUR_MS,
            &berlin,
        )
        .unwrap();
        assert_eq!(unit, Unit::Hour);
        let counts: Vec<(u64, u64)> = hours.iter().map(|b| (b.answered, b.unanswered)).collect();
        assert_eq!(counts, [(0, 0), (3, 1), (0, 0), (0, 4)], "09:00 to 12:00");
        assert_eq!(hours[0].start_ms, DAY0 + 9 * HOUR_MS);
        let html = render(Some(&(unit, hours)), &berlin, "Europe/Berlin");
        assert!(
            html.contains(
                "data-start=\"2026-03-28T10:00+01:00\" data-answered=\"3\" data-unanswered=\"1\""
            ),
            "{html}"
        );
        assert!(html.contains("3 answered"), "{html}");
        assert!(!html.contains("style="));
    }

    #[test]
    fn half_hour_zones_and_the_dst_change_keep_local_hours() {
        let kolkata = TimeZone::get("Asia/Kolkata").unwrap(); // UTC+05:30
        let t = 1_774_700_000_000 - 1_774_700_000_000 % BUCKET_MS;
        let (_, hours) = bars(&[b(t, 1, 0)], None, None, t + HOUR_MS, &kolkata).unwrap();
        let start = zoned(hours[0].start_ms, &kolkata).unwrap();
        assert_eq!((start.minute(), start.second()), (0, 0));
        // The night of 2026-03-29 in Berlin: 01:00, then 03:00.
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let night = DAY0 + DAY_MS;
        let (_, night_bars) = bars(
            &[b(night, 1, 0)],
            Some(night),
            Some(night + 3 * HOUR_MS),
            night,
            &berlin,
        )
        .unwrap();
        let hours: Vec<i8> = night_bars
            .iter()
            .map(|b| zoned(b.start_ms, &berlin).unwrap().hour())
            .collect();
        assert_eq!(hours, [0, 1, 3]);
    }

    #[test]
    fn long_windows_are_cut_to_the_calls_and_drawn_per_day_or_month() {
        let utc = TimeZone::UTC;
        let (unit, days) = bars(
            &[b(DAY0, 1, 0), b(DAY0 + 40 * DAY_MS, 0, 1)],
            Some(0),
            None,
            DAY0 + 400 * DAY_MS,
            &utc,
        )
        .unwrap();
        assert_eq!(unit, Unit::Day);
        assert_eq!(days.len(), 41);
        assert_eq!(
            days.iter().map(|b| b.answered + b.unanswered).sum::<u64>(),
            2
        );
        let (unit, _) = bars(
            &[b(DAY0, 1, 0), b(DAY0 + 500 * DAY_MS, 0, 1)],
            None,
            None,
            DAY0 + 500 * DAY_MS,
            &utc,
        )
        .unwrap();
        assert_eq!(unit, Unit::Month);
        assert!(bars(&[], None, None, 0, &utc).is_none());
        assert!(render(None, &utc, "UTC").contains("No calls in this window"));
    }

    #[test]
    fn scales_and_numbers() {
        assert_eq!(scale(0), (1, 1));
        assert_eq!(scale(4), (1, 4));
        assert_eq!(scale(7), (2, 8));
        assert_eq!(scale(23), (5, 25));
        assert_eq!(scale(999), (200, 1000));
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
        assert_eq!(label_step(Unit::Hour, 745), 72);
        assert_eq!(label_step(Unit::Hour, 24), 2);
    }
}
