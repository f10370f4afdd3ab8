//! The peers' Markdown tables: median wall time, ratio to gcc -O2 with its
//! geometric mean, fastest run and spread; what `pvm bench --wasm` and the
//! `wasm_peers` example print.

use std::io::{self, Write};
use std::time::Duration;

use wasm_programs::WasmProgram;

use super::PeerSamples;

/// One program's runs under every peer, in the order of `names`.
#[derive(Clone, Debug)]
pub struct Row<'a> {
    pub program: &'a WasmProgram,
    pub samples: PeerSamples,
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The geometric mean (1 for no values).
pub fn geomean(v: &[f64]) -> f64 {
    crate::bench::geomean(v).unwrap_or(1.0)
}

fn median(s: &PeerSamples, i: usize) -> Duration {
    s.medians().0.get(i).map_or(Duration::ZERO, |&(_, d)| d)
}

fn table(
    out: &mut dyn Write,
    title: &str,
    names: &[&str],
    rows: &[Row<'_>],
    cell: &dyn Fn(&PeerSamples, usize) -> String,
) -> io::Result<()> {
    writeln!(out, "### {title}\n\n| program | {} |\n|---|{}", names.join(" | "), "---:|".repeat(names.len()))?;
    for row in rows {
        let cells: Vec<String> = (0..names.len()).map(|i| cell(&row.samples, i)).collect();
        writeln!(out, "| {} | {} |", row.program.name, cells.join(" | "))?;
    }
    writeln!(out)
}

/// Writes the tables for `rows`, whose samples follow `names` (the peers'
/// [`super::WasmPeers::available`] order). The ratio table and geometric
/// mean appear when gcc -O2 is among them; the mean is over the benchmarks
/// when there are any (the other programs' rows show start-up alone).
///
/// # Errors
///
/// Writing to `out` fails.
pub fn render(out: &mut dyn Write, names: &[&str], rows: &[Row<'_>]) -> io::Result<()> {
    table(out, "Median wall time, seconds (whole process)", names, rows, &|s, i| secs(median(s, i)))?;
    if let Some(base) = names.iter().position(|&n| n == "gcc -O2") {
        let ratio = |s: &PeerSamples, i: usize| median(s, i).as_secs_f64() / median(s, base).as_secs_f64().max(1e-9);
        table(out, "Ratio to gcc -O2 (median / median)", names, rows, &|s, i| format!("{:.1}x", ratio(s, i)))?;
        let any_benchmark = rows.iter().any(|r| r.program.benchmark);
        let means: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let r: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.program.benchmark || !any_benchmark)
                    .map(|r| ratio(&r.samples, i))
                    .collect();
                format!("{name} {:.1}x", geomean(&r))
            })
            .collect();
        let over = if any_benchmark { "the benchmarks" } else { "these programs" };
        writeln!(out, "Geometric mean of the ratio to gcc -O2 over {over}: {}\n", means.join(", "))?;
    }
    let spread = |s: &PeerSamples, i: usize| {
        let runs = s.0.get(i).map_or(&[][..], |(_, r)| r.as_slice());
        let min = runs.iter().min().copied().unwrap_or_default();
        let max = runs.iter().max().copied().unwrap_or_default();
        format!("{} / {:.2}", secs(min), max.as_secs_f64() / min.as_secs_f64().max(1e-9))
    };
    table(out, "Fastest run, seconds / spread (max / min)", names, rows, &spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_show_medians_ratios_and_their_geometric_mean() {
        let ms = Duration::from_millis;
        let fib = wasm_programs::find("fib").unwrap();
        let samples = PeerSamples(vec![("gcc -O2", vec![ms(100), ms(300), ms(200)]), ("wasm3", vec![ms(800)])]);
        let mut out = Vec::new();
        render(&mut out, &["gcc -O2", "wasm3"], &[Row { program: fib, samples }]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("| program | gcc -O2 | wasm3 |\n|---|---:|---:|\n| fib | 0.200 | 0.800 |\n"), "{text}");
        assert!(text.contains("| fib | 1.0x | 4.0x |\n"), "{text}");
        assert!(text.contains("over the benchmarks: gcc -O2 1.0x, wasm3 4.0x\n"), "{text}");
        assert!(text.contains("| fib | 0.100 / 3.00 | 0.800 / 1.00 |\n"), "{text}");
    }

    #[test]
    fn the_geometric_mean_of_nothing_is_one() {
        assert!((geomean(&[]) - 1.0).abs() < 1e-12);
        assert!((geomean(&[2.0, 8.0]) - 4.0).abs() < 1e-12);
    }
}
