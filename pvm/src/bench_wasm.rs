//! `pvm bench --wasm`: the C programs of `wasm-programs` (clang -O2 to
//! wasm32-wasi) on both engines and, with `--compare`, under the
//! WebAssembly peers of [`crate::wasm_peers`] (wasm3, wasmi, wasmtime, V8
//! Liftoff and TurboFan, and the same C under gcc -O2).
//!
//! Every run is a whole process, ours (`pvm run prog.wasm`) as the peers'
//! are: start-up, decoding, lowering, translation and the run, with its
//! output and exit status checked. One run in-process per program and
//! engine gives the retired instructions (equal on both engines, or the
//! bench fails) and the translator's figures. The `hello` row is start-up
//! alone, for reading the others.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wasm_programs::WasmProgram;

use crate::bench::{median, BenchRow};
use crate::interp::Outcome;
use crate::jit::JitStats;
use crate::machine::BufferIo;
use crate::peers::PeerTimes;
use crate::run::{self, Engine, LoadOptions, RunConfig};
use crate::wasm::wasi::Wasi;
use crate::wasm_peers::WasmPeers;

type BoxError = Box<dyn std::error::Error>;

/// The programs `pvm bench --wasm` runs: the six benchmarks, then hello.
pub fn suite(names: &[String]) -> Vec<&'static WasmProgram> {
    wasm_programs::benchmarks()
        .chain(wasm_programs::find("hello"))
        .filter(|p| names.is_empty() || names.iter().any(|n| n == p.name))
        .collect()
}

/// One in-process run: retired instructions, the translator's figures,
/// the time (decoding and lowering included).
fn in_process(
    p: &WasmProgram,
    engine: Engine,
    jit_threshold: u32,
) -> Result<(u64, Option<JitStats>, Duration), BoxError> {
    let started = Instant::now();
    let loaded = run::build_program(p.name, "wasm", p.wasm, LoadOptions::default())?;
    let info = loaded.wasm.ok_or("not compiled as WebAssembly")?;
    let mut inner = BufferIo { input: p.stdin.to_vec(), ..BufferIo::default() };
    let argv = std::iter::once(p.name.to_string()).chain(p.args.iter().map(|a| a.to_string())).collect();
    let env = p.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut io = Wasi::new(&mut inner, argv, env, info.memory_desc);
    let cfg = RunConfig { engine, mem_mib: info.mem_mib, jit_threshold, ..RunConfig::default() };
    let r = run::run_image(&loaded.image, &cfg, None, None, &mut io)?;
    let elapsed = started.elapsed();
    let status = match r.outcome {
        Outcome::Exited(s) => s,
        Outcome::Returned => 0,
        Outcome::Trapped(t) => return Err(format!("{} on {}: {t}", p.name, engine.name()).into()),
        Outcome::ThreadOp => {
            return Err(format!("{} on {}: stopped at a thread instruction", p.name, engine.name()).into())
        }
    };
    let out = String::from_utf8_lossy(&inner.output);
    if out != p.expected_stdout || status != p.expected_status {
        return Err(format!(
            "{} on {}: status {status}, output {out:?}, want {:?}",
            p.name,
            engine.name(),
            p.expected_stdout
        )
        .into());
    }
    Ok((r.machine.retired, r.jit, elapsed))
}

/// One whole-process run of `pvm run`, output and status checked as the
/// peers' runs are.
fn process(exe: &Path, wasm: &Path, p: &WasmProgram, engine: Engine, jit_threshold: u32) -> Result<Duration, BoxError> {
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg(wasm).args(["--engine", engine.name()]);
    cmd.arg("--jit-threshold").arg(jit_threshold.to_string());
    for (k, v) in p.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg("--").args(p.args);
    let name = match engine {
        Engine::Interp => "pvm interp",
        Engine::Jit => "pvm jit",
    };
    Ok(crate::wasm_peers::timed_run(name, cmd, p)?)
}

