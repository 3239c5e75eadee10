//! The requests-over-time chart of the Logs page, as inline SVG built on
//! the server: bars per time bucket with the errors (status ≥ 400) drawn
//! over their bottom part, axis labels, a `<title>` per bar for tooltips
//! and an `aria-label` summary for screen readers. Geometry is computed
//! here and emitted as presentation attributes (the CSP forbids inline
//! styles); colours come from `.chart .bar` / `.bar-err` in app.css.

use crate::clock::format_datetime;

/// The SVG's coordinate system (it scales to the container's width).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 22.0;

/// Requests and errors counted into one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub total: u64,
    pub errors: u64,
}

/// Time buckets covering a window, aligned to wall-clock boundaries.
#[derive(Debug, Clone)]
pub struct Buckets {
    /// Start of the first bucket, µs since the epoch.
    pub start_us: u64,
    pub width_us: u64,
    pub counts: Vec<Bucket>,
}

impl Buckets {
    /// `n` buckets of `width_us` ending at the bucket boundary after `now_us`.
    pub fn new(now_us: u64, width_us: u64, n: usize) -> Buckets {
        let end = (now_us / width_us + 1) * width_us;
        Buckets {
            start_us: end.saturating_sub(width_us * n as u64),
            width_us,
            counts: vec![Bucket::default(); n],
        }
    }

    /// Counts one request at `ts_us` (times past the end go to the last
    /// bucket: a clock step must not lose them).
    pub fn add(&mut self, ts_us: u64, error: bool) {
        let Some(last) = self.counts.len().checked_sub(1) else {
            return;
        };
        let Some(offset) = ts_us.checked_sub(self.start_us) else {
            return;
        };
        let i = ((offset / self.width_us) as usize).min(last);
        self.counts[i].total += 1;
        if error {
            self.counts[i].errors += 1;
        }
    }
}

pub struct Bar {
    pub x: String,
    pub width: String,
    pub y: String,
    pub height: String,
    /// The error part (`None` when the bucket had no errors).
    pub err: Option<(String, String)>,
    pub title: String,
}

pub struct Label {
    pub x: String,
    pub y: String,
    pub text: String,
    /// `start`, `middle` or `end` (SVG `text-anchor`).
    pub anchor: &'static str,
}

/// Everything the template needs to draw the chart.
pub struct Chart {
    pub view_box: String,
    pub aria: String,
    pub bars: Vec<Bar>,
    pub labels: Vec<Label>,
    /// Horizontal grid/axis lines: (y, x1, x2).
    pub lines: Vec<(String, String, String)>,
}

fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// The smallest 1, 2 or 5 × 10^k that is ≥ `v` (at least 1).
pub fn nice_ceiling(v: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= v {
                return step.saturating_mul(m);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// An axis count in at most four characters (`950`, `2k`, `50k`, `1M`).
fn compact(v: u64) -> String {
    match v {
        0..=999 => v.to_string(),
        1_000..=999_999 => format!("{}k", v / 1_000),
        _ => format!("{}M", v / 1_000_000),
    }
}

/// A bucket start as a label: `HH:MM`, with the date for multi-day windows.
fn time_label(us: u64, with_date: bool) -> String {
    let s = format_datetime((us / 1000) as i64);
    // "YYYY-MM-DD HH:MM:SS.mmmZ"
    if with_date {
        format!("{} {}", &s[5..10], &s[11..16])
    } else {
        s[11..16].to_owned()
    }
}

/// Builds the chart. `unit` names one bucket ("minute", "15 minutes"…),
/// `window` the whole range ("1 hour").
pub fn build(b: &Buckets, unit: &str, window: &str) -> Chart {
    let count = b.counts.len().max(1);
    let with_date = b.width_us * count as u64 > 24 * 3600 * 1_000_000;
    let peak = b.counts.iter().map(|c| c.total).max().unwrap_or(0);
    let ymax = nice_ceiling(peak);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base = HEIGHT - BOTTOM;
    let slot = plot_w / count as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let scale = |v: u64| v as f64 / ymax as f64 * plot_h;
    let mut bars = Vec::new();
    for (i, c) in b.counts.iter().enumerate() {
        if c.total == 0 {
            continue;
        }
        let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
        let h = scale(c.total).max(1.0);
        let err = (c.errors > 0).then(|| {
            let eh = scale(c.errors).max(1.0);
            (n(base - eh), n(eh))
        });
        let from = b.start_us + b.width_us * i as u64;
        let plural = if c.total == 1 { "" } else { "s" };
        bars.push(Bar {
            x: n(x),
            width: n(bar_w),
            y: n(base - h),
            height: n(h),
            err,
            title: format!(
                "{}–{} UTC: {} request{plural}, {} error{}",
                time_label(from, with_date),
                time_label(from + b.width_us, false),
                c.total,
                c.errors,
                if c.errors == 1 { "" } else { "s" }
            ),
        });
    }
    let mut labels = Vec::new();
    let mut lines = Vec::new();
    // Y axis: 0, the middle (when a whole number) and the top.
    let mut ticks = vec![0, ymax];
    if ymax.is_multiple_of(2) {
        ticks.insert(1, ymax / 2);
    }
    for t in ticks {
        let y = base - scale(t);
        lines.push((n(y), n(LEFT), n(WIDTH - RIGHT)));
        labels.push(Label {
            x: n(LEFT - 6.0),
            y: n(y + 3.5),
            text: compact(t),
            anchor: "end",
        });
    }
    // X axis: five times across (start, quarters, end), UTC.
    for q in 0..=4u64 {
        let i = count as u64 * q / 4;
        labels.push(Label {
            x: n(LEFT + i as f64 * slot),
            y: n(HEIGHT - 6.0),
            text: time_label(b.start_us + b.width_us * i, with_date),
            anchor: match q {
                0 => "start",
                4 => "end",
                _ => "middle",
            },
        });
    }
    let total: u64 = b.counts.iter().map(|c| c.total).sum();
    let errors: u64 = b.counts.iter().map(|c| c.errors).sum();
    let aria = if total == 0 {
        format!("Requests per {unit} over the last {window}: none.")
    } else {
        format!(
            "Requests per {unit} over the last {window}: {total} requests, {errors} with status 400 or above; \
             busiest {unit}: {peak} requests."
        )
    };
    Chart {
        view_box: format!("0 0 {} {}", n(WIDTH), n(HEIGHT)),
        aria,
        bars,
        labels,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(501), 1000);
        assert_eq!(compact(500), "500");
        assert_eq!(compact(50_000), "50k");
        assert_eq!(compact(2_000_000), "2M");
    }

    #[test]
    fn buckets_align_and_clamp() {
        let minute = 60_000_000;
        let now = 10 * minute + 5;
        let mut b = Buckets::new(now, minute, 3);
        assert_eq!(b.start_us, 8 * minute);
        b.add(8 * minute, true);
        b.add(now, false);
        b.add(now + 100 * minute, false);
        b.add(minute, false); // before the window: ignored
        assert_eq!(b.counts[0], Bucket { total: 1, errors: 1 });
        assert_eq!(b.counts[2], Bucket { total: 2, errors: 0 });
        let chart = build(&b, "minute", "3 minutes");
        assert_eq!(chart.bars.len(), 2);
        assert!(chart.bars[0].err.is_some() && chart.bars[1].err.is_none());
        assert!(chart.aria.contains("3 requests, 1 with status 400"));
    }
}
