//! The `pvm` command line, as a library function so tests can drive it
//! in-process with their own output sinks.

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};

use crate::interp::Outcome;
use crate::isa::Opcode;
use crate::machine::{SysIo, DEFAULT_MEM_MIB};
use crate::run::{self, Engine, LoadError, LoadOptions};
use crate::{disasm, programs};

/// Exit status for a program that failed to load (assembler, verifier, image).
pub const STATUS_BAD_PROGRAM: i32 = 65;
/// Exit status for a file that cannot be read.
pub const STATUS_NO_INPUT: i32 = 66;
/// Exit status for a bad command line.
pub const STATUS_USAGE: i32 = 2;

#[derive(Parser)]
#[command(name = "pvm", version, about = "A bytecode process VM: assembler, verifier, interpreter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Interp,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in programs.
    List,
    /// Run a program: a built-in name (default: demo), or a .pasm, .pbc or .b file.
    Run {
        program: Option<String>,
        #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
        engine: EngineArg,
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
    },
    /// Assemble a .pasm file into a .pbc image.
    Asm {
        input: String,
        #[arg(short, long)]
        output: String,
    },
    /// Disassemble a .pbc image (or anything `run` accepts).
    Disasm { input: String },
    /// Run the benchmark programs and print time and instructions per second.
    Bench {
        #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
        engine: EngineArg,
        /// Only these programs (comma-separated).
        #[arg(long, value_delimiter = ',')]
        programs: Vec<String>,
    },
}

fn load_status(e: &LoadError) -> i32 {
    match e {
        LoadError::Read { .. } => STATUS_NO_INPUT,
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
        Command::Run { program, engine: EngineArg::Interp, stats, trace, fuel, mem, no_bf_opt } => {
            let spec = program.unwrap_or_else(|| programs::DEFAULT_PROGRAM.to_string());
            let image = match run::load(&spec, LoadOptions { bf_optimize: !no_bf_opt }) {
                Ok(i) => i,
                Err(e) => {
                    report(err, &e);
                    return load_status(&e);
                }
            };
            let result = match run::run_image(&image, mem, fuel, stats, trace.then_some(&mut *err), io) {
                Ok(r) => r,
                Err(e) => {
                    report(err, &e);
                    return STATUS_BAD_PROGRAM;
                }
            };
            io.flush();
            if stats {
                print_stats(err, &result, Engine::Interp);
            }
            match result.outcome {
                Outcome::Exited(status) => status,
                Outcome::Trapped(trap) => {
                    let _ = writeln!(err, "pvm: {trap}");
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
        Command::Bench { engine: EngineArg::Interp, programs } => match crate::bench::run(&programs, &[Engine::Interp])
        {
            Ok(rows) => {
                let _ = crate::bench::render(out, &rows);
                0
            }
            Err(e) => {
                report(err, &*e);
                1
            }
        },
    }
}

fn print_stats(err: &mut dyn Write, r: &run::RunResult, engine: Engine) {
    let secs = r.elapsed.as_secs_f64();
    let retired = r.machine.retired;
    let _ = writeln!(err, "engine:               {engine:?}");
    let _ = writeln!(err, "retired instructions: {retired}");
    let _ = writeln!(err, "time:                 {:.3} s", secs);
    let _ = writeln!(err, "instructions/second:  {:.1} M", retired as f64 / secs.max(1e-9) / 1e6);
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
