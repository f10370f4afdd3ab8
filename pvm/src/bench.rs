//! `pvm bench`: every benchmark program on both engines (and, with
//! `--compare`, the same algorithms under gcc -O2, lua5.4 and luajit), with
//! the outputs checked identical, as a table, JSON or an SVG chart.

use std::io::{self, Write};
use std::time::Duration;

use crate::interp::Outcome;
use crate::jit::JitStats;
use crate::machine::{BufferIo, DEFAULT_MEM_MIB};
use crate::peers::PeerTimes;
use crate::programs::{self, Program};
use crate::run::{self, Engine, LoadOptions, RunConfig};

/// One program (a benchmark, or a Brainfuck program with or without the
/// front end's optimisations).
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub program: String,
    pub retired: u64,
    /// Median time per engine (`None` if that engine was not run).
    pub interp: Option<Duration>,
    pub jit: Option<Duration>,
    pub jit_stats: Option<JitStats>,
    /// Whole-process times of the peers (C, Lua, LuaJIT), when compared.
    pub peers: PeerTimes,
    pub output: String,
}

impl BenchRow {
    /// Interpreter time / translator time.
    pub fn speedup(&self) -> Option<f64> {
        Some(self.interp?.as_secs_f64() / self.jit?.as_secs_f64())
    }
}

/// The median of `v` (the upper one of an even count), if it has any.
pub fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The programs `pvm bench` runs: the six benchmarks, then the Brainfuck
/// ones with and without the front end's optimisations.
pub fn suite(names: &[String]) -> Vec<(String, &'static Program, LoadOptions)> {
    let mut out = Vec::new();
    for p in programs::benchmarks().chain(programs::PROGRAMS.iter().filter(|p| p.name == "loops_bf")) {
        if !names.is_empty() && !names.iter().any(|n| n == p.name) {
            continue;
        }
        if p.kind == "b" {
            out.push((p.name.to_string(), p, LoadOptions::default()));
            out.push((
                format!("{} --no-bf-opt", p.name),
                p,
                LoadOptions { bf_optimize: false, ..LoadOptions::default() },
            ));
        } else {
            out.push((p.name.to_string(), p, LoadOptions::default()));
        }
    }
    out
}

/// Runs the suite: `rounds` interleaved rounds of every engine, medians
/// kept; fails if the engines' outputs differ or differ from the expectation.
pub fn run(
    names: &[String],
    engines: &[Engine],
    rounds: u32,
    jit_threshold: u32,
    peers: Option<&crate::peers::Peers>,
) -> Result<Vec<BenchRow>, Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for (label, p, opts) in suite(names) {
        let image = run::build(p.name, p.kind, p.source.as_bytes(), opts)?;
        let want = p.expectation().stdout;
        let mut times: Vec<(Engine, Vec<Duration>)> = engines.iter().map(|&e| (e, Vec::new())).collect();
        let mut retired = 0;
        let mut jit_runs: Vec<JitStats> = Vec::new();
        for _ in 0..rounds.max(1) {
            for (engine, t) in &mut times {
                let mut io = BufferIo::default();
                let cfg = RunConfig { engine: *engine, mem_mib: DEFAULT_MEM_MIB, jit_threshold, ..Default::default() };
                let r = run::run_image(&image, &cfg, None, None, &mut io)?;
                let output = String::from_utf8_lossy(&io.output).into_owned();
                if r.outcome != Outcome::Exited(0) || output != want {
                    return Err(format!(
                        "{label} on {}: got {:?} / {output:?}, want {want:?}",
                        engine.name(),
                        r.outcome
                    )
                    .into());
                }
                if retired != 0 && retired != r.machine.retired {
                    return Err(format!(
                        "{label}: the engines retired {retired} and {} instructions",
                        r.machine.retired
                    )
                    .into());
                }
                retired = r.machine.retired;
                jit_runs.extend(r.jit);
                t.push(r.elapsed);
            }
        }
        // The translator's figures from the round with the median translation time.
        jit_runs.sort_by_key(|j| j.translate_time);
        let jit_stats = jit_runs.get(jit_runs.len() / 2).cloned();
        let get = |e: Engine| times.iter().find(|(x, _)| *x == e).and_then(|(_, t)| median(t));
        let peer_times = match (peers, p.kind) {
            (Some(peers), "pasm") => peers.time(p.name, &want, rounds)?,
            _ => PeerTimes::default(),
        };
        rows.push(BenchRow {
            program: label,
            retired,
            interp: get(Engine::Interp),
            jit: get(Engine::Jit),
            jit_stats,
            peers: peer_times,
            output: want,
        });
    }
    Ok(rows)
}

