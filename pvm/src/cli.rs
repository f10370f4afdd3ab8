//! The `pvm` command line, as a library function so tests can drive it
//! in-process with their own output sinks.

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};

use crate::interp::Outcome;
use crate::isa::Opcode;
use crate::machine::{SysIo, DEFAULT_MEM_MIB};
use crate::run::{self, Engine, LoadError, LoadOptions, RunConfig};
use crate::trap::TrapKind;
use crate::{disasm, programs};

/// Exit status for a program that failed to load (assembler, verifier, image).
pub const STATUS_BAD_PROGRAM: i32 = 65;
/// Exit status for a file that cannot be read.
pub const STATUS_NO_INPUT: i32 = 66;
/// Exit status for a bad command line.
pub const STATUS_USAGE: i32 = 2;
/// Exit status when the translator itself fails (e.g. a block larger than the cache).
pub const STATUS_TRANSLATOR: i32 = 70;
/// Exit status when the sandbox cannot be installed.
pub const STATUS_SANDBOX: i32 = 71;

#[derive(Parser)]
#[command(name = "pvm", version, about = "A bytecode process VM: assembler, verifier, interpreter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    Interp,
    Jit,
    /// Both engines (bench only).
    Both,
}

impl EngineArg {
    fn engines(self) -> Vec<Engine> {
        match self {
            EngineArg::Interp => vec![Engine::Interp],
            EngineArg::Jit => vec![Engine::Jit],
            EngineArg::Both => vec![Engine::Interp, Engine::Jit],
        }
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1 << 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .filter(|&n| n <= 1 << 40)
        .ok_or_else(|| format!("{s:?} is not a size like 4096, 64K or 32M (at most 1 TiB)"))
}

fn parse_addr(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?} is not an address (decimal or 0x hex): {e}"))
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in programs.
    List,
    /// Run a program: a built-in name (default: demo), or a .pasm, .pbc,
    /// .b or .wasm file (a WASI command; arguments after --).
    Run {
        program: Option<String>,
        /// Arguments of a WebAssembly program (after --).
        #[arg(last = true)]
        args: Vec<String>,
        /// Environment variable NAME=VALUE of a WebAssembly program (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Most MiB a WebAssembly linear memory may grow to.
        #[arg(long, default_value_t = crate::wasm::image::DEFAULT_MEMORY_MIB)]
        wasm_memory: u64,
        /// interp or jit.
        #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
        engine: EngineArg,
        /// Code cache size of the translator (bytes, or with K or M).
        #[arg(long, value_parser = parse_size, default_value = "32M")]
        cache_size: usize,
        /// Entries a block start takes before the translator translates it
        /// (jit; before that it runs on the interpreter; 1: at once).
        #[arg(long, default_value_t = crate::jit::DEFAULT_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
        jit_threshold: u32,
        /// Print the translation of the block at this guest pc (jit).
        #[arg(long, value_parser = parse_addr)]
        dump_block: Option<u64>,
        /// Print retired instructions, speed and the opcode histogram on stderr.
        #[arg(long)]
        stats: bool,
        /// Print every retired instruction on stderr (for small programs).
        #[arg(long)]
        trace: bool,
        /// Trap after this many retired instructions.
        #[arg(long)]
        fuel: Option<u64>,
        /// Memory size in MiB.
        #[arg(long, default_value_t = DEFAULT_MEM_MIB)]
        mem: u64,
        /// Compile Brainfuck without folding runs and clear loops.
        #[arg(long)]
        no_bf_opt: bool,
        /// Break the translator on purpose: every bounds check lets this
        /// many bytes past its limit through, for the guard regions around
        /// guest memory to catch (jit; --stats counts the faults).
        #[arg(long, value_parser = parse_size, default_value = "0")]
        bounds_slack: usize,
        /// Run the program without the seccomp filter.
        #[arg(long)]
        no_seccomp: bool,
        #[command(flatten)]
        threads: crate::threads::args::ThreadArgs,
    },
    /// Assemble a .pasm file into a .pbc image.
    Asm {
        input: String,
        #[arg(short, long)]
        output: String,
    },
    /// Disassemble a .pbc image (or anything `run` accepts).
    Disasm { input: String },
    /// Run WebAssembly scripts (.wast, the test suite's format) on one or
    /// both engines; a directory means every .wast file in it.
    Wast {
        #[arg(long, value_enum, default_value_t = EngineArg::Both)]
        engine: EngineArg,
        /// Print each failed directive, not only the counts.
        #[arg(long, short)]
        verbose: bool,
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Run the benchmark programs on both engines and compare them
    /// (`pvm bench threads`: the thread and process costs instead).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchWhat>,
        #[arg(long, value_enum, default_value_t = EngineArg::Both)]
        engine: EngineArg,
        /// Only these programs (comma-separated).
        #[arg(long, value_delimiter = ',')]
        programs: Vec<String>,
        /// Runs of each program per engine (the median is kept).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<String>,
        /// Also draw the speedup chart as SVG to this file.
        #[arg(long)]
        plot: Option<String>,
        /// Also time the same algorithms under gcc -O2, luajit, luajit -joff
        /// and lua5.4 (with --wasm: wasm3, wasmi, wasmtime, V8 and gcc -O2).
        #[arg(long)]
        compare: bool,
        /// The C programs compiled to WebAssembly instead, as whole processes
        /// (`pvm run prog.wasm`) beside the WebAssembly runtimes.
        #[arg(long)]
        wasm: bool,
        /// Where the peer programs are.
        #[arg(long, default_value = "../shared/bench-peers")]
        peers: String,
        /// Entries a block start takes before the translator translates it
        /// (jit; before that it runs on the interpreter; 1: at once).
        #[arg(long, default_value_t = crate::jit::DEFAULT_THRESHOLD, value_parser = clap::value_parser!(u32).range(1..))]
        jit_threshold: u32,
    },
}

