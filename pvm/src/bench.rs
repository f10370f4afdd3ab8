//! `pvm bench`: the benchmark programs on each engine, with time, retired
//! instructions and instructions per second.

use std::io::{self, Write};
use std::time::Duration;

use crate::interp::Outcome;
use crate::machine::{BufferIo, DEFAULT_MEM_MIB};
use crate::programs;
use crate::run::{self, Engine, LoadOptions};

/// One program on one engine.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub program: &'static str,
    pub engine: Engine,
    pub elapsed: Duration,
    pub retired: u64,
    pub output: String,
}

/// Runs the named benchmark programs (all six if empty) on each engine and
/// checks that each printed what it should.
pub fn run(names: &[String], engines: &[Engine]) -> Result<Vec<BenchRow>, Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for p in programs::benchmarks().filter(|p| names.is_empty() || names.iter().any(|n| n == p.name)) {
        let image = run::build(p.name, p.kind, p.source.as_bytes(), LoadOptions::default())?;
        for &engine in engines {
            let mut io = BufferIo::default();
            let cfg = run::RunConfig { engine, mem_mib: DEFAULT_MEM_MIB, ..Default::default() };
            let r = run::run_image(&image, &cfg, None, None, &mut io)?;
            let output = String::from_utf8_lossy(&io.output).into_owned();
            let want = p.expectation().stdout;
            if r.outcome != Outcome::Exited(0) || output != want {
                return Err(format!("{} on {engine:?}: got {:?} / {output:?}, want {want:?}", p.name, r.outcome).into());
            }
            rows.push(BenchRow { program: p.name, engine, elapsed: r.elapsed, retired: r.machine.retired, output });
        }
    }
    Ok(rows)
}

/// Prints the table.
pub fn render(out: &mut dyn Write, rows: &[BenchRow]) -> io::Result<()> {
    writeln!(out, "| program | engine | time (s) | retired instructions | M instr/s |")?;
    writeln!(out, "|---|---|---:|---:|---:|")?;
    for r in rows {
        let secs = r.elapsed.as_secs_f64();
        writeln!(
            out,
            "| {} | {:?} | {:.3} | {} | {:.0} |",
            r.program,
            r.engine,
            secs,
            r.retired,
            r.retired as f64 / secs.max(1e-9) / 1e6
        )?;
    }
    Ok(())
}
