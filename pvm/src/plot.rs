//! `pvm bench --plot FILE.svg`: a grouped bar chart of speed relative to
//! the interpreter (interpreter time / time), one group per program, drawn
//! as plain SVG.

use std::fmt::Write;

use crate::bench::BenchRow;

const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];

/// The chart as an SVG document.
pub fn speedup_svg(rows: &[BenchRow]) -> String {
    let mut series: Vec<&str> = vec!["jit"];
    series.extend(crate::bench::peer_names(rows));
    let value = |r: &BenchRow, s: &str| -> Option<f64> {
        let base = r.interp?.as_secs_f64();
        let t = if s == "jit" { r.jit? } else { r.peers.get(s)? };
        Some(base / t.as_secs_f64())
    };
    let max = rows.iter().flat_map(|r| series.iter().filter_map(|s| value(r, s))).fold(1.0f64, f64::max).ceil();
    let (left, top, plot_h, group_w, bar_w) = (60.0, 40.0, 300.0, 30.0 + 22.0 * series.len() as f64, 20.0);
    let width = left + group_w * rows.len() as f64 + 160.0;
    let height = top + plot_h + 90.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="22" font-size="15">Speed relative to the pvm interpreter (interpreter time / time; higher is faster)</text>"#
    );
    let y = |v: f64| top + plot_h - v / max * plot_h;
    let step = if max > 20.0 {
        5.0
    } else if max > 8.0 {
        2.0
    } else {
        1.0
    };
    let mut tick = 0.0;
    while tick <= max {
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{tick}x</text>"##,
            width - 150.0,
            y(tick),
            y(tick),
            left - 6.0,
            y(tick) + 4.0
        );
        tick += step;
    }
    for (g, r) in rows.iter().enumerate() {
        let x0 = left + 10.0 + g as f64 * group_w;
        for (k, s) in series.iter().enumerate() {
            if let Some(v) = value(r, s) {
                let x = x0 + k as f64 * 22.0;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{} {s}: {v:.2}x</title></rect>"#,
                    y(v),
                    top + plot_h - y(v),
                    COLORS[k % COLORS.len()],
                    r.program
                );
                if *s == "jit" {
                    let _ = writeln!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.1}</text>"#,
                        x + bar_w / 2.0,
                        y(v) - 3.0
                    );
                }
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" transform="rotate(-35 {:.1} {:.1})">{}</text>"#,
            x0 + group_w / 2.0,
            top + plot_h + 16.0,
            x0 + group_w / 2.0,
            top + plot_h + 16.0,
            r.program
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        width - 150.0,
        y(0.0),
        y(0.0)
    );
    for (k, s) in series.iter().enumerate() {
        let ly = top + 10.0 + k as f64 * 18.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{:.0}" y="{ly:.0}" width="12" height="12" fill="{}"/><text x="{:.0}" y="{:.0}">{s}</text>"#,
            width - 140.0,
            COLORS[k % COLORS.len()],
            width - 122.0,
            ly + 10.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn draws_one_bar_per_program_and_series() {
        let row = |name: &str, i: u64, j: u64| BenchRow {
            program: name.into(),
            retired: 1,
            interp: Some(Duration::from_millis(i)),
            jit: Some(Duration::from_millis(j)),
            jit_stats: None,
            peers: crate::peers::PeerTimes(vec![("lua5.4", Duration::from_millis(2 * i))]),
            output: String::new(),
        };
        let svg = speedup_svg(&[row("fib", 1000, 100), row("loop", 800, 200)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 4 + 2, "{svg}"); // bars + legend
        assert!(svg.contains("<title>fib jit: 10.00x</title>"));
        assert!(svg.contains("<title>loop lua5.4: 0.50x</title>"));
    }
}
