//! `vmm bench --only backoff --plot FILE.svg`: the restart delays of each
//! backoff policy over a run of failures, one panel per policy on a
//! common scale: the delays one seeded supervisor draws (a line with a
//! point per restart), the mean over many seeds (dashed) and the band
//! their jitter reaches (shaded), drawn as plain SVG in the style of
//! `pvm bench --plot`.

use std::fmt::Write;

const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];
const PANEL_W: f64 = 250.0;
const PANEL_H: f64 = 170.0;
const COLUMNS: usize = 3;

/// One policy's delays, in milliseconds, failure by failure.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// The delays one seeded run draws.
    pub delays: Vec<f64>,
    /// The mean over many seeds.
    pub mean: Vec<f64>,
    /// The lowest and highest delay over those seeds (equal for the policies without jitter).
    pub band: Vec<(f64, f64)>,
}

fn points(values: impl Iterator<Item = (usize, f64)>, x: &dyn Fn(usize) -> f64, y: &dyn Fn(f64) -> f64) -> String {
    values.map(|(i, v)| format!("{:.1},{:.1}", x(i), y(v))).collect::<Vec<_>>().join(" ")
}

/// The chart as an SVG document; `title` on top, `cap` the delay axis's end.
pub fn delays_svg(series: &[Series], title: &str, cap: f64) -> String {
    let failures = series.iter().map(|s| s.delays.len()).max().unwrap_or(0).max(1);
    let max =
        series.iter().flat_map(|s| s.delays.iter().chain(s.band.iter().map(|b| &b.1))).fold(cap, |a, &b| a.max(b));
    let rows = series.len().div_ceil(COLUMNS).max(1);
    let (left, top, gap) = (70.0, 50.0, 40.0);
    let width = left + COLUMNS as f64 * (PANEL_W + gap);
    let height = top + rows as f64 * (PANEL_H + 60.0) + 10.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="20" y="24" font-size="15">{title}</text>"#);
    let step = nice_step(max);
    for (k, s) in series.iter().enumerate() {
        let (col, row) = (k % COLUMNS, k / COLUMNS);
        let x0 = left + col as f64 * (PANEL_W + gap);
        let y0 = top + row as f64 * (PANEL_H + 60.0);
        let x = move |i: usize| x0 + PANEL_W * (i as f64 + 0.5) / failures as f64;
        let y = move |v: f64| y0 + PANEL_H - v / max * PANEL_H;
        let color = COLORS[k % COLORS.len()];
        let _ =
            writeln!(svg, r#"<text x="{x0:.0}" y="{:.0}" font-size="13" fill="{color}">{}</text>"#, y0 - 6.0, s.name);
        let mut tick = 0.0;
        while tick <= max + 1e-9 {
            let _ = writeln!(
                svg,
                r##"<line x1="{x0:.0}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                x0 + PANEL_W,
                y(tick),
                y(tick)
            );
            if col == 0 {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{tick} ms</text>"#,
                    x0 - 6.0,
                    y(tick) + 4.0
                );
            }
            tick += step;
        }
        for i in 0..failures {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                x(i),
                y0 + PANEL_H + 14.0,
                i + 1
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="middle" font-size="11">restart</text>"#,
            x0 + PANEL_W / 2.0,
            y0 + PANEL_H + 30.0
        );
        if s.band.iter().any(|(lo, hi)| hi > lo) {
            let upper = points(s.band.iter().enumerate().map(|(i, b)| (i, b.1)), &x, &y);
            let lower = points(s.band.iter().enumerate().rev().map(|(i, b)| (i, b.0)), &x, &y);
            let _ = writeln!(
                svg,
                r#"<polygon points="{upper} {lower}" fill="{color}" fill-opacity="0.15" stroke="none"><title>{}: lowest to highest over the seeds</title></polygon>"#,
                s.name
            );
            let mean = points(s.mean.iter().copied().enumerate(), &x, &y);
            let _ = writeln!(
                svg,
                r#"<polyline points="{mean}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="5,3"/>"#
            );
        }
        let line = points(s.delays.iter().copied().enumerate(), &x, &y);
        let _ = writeln!(svg, r#"<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>"#);
        for (i, &d) in s.delays.iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{} restart {}: {d:.1} ms</title></circle>"#,
                x(i),
                y(d),
                s.name,
                i + 1
            );
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{x0:.0}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
            x0 + PANEL_W,
            y(0.0),
            y(0.0)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round step for about five to ten grid lines up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 6.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|&s| s >= raw).unwrap_or(magnitude * 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_line_and_a_point_per_delay_and_a_band_for_jitter() {
        let exact = Series {
            name: "exponential".into(),
            delays: vec![10.0, 20.0, 40.0],
            mean: vec![10.0, 20.0, 40.0],
            band: vec![(10.0, 10.0), (20.0, 20.0), (40.0, 40.0)],
        };
        let jitter = Series {
            name: "jitter-full".into(),
            delays: vec![3.0, 15.0, 22.0],
            mean: vec![5.0, 10.0, 20.0],
            band: vec![(0.0, 10.0), (0.0, 20.0), (0.0, 40.0)],
        };
        let svg = delays_svg(&[exact, jitter], "delays", 50.0);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 3, "a line each, and the jittered policy's mean");
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(svg.matches("<polygon").count(), 1, "only the jittered policy has a band");
        assert!(svg.contains("<title>jitter-full restart 2: 15.0 ms</title>"));
        assert_eq!(nice_step(1000.0), 200.0);
        assert_eq!(nice_step(50.0), 10.0);
    }
}
