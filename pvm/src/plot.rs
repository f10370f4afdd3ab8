//! Grouped bar charts drawn as plain SVG: `pvm bench --plot FILE.svg`
//! (speed relative to the interpreter, one group per program) and
//! `pvm bench threads --plot` (makespan per workload and policy).

use std::fmt::Write;

use crate::bench::BenchRow;

const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];

/// A grouped bar chart: one group per row, one bar per series in it.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    pub title: &'a str,
    /// Written after every value (`x`, ` ms`).
    pub unit: &'a str,
    pub series: Vec<String>,
    /// Each group's name and its (series, value) bars.
    pub groups: Vec<(String, Vec<(String, f64)>)>,
    /// The series whose bars carry their value above them.
    pub label_series: Option<&'a str>,
}

/// The speedup chart of `pvm bench --plot` as an SVG document.
pub fn speedup_svg(rows: &[BenchRow]) -> String {
    let mut series: Vec<String> = vec!["jit".into()];
    series.extend(crate::bench::peer_names(rows).into_iter().map(String::from));
    let value = |r: &BenchRow, s: &str| -> Option<f64> {
        let base = r.interp?.as_secs_f64();
        let t = if s == "jit" { r.jit? } else { r.peers.get(s)? };
        Some(base / t.as_secs_f64())
    };
    let groups = rows
        .iter()
        .map(|r| (r.program.clone(), series.iter().filter_map(|s| Some((s.clone(), value(r, s)?))).collect()))
        .collect();
    Chart {
        title: "Speed relative to the pvm interpreter (interpreter time / time; higher is faster)",
        unit: "x",
        series,
        groups,
        label_series: Some("jit"),
    }
    .svg()
}

impl Chart<'_> {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let series = &self.series;
        let max = self.groups.iter().flat_map(|(_, bars)| bars.iter().map(|b| b.1)).fold(1.0f64, f64::max).ceil();
        let (left, top, plot_h, group_w, bar_w) = (60.0, 40.0, 300.0, 30.0 + 22.0 * series.len() as f64, 20.0);
        let width = left + group_w * self.groups.len() as f64 + 160.0;
        let height = top + plot_h + 90.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(svg, r#"<text x="{left}" y="22" font-size="15">{}</text>"#, self.title);
        let y = |v: f64| top + plot_h - v / max * plot_h;
        let step = match max {
            m if m > 40.0 => (m / 8.0).ceil(),
            m if m > 20.0 => 5.0,
            m if m > 8.0 => 2.0,
            _ => 1.0,
        };
        let mut tick = 0.0;
        while tick <= max {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{tick}{}</text>"##,
                width - 150.0,
                y(tick),
                y(tick),
                left - 6.0,
                y(tick) + 4.0,
                self.unit.trim()
            );
            tick += step;
        }
        for (g, (name, bars)) in self.groups.iter().enumerate() {
            let x0 = left + 10.0 + g as f64 * group_w;
            for (k, s) in series.iter().enumerate() {
                let Some(&(_, v)) = bars.iter().find(|b| b.0 == *s) else { continue };
                let x = x0 + k as f64 * 22.0;
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w}" height="{:.1}" fill="{}"><title>{name} {s}: {v:.2}{}</title></rect>"#,
                    y(v),
                    top + plot_h - y(v),
                    COLORS[k % COLORS.len()],
                    self.unit
                );
                if self.label_series == Some(s.as_str()) {
                    let _ = writeln!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.1}</text>"#,
                        x + bar_w / 2.0,
                        y(v) - 3.0
                    );
                }
            }
            let (lx, ly) = (x0 + group_w / 2.0, top + plot_h + 16.0);
            let _ = writeln!(
                svg,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})">{name}</text>"#
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