/// What `pvm bench` measures besides its programs.
#[derive(Subcommand)]
enum BenchWhat {
    /// Threads and processes: the textbook cost table, server models and
    /// load balancing, measured.
    Threads(crate::bench_threads::ThreadsArgs),
}

fn load_status(e: &LoadError) -> i32 {
    match e {
        LoadError::Read { .. } => STATUS_NO_INPUT,
        LoadError::Jit(_) => STATUS_TRANSLATOR,
        LoadError::Sandbox(_) => STATUS_SANDBOX,
        _ => STATUS_BAD_PROGRAM,
    }
}

/// Prints an error with its chain of causes.
pub fn report(err: &mut dyn Write, error: &dyn std::error::Error) {
    let _ = writeln!(err, "pvm: error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = writeln!(err, "  caused by: {cause}");
        source = cause.source();
    }
}

/// Runs the command line `args` (without the program name). Guest stdout
/// goes to `io`, reports to `out`, statistics and errors to `err`.
pub fn main_with(args: &[&str], io: &mut dyn SysIo, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once("pvm").chain(args.iter().copied())) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = err.write_all(text.as_bytes());
                return STATUS_USAGE;
            }
            let _ = out.write_all(text.as_bytes());
            return 0;
        }
    };
    match cli.command {
        Command::List => {
            for p in programs::PROGRAMS {
                let tag = if p.benchmark {
                    " [bench]"
                } else if p.name == programs::DEFAULT_PROGRAM {
                    " (default)"
                } else {
                    ""
                };
                let _ = writeln!(out, "{:<13} {}{tag}", p.name, p.description());
            }
            0
        }
        Command::Run {
            program,
            args,
            env,
            wasm_memory,
            engine,
            cache_size,
            jit_threshold,
            dump_block,
            stats,
            trace,
            fuel,
            mem,
            no_bf_opt,
            bounds_slack,
            no_seccomp,
            threads,
        } => {
            let engine = match engine {
                EngineArg::Interp => Engine::Interp,
                EngineArg::Jit => Engine::Jit,
                EngineArg::Both => {
                    let _ = writeln!(err, "pvm: error: --engine both is for `pvm bench`; run takes interp or jit");
                    return STATUS_USAGE;
                }
            };
            if trace && engine == Engine::Jit {
                let _ = writeln!(
                    err,
                    "pvm: error: --trace needs --engine interp (translated code does not stop per instruction)"
                );
                return STATUS_USAGE;
            }
            let spec = program.unwrap_or_else(|| programs::DEFAULT_PROGRAM.to_string());
            let wasm = crate::wasm::Options { memory_mib: wasm_memory, ..Default::default() };
            let loaded = match run::load_program(&spec, LoadOptions { bf_optimize: !no_bf_opt, wasm }) {
                Ok(l) => l,
                Err(e) => {
                    report(err, &e);
                    return load_status(&e);
                }
            };
            let image = loaded.image;
            let mut wasi;
            let io: &mut dyn SysIo = match &loaded.wasm {
                Some(w) => {
                    let argv = std::iter::once(spec.clone()).chain(args).collect();
                    wasi = crate::wasm::wasi::Wasi::new(io, argv, env, w.memory_desc);
                    &mut wasi
                }
                None => io,
            };
            let cfg = RunConfig {
                engine,
                mem_mib: loaded.wasm.as_ref().map_or(mem, |w| w.mem_mib.max(mem)),
                fuel,
                stats,
                cache_size,
                jit_threshold,
                bounds_slack: bounds_slack as u64,
                seccomp: !no_seccomp,
                threads: threads.config(),
            };
            let mut dump = Vec::new();
            let result = run::run_image(
                &image,
                &cfg,
                trace.then_some(&mut *err),
                dump_block.map(|pc| (pc, &mut dump as &mut dyn Write)),
                io,
            );
            let _ = err.write_all(&dump);
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    report(err, &e);
                    return load_status(&e);
                }
            };
            io.flush();
            if stats {
                print_stats(err, &result, engine);
            }
            match result.outcome {
                Outcome::Exited(status) => status,
                // Nobody embeds a program run from the command line.
                Outcome::Returned => 0,
                // (the scheduler performs thread instructions: not an end)
                Outcome::ThreadOp => TrapKind::NoScheduler.exit_status(),
                Outcome::Trapped(trap) => {
                    if let Some(w) = &loaded.wasm {
                        let at = crate::wasm::symbolize(&w.symbols, trap.pc)
                            .map_or_else(String::new, |(f, off)| format!(" in {f} (+{off:#x} into its pvm code)"));
                        let _ = writeln!(err, "pvm: wasm trap: {}{at}", crate::wasm::trap_message(&trap.kind));
                    }
                    let _ = writeln!(err, "pvm: {trap}");
                    for line in result.threads.iter().flat_map(|t| &t.deadlock) {
                        let _ = writeln!(err, "pvm:   {line}");
                    }
                    trap.kind.exit_status()
                }
            }
        }
        Command::Asm { input, output } => {
            let bytes = match std::fs::read(&input) {
                Ok(b) => b,
                Err(source) => {
                    report(err, &LoadError::Read { path: input, source });
                    return STATUS_NO_INPUT;
                }
            };
            match run::build(&input, "pasm", &bytes, LoadOptions::default()) {
                Ok(image) => match std::fs::write(&output, image.to_bytes()) {
                    Ok(()) => 0,
                    Err(source) => {
                        report(err, &LoadError::Read { path: output, source });
                        STATUS_NO_INPUT
                    }
                },
                Err(e) => {
                    report(err, &e);
                    load_status(&e)
                }
            }
        }
        Command::Disasm { input } => match run::load(&input, LoadOptions::default()) {
            Ok(image) => {
                let _ = out.write_all(disasm::disassemble(&image).as_bytes());
                0
            }
            Err(e) => {
                report(err, &e);
                load_status(&e)
            }
        },
        Command::Wast { engine, verbose, files } => wast_command(&engine.engines(), verbose, &files, out, err),
        Command::Bench { what: Some(BenchWhat::Threads(args)), .. } => crate::bench_threads::command(&args, out, err),
        Command::Bench { engine, programs, rounds, json, plot, compare, wasm: true, jit_threshold, .. } => {
            let rows = match wasm_bench(&engine.engines(), &programs, rounds, compare, jit_threshold, err) {
                Ok(rows) => rows,
                Err(e) => {
                    report(err, &*e);
                    return 1;
                }
            };
            let _ = crate::bench::render(out, &rows);
            match crate::bench_wasm::front_end_costs() {
                Ok(c) => {
                    let _ = crate::bench_wasm::render_costs(out, &c);
                }
                Err(e) => report(err, &*e),
            }
            write_outputs(&rows, json, plot, err)
        }
        Command::Bench { engine, programs, rounds, json, plot, compare, peers, wasm: false, jit_threshold, .. } => {
            let peers = if compare {
                match crate::peers::Peers::discover(std::path::Path::new(&peers)) {
                    Ok(p) => {
                        let _ = writeln!(err, "comparing with: {}", p.available().join(", "));
                        Some(p)
                    }
                    Err(e) => {
                        let _ = writeln!(err, "pvm: error: {e}");
                        return STATUS_NO_INPUT;
                    }
                }
            } else {
                None
            };
            let rows = match crate::bench::run(&programs, &engine.engines(), rounds, jit_threshold, peers.as_ref()) {
                Ok(rows) => rows,
                Err(e) => {
                    report(err, &*e);
                    return 1;
                }
            };
            let _ = crate::bench::render(out, &rows);
            if engine != EngineArg::Interp {
                match crate::bench::translation_throughput() {
                    Ok(t) => {
                        let _ = t.render(out);
                    }
                    Err(e) => report(err, &*e),
                }
            }
            write_outputs(&rows, json, plot, err)
        }
    }
}

