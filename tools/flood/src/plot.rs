//! The latency percentile distribution of daemon and floor as one SVG
//! chart, drawn by hand: x is the percentile on HdrHistogram's usual
//! log scale (0 %, 90 %, 99 %, 99.9 % … evenly spaced), y the latency on a
//! log scale. One line per mode and writer: the daemon solid, the floor
//! dashed, one colour per mode.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::report::{ModeResult, Totals};
use crate::watch::Side;

const W: f64 = 1100.0;
const H: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 330.0;
const TOP: f64 = 76.0;
const BOTTOM: f64 = 60.0;
/// Lowest latency drawn (µs): writes seen before the ack was stamped
/// count as 0 and are drawn here.
const Y_MIN_US: f64 = 1.0;
/// Points per line.
const STEPS: usize = 240;

fn colour(mode: &str) -> &'static str {
    match mode {
        "latency" => "#1f77b4",
        "burst" => "#d62728",
        _ => "#2ca02c",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A latency in µs with a readable unit: 72 µs, 5.6 ms, 1.2 s.
pub fn unit(us: f64) -> String {
    let (v, u) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    if v >= 100.0 || v == v.round() {
        format!("{v:.0} {u}")
    } else {
        format!("{v:.1} {u}")
    }
}

/// Smallest distance between two labels of the latency axis, in pixels
/// (the font is 12 px tall): closer, the 2× and 5× lines go unlabelled.
const MIN_LABEL_GAP_PX: f64 = 15.0;

/// One horizontal grid line of the latency axis.
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    /// Where, in µs.
    us: f64,
    /// A power of ten (drawn darker).
    decade: bool,
    /// Its text, when there is room for it.
    label: Option<String>,
}

/// The latency axis' grid from 10^`lo` to 10^`hi` µs, a decade being
/// `decade_px` tall: every decade, and 2× and 5× between decades so a
/// reader can read values off the log scale. The decades are always
/// labelled; 2× and 5× when their labels do not run into each other
/// (the narrowest gap, 1 → 2 and 5 → 10, is log10 2 of a decade).
fn latency_ticks(lo: i32, hi: i32, decade_px: f64) -> Vec<Tick> {
    let minor_labels = decade_px * 2f64.log10() >= MIN_LABEL_GAP_PX;
    let mut ticks = Vec::new();
    for d in lo..=hi {
        // powi is exact for d ≥ 0 (powf need not be): 2 × 10^3 is 2000,
        // so `unit` prints "2 ms", not "2.0 ms".
        let base = 10f64.powi(d);
        ticks.push(Tick {
            us: base,
            decade: true,
            label: Some(unit(base)),
        });
        if d < hi {
            for k in [2.0, 5.0] {
                let us = base * k;
                ticks.push(Tick {
                    us,
                    decade: false,
                    label: minor_labels.then(|| unit(us)),
                });
            }
        }
    }
    ticks
}

struct Series {
    label: String,
    colour: &'static str,
    dashed: bool,
    /// (x in "nines", latency in µs).
    points: Vec<(f64, f64)>,
}

/// x = log10(1 / (1 - q)): 0 → 0 %, 1 → 90 %, 2 → 99 % …
fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let n = h.len().max(1) as f64;
    // Beyond 1 - 1/n a percentile is the maximum: stop there.
    let last = n.log10().max(0.5);
    let mut v: Vec<(f64, f64)> = (0..=STEPS)
        .map(|i| {
            let x = last * i as f64 / STEPS as f64;
            let q = 1.0 - 10f64.powf(-x);
            (x, (h.value_at_quantile(q) as f64 / 1e3).max(Y_MIN_US))
        })
        .collect();
    v.push((last, (h.max() as f64 / 1e3).max(Y_MIN_US)));
    v
}

