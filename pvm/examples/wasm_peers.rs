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

use clap::Parser;
use pvm::wasm_peers::report::{self, Row};
use pvm::wasm_peers::WasmPeers;
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
        writeln!(out, "- {name}: not installed ({hint})")?;
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
    let rows: Vec<Row<'_>> =
        programs.into_iter().zip(samples).map(|(program, samples)| Row { program, samples }).collect();
    report::render(&mut out, &names, &rows)?;
    Ok(())
}