/// Writes the bench's JSON and SVG where asked.
fn write_outputs(
    rows: &[crate::bench::BenchRow],
    json: Option<String>,
    plot: Option<String>,
    err: &mut dyn Write,
) -> i32 {
    let mut status = 0;
    for (path, text) in json
        .map(|p| (p, crate::bench::to_json(rows)))
        .into_iter()
        .chain(plot.map(|p| (p, crate::plot::speedup_svg(rows))))
    {
        if let Err(source) = std::fs::write(&path, text) {
            report(err, &LoadError::Read { path, source });
            status = STATUS_NO_INPUT;
        }
    }
    status
}

fn wasm_bench(
    engines: &[Engine],
    programs: &[String],
    rounds: u32,
    compare: bool,
    jit_threshold: u32,
    err: &mut dyn Write,
) -> Result<Vec<crate::bench::BenchRow>, Box<dyn std::error::Error>> {
    let peers = if compare {
        let p = crate::wasm_peers::WasmPeers::discover()?;
        let _ = writeln!(err, "comparing with: {}", p.available().join(", "));
        for (name, hint) in p.missing() {
            let _ = writeln!(err, "  {name}: not installed ({hint})");
        }
        Some(p)
    } else {
        None
    };
    let exe = std::env::current_exe()?;
    crate::bench_wasm::run(&exe, programs, engines, rounds, jit_threshold, peers.as_ref())
}