/// Runs the suite: `rounds` interleaved rounds (each runs every program on
/// every engine and every peer once), medians kept. `exe` is the pvm
/// binary the whole-process runs start.
pub fn run(
    exe: &Path,
    names: &[String],
    engines: &[Engine],
    rounds: u32,
    jit_threshold: u32,
    peers: Option<&WasmPeers>,
) -> Result<Vec<BenchRow>, BoxError> {
    let programs = suite(names);
    let dir = std::env::temp_dir().join(format!("pvm-bench-wasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let paths: Vec<PathBuf> = programs.iter().map(|p| dir.join(format!("{}.wasm", p.name))).collect();
    for (p, path) in programs.iter().zip(&paths) {
        std::fs::write(path, p.wasm)?;
    }
    let mut rows = Vec::new();
    let mut ours: Vec<Vec<(Engine, Vec<Duration>)>> = Vec::new();
    let mut theirs: Vec<Vec<(&'static str, Vec<Duration>)>> = vec![Vec::new(); programs.len()];
    for p in &programs {
        let mut retired = 0;
        let mut jit_stats = None;
        for &e in engines {
            let (r, j, _) = in_process(p, e, jit_threshold)?;
            if retired != 0 && r != retired {
                return Err(format!("{}: the engines retired {retired} and {r} instructions", p.name).into());
            }
            retired = r;
            jit_stats = jit_stats.or(j);
        }
        let output = p.expected_stdout.to_string();
        rows.push(BenchRow {
            program: p.name.to_string(),
            retired,
            interp: None,
            jit: None,
            jit_stats,
            peers: PeerTimes::default(),
            output,
        });
        ours.push(engines.iter().map(|&e| (e, Vec::new())).collect());
    }
    for _ in 0..rounds.max(1) {
        for (i, p) in programs.iter().enumerate() {
            for (e, t) in &mut ours[i] {
                t.push(process(exe, &paths[i], p, *e, jit_threshold)?);
            }
            if let Some(peers) = peers {
                for sample in peers.time_suite(&[p], 1)? {
                    for (name, runs) in sample.0 {
                        match theirs[i].iter_mut().find(|(n, _)| *n == name) {
                            Some((_, v)) => v.extend(runs),
                            None => theirs[i].push((name, runs)),
                        }
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for ((row, times), peer_runs) in rows.iter_mut().zip(ours).zip(theirs) {
        for (e, t) in times {
            match e {
                Engine::Interp => row.interp = median(&t),
                Engine::Jit => row.jit = median(&t),
            }
        }
        row.peers = PeerTimes(peer_runs.into_iter().filter_map(|(n, t)| Some((n, median(&t)?))).collect());
    }
    Ok(rows)
}

/// Lowering plus translation per wasm operator: every function of a
/// program decoded, validated and lowered, and the cost of translating
/// each of its pvm instructions once.
#[derive(Clone, Debug)]
pub struct FrontEndCost {
    pub program: &'static str,
    pub wasm_ops: u64,
    pub instructions: u64,
    pub lower: Duration,
    pub translate: Duration,
}

impl FrontEndCost {
    /// Nanoseconds per wasm operator, lowering and translation together.
    pub fn ns_per_op(&self) -> f64 {
        (self.lower + self.translate).as_nanos() as f64 / self.wasm_ops.max(1) as f64
    }
}

/// [`FrontEndCost`] of every program of the suite.
///
/// # Errors
///
/// A program that does not compile, or a translation failure.
pub fn front_end_costs() -> Result<Vec<FrontEndCost>, BoxError> {
    let mut out = Vec::new();
    for p in suite(&[]) {
        let c = crate::wasm::compile(p.wasm, &crate::wasm::Options::default())?;
        let m = crate::machine::Machine::new(&c.image, c.info.mem_mib)?;
        let mut jit = crate::jit::Jit::new(&m, crate::jit::DEFAULT_CACHE_SIZE, None)?;
        // A block at every instruction: each instruction is translated
        // many times over; its cost once is the time per translated
        // instruction times the instructions.
        let started = Instant::now();
        jit.translate_everything(&m)?;
        let per = started.elapsed().as_secs_f64() / jit.stats.guest_instructions_translated.max(1) as f64;
        let translate = Duration::from_secs_f64(per * c.info.instructions as f64);
        out.push(FrontEndCost {
            program: p.name,
            wasm_ops: c.info.wasm_ops,
            instructions: c.info.instructions,
            lower: c.info.compile_time,
            translate,
        });
    }
    Ok(out)
}

/// The front-end cost table.
pub fn render_costs(out: &mut dyn Write, costs: &[FrontEndCost]) -> std::io::Result<()> {
    writeln!(out, "\n| program | wasm operators | pvm instructions | decode+lower (ms) | translate all (ms) | ns per wasm operator |")?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
    for c in costs {
        writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3} | {:.0} |",
            c.program,
            c.wasm_ops,
            c.instructions,
            c.lower.as_secs_f64() * 1e3,
            c.translate.as_secs_f64() * 1e3,
            c.ns_per_op()
        )?;
    }
    Ok(())
}