/// Translation throughput: the block at every instruction of every
/// built-in program translated, twice over (the first pass starts cold).
#[derive(Clone, Copy, Debug)]
pub struct TranslationThroughput {
    pub instructions: u64,
    pub cold: Duration,
    pub warm: Duration,
}

/// Measures [`TranslationThroughput`].
pub fn translation_throughput() -> Result<TranslationThroughput, Box<dyn std::error::Error>> {
    let mut passes = [(0u64, Duration::ZERO); 2];
    for pass in &mut passes {
        for p in programs::PROGRAMS {
            let image = run::build(p.name, p.kind, p.source.as_bytes(), LoadOptions::default())?;
            let m = crate::machine::Machine::new(&image, DEFAULT_MEM_MIB)?;
            let mut jit = crate::jit::Jit::new(&m, crate::jit::DEFAULT_CACHE_SIZE, None)?;
            pass.0 += jit.translate_everything(&m)?;
            pass.1 += jit.stats.translate_time;
        }
    }
    Ok(TranslationThroughput { instructions: passes[1].0, cold: passes[0].1, warm: passes[1].1 })
}

impl TranslationThroughput {
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let per = |d: Duration| d.as_nanos() as f64 / self.instructions.max(1) as f64;
        writeln!(
            out,
            "translation throughput: {} guest instructions (a block from every instruction of every built-in program): {:.0} ns each on the first pass, {:.0} ns each on the second",
            self.instructions,
            per(self.cold),
            per(self.warm)
        )
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.3}", d.as_secs_f64()))
}

/// The peers the rows were compared with, in the order they first appear.
pub fn peer_names(rows: &[BenchRow]) -> Vec<&'static str> {
    let mut names = Vec::new();
    for (n, _) in rows.iter().flat_map(|r| &r.peers.0) {
        if !names.contains(n) {
            names.push(*n);
        }
    }
    names
}

/// True for the six benchmarks (the same names in pasm and in C).
fn is_benchmark(name: &str) -> bool {
    programs::benchmarks().any(|p| p.name == name)
}

/// The geometric mean of `v`, if it has any values.
pub fn geomean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

/// The Markdown table, then geometric means over the six benchmarks.
pub fn render(out: &mut dyn Write, rows: &[BenchRow]) -> io::Result<()> {
    let peers = peer_names(rows);
    write!(out, "| program | interp (s) | jit (s) | speedup | retired instructions | interp M instr/s | jit M instr/s | translate (ms) | ns/guest instr | dispatcher hits |")?;
    for p in &peers {
        write!(out, " {p} (s) |")?;
    }
    writeln!(out)?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}", "---:|".repeat(peers.len()))?;
    for r in rows {
        let (tt, per, hit) = match &r.jit_stats {
            Some(j) => (
                format!("{:.3}", j.translate_time.as_secs_f64() * 1e3),
                format!("{:.0}", j.translate_time.as_nanos() as f64 / j.guest_instructions_translated.max(1) as f64),
                format!("{:.1}%", 100.0 * j.cache_hits as f64 / j.cache_lookups.max(1) as f64),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let speedup = r.speedup().map_or("-".into(), |s| format!("{s:.1}x"));
        let rate =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.0}", r.retired as f64 / d.as_secs_f64() / 1e6));
        write!(
            out,
            "| {} | {} | {} | {speedup} | {} | {} | {} | {tt} | {per} | {hit} |",
            r.program,
            secs(r.interp),
            secs(r.jit),
            r.retired,
            rate(r.interp),
            rate(r.jit)
        )?;
        for p in &peers {
            write!(out, " {} |", secs(r.peers.get(p)))?;
        }
        writeln!(out)?;
    }
    let bench: Vec<&BenchRow> = rows.iter().filter(|r| is_benchmark(&r.program)).collect();
    if let Some(g) = geomean(&bench.iter().filter_map(|r| r.speedup()).collect::<Vec<_>>()) {
        writeln!(out, "\ngeometric mean speedup of jit over interp (six benchmarks): {g:.1}x")?;
    }
    ratio_lines(out, &bench, &peers, None)?;
    // The hello row is start-up alone (whole-process runs): the same
    // ratios with each runtime's start-up taken off.
    if let Some(hello) = rows.iter().find(|r| r.program == "hello") {
        writeln!(out, "\nwith each one's start-up (its hello time) subtracted:")?;
        ratio_lines(out, &bench, &peers, Some(hello))?;
    }
    Ok(())
}