/// The chart as an SVG document; `command` and `setup` label it.
pub fn svg(results: &[ModeResult], command: &str, setup: &str) -> String {
    let mut series = Vec::new();
    for m in results {
        let mode = m.plan.mode.name();
        for side in Side::ALL {
            let Some(t) = Totals::of(m, side) else {
                continue;
            };
            if t.hist.is_empty() {
                continue;
            }
            let p50 = t.hist.value_at_quantile(0.5) as f64 / 1e3;
            let p99 = t.hist.value_at_quantile(0.99) as f64 / 1e3;
            series.push(Series {
                label: format!(
                    "{mode} {}: p50 {}, p99 {}",
                    if side == Side::Daemon {
                        "portsyncd"
                    } else {
                        "floor"
                    },
                    unit(p50),
                    unit(p99)
                ),
                colour: colour(mode),
                dashed: side == Side::Floor,
                points: points(&t.hist),
            });
        }
    }
    let all = series.iter().flat_map(|s| s.points.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0_f64, f64::max).ceil();
    let y_lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_hi = all.map(|p| p.1).fold(0.0_f64, f64::max);
    let (y_lo, y_hi) = if y_hi > 0.0 {
        (
            y_lo.log10().floor(),
            y_hi.log10().ceil().max(y_lo.log10().floor() + 1.0),
        )
    } else {
        (0.0, 3.0)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + pw * x / x_max;
    let py = |us: f64| TOP + ph * (1.0 - (us.max(1e-3).log10() - y_lo) / (y_hi - y_lo));

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">Kernel ack → STATE_DB write, by percentile</text>"#
    );
    for (y, line) in [(44, command), (62, setup)] {
        let line: String = line.chars().take(170).collect();
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{y}" fill="grey">{}</text>"#,
            escape(&line)
        );
    }
    // Horizontal grid: decades dark, 2× and 5× faint, labelled when
    // there is room.
    for t in latency_ticks(y_lo as i32, y_hi as i32, ph / (y_hi - y_lo)) {
        let y = py(t.us);
        let (stroke, fill) = if t.decade {
            ("#ccc", "black")
        } else {
            ("#eee", "#666")
        };
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{stroke}\"/>",
            LEFT + pw
        );
        if let Some(label) = t.label {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{fill}">{label}</text>"#,
                LEFT - 6.0,
                y + 4.0
            );
        }
    }
    // Vertical grid: 0 %, 90 %, 99 %, …
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let label = if x == 0.0 {
            "0%".to_string()
        } else {
            format!("{}%", 100.0 - 100.0 * 10f64.powf(-x))
        };
        let xx = px(x);
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" y1=\"{TOP}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#ccc\"/>",
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            TOP + ph + 18.0
        );
        x += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        TOP + ph / 2.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let dash = if ser.dashed {
            r#" stroke-dasharray="7,4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            ser.colour,
            pts.join(" ")
        );
        let ly = TOP + 10.0 + 22.0 * i as f64;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"#,
            lx + 26.0,
            ser.colour
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 32.0,
            ly + 4.0,
            escape(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ticks: &[Tick]) -> Vec<&str> {
        ticks.iter().filter_map(|t| t.label.as_deref()).collect()
    }

    #[test]
    fn labels_between_decades_in_microseconds_milliseconds_and_seconds() {
        let t = latency_ticks(0, 7, 60.0);
        assert_eq!(
            labels(&t),
            [
                "1 µs", "2 µs", "5 µs", "10 µs", "20 µs", "50 µs", "100 µs", "200 µs", "500 µs",
                "1 ms", "2 ms", "5 ms", "10 ms", "20 ms", "50 ms", "100 ms", "200 ms", "500 ms",
                "1 s", "2 s", "5 s", "10 s"
            ]
        );
        let decades: Vec<f64> = t.iter().filter(|t| t.decade).map(|t| t.us).collect();
        assert_eq!(decades, [1.0, 10.0, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7]);
        assert!(t.windows(2).all(|w| w[0].us < w[1].us), "{t:?}");
    }

    #[test]
    fn a_crowded_axis_labels_only_its_decades() {
        // 10 decades in the plot's 424 px: 42 px a decade, 13 px from 1 to 2.
        let t = latency_ticks(0, 10, 42.4);
        assert_eq!(t.len(), 11 + 2 * 10, "every line is still drawn");
        assert!(t.iter().all(|t| t.label.is_some() == t.decade), "{t:?}");
        // The plot's usual span, 1 µs to 100 ms: room for all.
        let t = latency_ticks(0, 5, 84.8);
        assert!(t.iter().all(|t| t.label.is_some()), "{t:?}");
    }

    #[test]
    fn the_svg_carries_the_labels_between_decades() {
        let svg = svg(&[], "flood run", "setup");
        // No series: the default axis, 1 µs to 1 ms.
        for label in ["1 µs", "2 µs", "5 µs", "200 µs", "500 µs", "1 ms"] {
            assert!(svg.contains(&format!(">{label}</text>")), "{label} missing");
        }
    }
}
