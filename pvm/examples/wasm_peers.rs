//! The WebAssembly peers' table alone, until `pvm bench --wasm` can put our
//! engines beside them: every benchmark of `wasm-programs` under every peer
//! found (`pvm::wasm_peers`), median wall time of interleaved rounds, the
//! ratio to gcc -O2 and its geometric mean, as Markdown.
//!
//! ```text
//! cargo run --release -p pvm --example wasm_peers -- [--rounds 5] [--quick] [--all] [--peers wasm3,wasmi] [PROGRAM...]
//! ```

use std::error::Error;
use std::io::{self, Write};
use std::time::Duration;

use clap::Parser;
use pvm::wasm_peers::{PeerSamples, WasmPeers};
use wasm_programs::WasmProgram;

#[derive(Parser)]
struct Args {
    /// Rounds; each runs every program under every peer once.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// The short runs (tests' arguments) instead of the default ones.
    #[arg(long)]
    quick: bool,
    /// Every program, not only the six benchmarks.
    #[arg(long)]
    all: bool,
    /// Only these peers (comma-separated names as in the table).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Only these programs.
    programs: Vec<String>,
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn table(
    out: &mut dyn Write,
    title: &str,
    names: &[&str],
    rows: &[(&WasmProgram, PeerSamples)],
    cell: &dyn Fn(&PeerSamples, usize) -> String,
) -> io::Result<()> {
    writeln!(out, "### {title}\n\n| program | {} |\n|---|{}", names.join(" | "), "---:|".repeat(names.len()))?;
    for (p, s) in rows {
        let cells: Vec<String> = (0..names.len()).map(|i| cell(s, i)).collect();
        writeln!(out, "| {} | {} |", p.name, cells.join(" | "))?;
    }
    writeln!(out)
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        let mut err = io::stderr().lock();
        let _ = write!(err, "wasm_peers: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            let _ = write!(err, ": {s}");
            source = s.source();
        }
        let _ = writeln!(err);
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let mut peers = WasmPeers::discover()?;
    let wanted: Vec<&str> = args.peers.iter().map(String::as_str).collect();
    peers.retain(&wanted);
    let pool = if args.quick { wasm_programs::QUICK } else { wasm_programs::PROGRAMS };
    let programs: Vec<&WasmProgram> = pool
        .iter()
        .filter(|p| {
            if args.programs.is_empty() {
                args.all || p.benchmark
            } else {
                args.programs.iter().any(|n| n == p.name)
            }
        })
        .collect();
    let mut out = io::stdout().lock();
    for (name, version) in peers.versions() {
        writeln!(out, "- {name}: {version}")?;
    }
    for (name, hint) in peers.missing() {
        writeln!(out, "- {name}: missing ({hint})")?;
    }
    let before = load();
    let samples = peers.time_suite(&programs, args.rounds)?;
    let after = load();
    writeln!(
        out,
        "\n{} rounds, interleaved; {} runs; load average before/after: {before} / {after}\n",
        args.rounds,
        if args.quick { "short" } else { "default" }
    )?;
    let names = peers.available();
    let rows: Vec<(&WasmProgram, PeerSamples)> = programs.into_iter().zip(samples).collect();
    let median = |s: &PeerSamples, i: usize| s.medians().0[i].1;
    table(&mut out, "Median wall time, seconds (whole process)", &names, &rows, &|s, i| secs(median(s, i)))?;
    // The other programs do next to nothing: their rows show each peer's start-up.
    let any_benchmark = rows.iter().any(|(p, _)| p.benchmark);
    if let Some(base) = names.iter().position(|&n| n == "gcc -O2") {
        let ratio = |s: &PeerSamples, i: usize| median(s, i).as_secs_f64() / median(s, base).as_secs_f64();
        table(&mut out, "Ratio to gcc -O2 (median / median)", &names, &rows, &|s, i| format!("{:.1}x", ratio(s, i)))?;
        let means: Vec<String> = (0..names.len())
            .map(|i| {
                let r: Vec<f64> =
                    rows.iter().filter(|(p, _)| p.benchmark || !any_benchmark).map(|(_, s)| ratio(s, i)).collect();
                format!("{} {:.1}x", names[i], geomean(&r))
            })
            .collect();
        let over = if any_benchmark { "the benchmarks" } else { "these programs" };
        writeln!(out, "Geometric mean of the ratio to gcc -O2 over {over}: {}\n", means.join(", "))?;
    }
    let spread = |s: &PeerSamples, i: usize| {
        let runs = &s.0[i].1;
        let (min, max) =
            (runs.iter().min().copied().unwrap_or_default(), runs.iter().max().copied().unwrap_or_default());
        format!("{} / {:.2}", secs(min), max.as_secs_f64() / min.as_secs_f64().max(1e-9))
    };
    table(&mut out, "Fastest run, seconds / spread (max / min)", &names, &rows, &spread)?;
    Ok(())
}