/// The .wast files `specs` name (a directory: its .wast files, sorted).
fn wast_files(specs: &[String]) -> Result<Vec<std::path::PathBuf>, LoadError> {
    let mut out = Vec::new();
    for s in specs {
        let path = std::path::PathBuf::from(s);
        if path.is_dir() {
            let read = std::fs::read_dir(&path).map_err(|source| LoadError::Read { path: s.clone(), source })?;
            let mut found: Vec<_> = read
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wast"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn wast_command(engines: &[Engine], verbose: bool, specs: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let files = match wast_files(specs) {
        Ok(f) => f,
        Err(e) => {
            report(err, &e);
            return STATUS_NO_INPUT;
        }
    };
    let mut status = 0;
    for &engine in engines {
        let (mut passed, mut failed) = (0, 0);
        for path in &files {
            let name = path.display().to_string();
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(source) => {
                    report(err, &LoadError::Read { path: name, source });
                    return STATUS_NO_INPUT;
                }
            };
            match crate::wasm::wast::run_script(&name, &text, engine) {
                Ok(r) => {
                    passed += r.passed;
                    failed += r.failures.len();
                    if verbose {
                        let _ = writeln!(out, "{}: {r}", engine.name());
                    } else {
                        let _ = writeln!(
                            out,
                            "{}: {}: {} passed, {} failed",
                            engine.name(),
                            r.name,
                            r.passed,
                            r.failures.len()
                        );
                    }
                }
                Err(e) => {
                    report(err, &e);
                    failed += 1;
                }
            }
        }
        let _ = writeln!(out, "{}: total: {passed} passed, {failed} failed, in {} scripts", engine.name(), files.len());
        if failed > 0 {
            status = 1;
        }
    }
    status
}

