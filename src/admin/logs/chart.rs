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
/// `window` the whole range ("1 hour"). Each part of the picture is its own
/// step below; they share one [`Geometry`] so bars and axes line up.
pub fn build(b: &Buckets, unit: &str, window: &str) -> Chart {
    let g = Geometry::of(b);
    let bars = bars(b, &g);
    let mut labels = Vec::new();
    let mut lines = Vec::new();
    y_axis(&g, &mut labels, &mut lines);
    x_axis(b, &g, &mut labels);
    Chart {
        view_box: format!("0 0 {} {}", n(WIDTH), n(HEIGHT)),
        aria: aria(b, unit, window, g.peak),
        bars,
        labels,
        lines,
    }
}

/// The plot's layout, computed once from the buckets so every step places
/// things on the same scale and slots.
struct Geometry {
    /// Number of slots (at least 1, so an empty window still divides).
    count: usize,
    /// Whether time labels need the date (windows over a day).
    with_date: bool,
    /// The busiest bucket's total.
    peak: u64,
    /// The y axis top: `peak` rounded up to a readable number.
    ymax: u64,
    plot_h: f64,
    /// The y of the x axis (bars grow up from it).
    base: f64,
    /// Horizontal room per bucket, and the bar drawn inside it.
    slot: f64,
    bar_w: f64,
}

impl Geometry {
    fn of(b: &Buckets) -> Geometry {
        let count = b.counts.len().max(1);
        let peak = b.counts.iter().map(|c| c.total).max().unwrap_or(0);
        let slot = (WIDTH - LEFT - RIGHT) / count as f64;
        Geometry {
            count,
            with_date: b.width_us * count as u64 > 24 * 3600 * 1_000_000,
            peak,
            ymax: nice_ceiling(peak),
            plot_h: HEIGHT - TOP - BOTTOM,
            base: HEIGHT - BOTTOM,
            slot,
            bar_w: (slot * 0.8).max(1.0),
        }
    }

    /// A count as a height in SVG units.
    fn scale(&self, v: u64) -> f64 {
        v as f64 / self.ymax as f64 * self.plot_h
    }
}

/// One bar per non-empty bucket, its error part overlaid at the bottom and
/// a tooltip title; empty buckets draw nothing (no 1px stubs).
fn bars(b: &Buckets, g: &Geometry) -> Vec<Bar> {
    let mut bars = Vec::new();
    for (i, c) in b.counts.iter().enumerate() {
        if c.total == 0 {
            continue;
        }
        let x = LEFT + i as f64 * g.slot + (g.slot - g.bar_w) / 2.0;
        let h = g.scale(c.total).max(1.0);
        let err = (c.errors > 0).then(|| {
            let eh = g.scale(c.errors).max(1.0);
            (n(g.base - eh), n(eh))
        });
        let from = b.start_us + b.width_us * i as u64;
        let plural = if c.total == 1 { "" } else { "s" };
        bars.push(Bar {
            x: n(x),
            width: n(g.bar_w),
            y: n(g.base - h),
            height: n(h),
            err,
            title: format!(
                "{}–{} UTC: {} request{plural}, {} error{}",
                time_label(from, g.with_date),
                time_label(from + b.width_us, false),
                c.total,
                c.errors,
                if c.errors == 1 { "" } else { "s" }
            ),
        });
    }
    bars
}

/// Y axis: grid lines and counts at 0, the middle (when a whole number)
/// and the top, so the bars' heights can be read.
fn y_axis(g: &Geometry, labels: &mut Vec<Label>, lines: &mut Vec<(String, String, String)>) {
    let mut ticks = vec![0, g.ymax];
    if g.ymax.is_multiple_of(2) {
        ticks.insert(1, g.ymax / 2);
    }
    for t in ticks {
        let y = g.base - g.scale(t);
        lines.push((n(y), n(LEFT), n(WIDTH - RIGHT)));
        labels.push(Label {
            x: n(LEFT - 6.0),
            y: n(y + 3.5),
            text: compact(t),
            anchor: "end",
        });
    }
}

/// X axis: five times across (start, quarters, end), UTC, anchored so the
/// outer two stay inside the picture.
fn x_axis(b: &Buckets, g: &Geometry, labels: &mut Vec<Label>) {
    for q in 0..=4u64 {
        let i = g.count as u64 * q / 4;
        labels.push(Label {
            x: n(LEFT + i as f64 * g.slot),
            y: n(HEIGHT - 6.0),
            text: time_label(b.start_us + b.width_us * i, g.with_date),
            anchor: match q {
                0 => "start",
                4 => "end",
                _ => "middle",
            },
        });
    }
}

/// The screen-reader summary: what the bars say, in one sentence.
fn aria(b: &Buckets, unit: &str, window: &str, peak: u64) -> String {
    let total: u64 = b.counts.iter().map(|c| c.total).sum();
    let errors: u64 = b.counts.iter().map(|c| c.errors).sum();
    if total == 0 {
        format!("Requests per {unit} over the last {window}: none.")
    } else {
        format!(
            "Requests per {unit} over the last {window}: {total} requests, {errors} with status 400 or above; \
             busiest {unit}: {peak} requests."
        )
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