/// Geometric means of our engines' times over each peer's.
fn ratio_lines(out: &mut dyn Write, bench: &[&BenchRow], peers: &[&str], base: Option<&BenchRow>) -> io::Result<()> {
    let ours = |r: &BenchRow, engine: &str| if engine == "jit" { r.jit } else { r.interp };
    let less = |t: Duration, b: Option<Duration>| t.saturating_sub(b.unwrap_or_default()).as_secs_f64().max(1e-6);
    for engine in ["interp", "jit"] {
        for p in peers {
            // With start-up subtracted, a runtime whose start-up varied
            // more than a run took is left out.
            let net = |t: Option<Duration>, b: Option<Duration>| match (t, b) {
                (Some(t), Some(b)) if t > b => Some(less(t, Some(b))),
                (Some(t), None) => Some(less(t, None)),
                _ => None,
            };
            let ratios: Vec<f64> = bench
                .iter()
                .filter_map(|r| {
                    let mine = net(ours(r, engine), base.map(|b| ours(b, engine)).unwrap_or_default())?;
                    Some(mine / net(r.peers.get(p), base.and_then(|b| b.peers.get(p)))?)
                })
                .collect();
            if ratios.len() == bench.len() {
                if let Some(g) = geomean(&ratios) {
                    writeln!(out, "geometric mean time of {engine} / {p}: {g:.2}")?;
                }
            }
        }
    }
    Ok(())
}

/// `s` as a JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The same figures as JSON, for scripts.
pub fn to_json(rows: &[BenchRow]) -> String {
    let num = |d: Option<Duration>| d.map_or("null".into(), |d| format!("{:.6}", d.as_secs_f64()));
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let jit = r.jit_stats.as_ref().map_or("null".into(), |j| {
                format!(
                    "{{\"blocks_translated\": {}, \"guest_instructions_translated\": {}, \"host_bytes\": {}, \"translate_seconds\": {:.6}, \"median_block_translate_seconds\": {:.9}, \"slowest_block_translate_seconds\": {:.9}, \"slowest_block_pc\": {}, \"cache_lookups\": {}, \"cache_hits\": {}, \"chains\": {}, \"invalidations\": {}, \"flushes\": {}, \"interpreted\": {}, \"guard_failures\": {}, \"jit_threshold\": {}, \"cold_blocks\": {}, \"cold_instructions\": {}}}",
                    j.blocks_translated, j.guest_instructions_translated, j.host_bytes, j.translate_time.as_secs_f64(), j.median_block_translation.as_secs_f64(), j.slowest_block_translation.as_secs_f64(), j.slowest_block_pc, j.cache_lookups, j.cache_hits, j.chains, j.invalidations, j.flushes, j.interpreted, j.guard_failures, j.threshold, j.cold_blocks, j.cold_instructions
                )
            });
            let peers: Vec<String> =
                r.peers.0.iter().map(|(n, d)| format!("{}: {}", json_str(n), num(Some(*d)))).collect();
            format!(
                "  {{\"program\": {}, \"output\": {}, \"retired\": {}, \"interp_seconds\": {}, \"jit_seconds\": {}, \"speedup\": {}, \"jit\": {jit}, \"peers_seconds\": {{{}}}}}",
                json_str(&r.program),
                json_str(r.output.trim_end()),
                r.retired,
                num(r.interp),
                num(r.jit),
                r.speedup().map_or("null".into(), |s| format!("{s:.3}")),
                peers.join(", ")
            )
        })
        .collect();
    format!("[\n{}\n]\n", items.join(",\n"))
}