fn print_stats(err: &mut dyn Write, r: &run::RunResult, engine: Engine) {
    let secs = r.elapsed.as_secs_f64();
    let retired = r.machine.retired;
    let _ = writeln!(err, "engine:               {}", engine.name());
    let _ = writeln!(err, "retired instructions: {retired}");
    let _ = writeln!(err, "time:                 {:.3} s", secs);
    let _ = writeln!(err, "instructions/second:  {:.1} M", retired as f64 / secs.max(1e-9) / 1e6);
    if let Some(t) = &r.threads {
        t.print(err);
    }
    if let Some(j) = &r.jit {
        let per = j.translate_time.as_secs_f64() * 1e9 / j.guest_instructions_translated.max(1) as f64;
        let _ = writeln!(err, "blocks translated:    {}", j.blocks_translated);
        let _ = writeln!(err, "guest instrs translated: {}", j.guest_instructions_translated);
        let _ = writeln!(err, "host bytes emitted:   {}", j.host_bytes);
        let _ = writeln!(
            err,
            "translation time:     {:.3} ms ({per:.0} ns per guest instruction)",
            j.translate_time.as_secs_f64() * 1e3
        );
        let _ = writeln!(
            err,
            "translation per block: median {:.1} µs, slowest {:.1} µs (block at {:#x})",
            j.median_block_translation.as_secs_f64() * 1e6,
            j.slowest_block_translation.as_secs_f64() * 1e6,
            j.slowest_block_pc
        );
        let _ = writeln!(err, "dispatcher entries:   {}", j.dispatcher_entries);
        let _ = writeln!(
            err,
            "cache lookups:        {} ({} hits, {} misses, {} not hot yet)",
            j.cache_lookups, j.cache_hits, j.cache_misses, j.cold_blocks
        );
        let _ = writeln!(err, "chained links:        {}", j.chains);
        let _ = writeln!(err, "invalidations:        {}", j.invalidations);
        let _ = writeln!(err, "cache flushes:        {}", j.flushes);
        let _ = writeln!(err, "interpreted instrs:   {} (one at a time)", j.interpreted);
        let _ = writeln!(
            err,
            "jit threshold:        {} (before it: {} blocks, {} instrs interpreted)",
            j.threshold, j.cold_blocks, j.cold_instructions
        );
        let _ = writeln!(err, "guard failures:       {}", j.guard_failures);
        let _ = writeln!(err, "faults recovered:     {}", j.faults_recovered);
        return;
    }
    let _ = writeln!(err, "code re-decodes:      {}", r.stats.redecodes);
    let mut hist: Vec<(Opcode, u64)> = Opcode::ALL
        .iter()
        .filter_map(|&op| r.stats.histogram.get(op as usize).filter(|&&n| n > 0).map(|&n| (op, n)))
        .collect();
    hist.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let _ = writeln!(err, "opcode histogram:");
    for (op, n) in hist {
        let _ =
            writeln!(err, "  {:<8} {:>14} {:>6.2}%", op.info().mnemonic, n, n as f64 * 100.0 / retired.max(1) as f64);
    }
}
