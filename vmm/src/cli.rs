//! The `vmm` command line, as a library function so tests can drive it
//! in-process with their own output sinks.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use crate::arch::x86_64::regs::EntryMode;
use crate::loader::{self, LoaderError};
use crate::vm::{ExitCode, Image, RunOptions, Vm, VmConfig, VmError};

#[derive(Parser)]
#[command(name = "vmm", version, about = "Boot tiny x86 guests on KVM and show every trap")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in guests.
    List,
    /// Boot a guest: a built-in name (default: modes) or a file.
    Run(RunArgs),
    /// Measure the exit round trip and the boot time.
    Bench {
        /// Rounds of the exit benchmark (the fastest is kept).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Boots of `hello` for the boot-time figure.
        #[arg(long, default_value_t = 20)]
        boots: u32,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Built-in guest name or path to an image (flat binary or ELF).
    guest: Option<String>,
    /// CPU mode to start a flat binary in.
    #[arg(long, value_enum, default_value_t = Mode::Real)]
    mode: Mode,
    /// Guest-physical load address of a flat binary (default 0x7c00 in real mode, else 0x100000).
    #[arg(long, value_parser = parse_u64)]
    load_addr: Option<u64>,
    /// Entry point of a flat binary (default: its load address).
    #[arg(long, value_parser = parse_u64)]
    entry: Option<u64>,
    /// Guest RAM in MiB (mapped lazily).
    #[arg(long, default_value_t = crate::arch::x86_64::layout::DEFAULT_MEM_MIB)]
    mem: u64,
    /// Give the guest KVM's in-kernel interrupt controller and PIT.
    #[arg(long)]
    timers: bool,
    /// PVH command line for ELF guests with a PVH note.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Print one line per exit on stderr.
    #[arg(long)]
    trace: bool,
    /// Print exit statistics on stderr at the end.
    #[arg(long)]
    stats: bool,
    /// Stop the guest after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    timeout: Option<f64>,
    /// Run the vCPU thread without its seccomp filter.
    #[arg(long)]
    no_seccomp: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Real,
    Protected,
    Long,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 1e9")),
    }
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number (decimal or 0x-prefixed hex): {e}"))
}

/// Prints an error with its whole chain of causes.
pub fn report(err: &mut dyn Write, error: &dyn std::error::Error) {
    let _ = writeln!(err, "vmm: error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = writeln!(err, "  caused by: {cause}");
        source = cause.source();
    }
}

fn run(
    args: RunArgs,
    input: Option<Box<dyn std::io::Read + Send>>,
    out: Box<dyn Write + Send>,
    err: &mut (dyn Write + Send),
) -> Result<u8, VmError> {
    let name = args.guest.unwrap_or_else(|| guests::DEFAULT_GUEST.to_string());
    let file_bytes;
    let (image, mut config) = match guests::find(&name) {
        Some(g) if !Path::new(&name).exists() => crate::builtin_image(g),
        _ => {
            file_bytes = std::fs::read(&name).map_err(|source| {
                let path = if guests::GUESTS.iter().all(|g| g.name != name) && !name.contains('/') {
                    format!("{name} (not a file, nor a built-in guest: see `vmm list`)")
                } else {
                    name.clone()
                };
                VmError::Loader(LoaderError::Read { path, source })
            })?;
            let image = if loader::is_elf(&file_bytes) {
                Image::Elf(&file_bytes)
            } else {
                let mode = match args.mode {
                    Mode::Real => EntryMode::Real,
                    Mode::Protected => EntryMode::Protected,
                    Mode::Long => EntryMode::Long,
                };
                let load = args.load_addr.unwrap_or_else(|| crate::default_load_addr(mode));
                Image::Flat { bytes: &file_bytes, mode, load, entry: args.entry.unwrap_or(load) }
            };
            (image, VmConfig::default())
        }
    };
    config.mem_mib = args.mem;
    config.timers |= args.timers;
    config.cmdline = args.cmdline;
    let mut vm = Vm::with_serial_input(&config, &image, out, input)?;
    let timeout = args.timeout.map(Duration::from_secs_f64);
    let seccomp = !args.no_seccomp;
    let result = vm.run(RunOptions { trace: args.trace.then_some(&mut *err), stats: args.stats, timeout, seccomp })?;
    if let Some(stats) = &result.stats {
        let _ = stats.render(err, result.wall);
    }
    Ok(result.status)
}

/// Runs the command line `args` (without the program name): the guest's
/// serial input comes from `input`, its serial output and reports go to
/// `out`, trace, statistics and errors to `err`. Returns the exit status.
pub fn main_with(
    args: &[&str],
    input: Option<Box<dyn std::io::Read + Send>>,
    mut out: Box<dyn Write + Send>,
    err: &mut (dyn Write + Send),
) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once("vmm").chain(args.iter().copied())) {
        Ok(cli) => cli,
        Err(e) => {
            let use_stdout = !e.use_stderr();
            let text = e.render().to_string();
            let _ = if use_stdout { out.write_all(text.as_bytes()) } else { err.write_all(text.as_bytes()) };
            return if use_stdout { 0 } else { ExitCode::Usage as i32 };
        }
    };
    match cli.command {
        Command::List => {
            for g in guests::GUESTS {
                let default = if g.name == guests::DEFAULT_GUEST { " (default)" } else { "" };
                let _ = writeln!(out, "{:<8} {}{default}", g.name, g.description);
            }
            0
        }
        Command::Run(args) => match run(args, input, out, err) {
            Ok(status) => i32::from(status),
            Err(e) => {
                report(err, &e);
                e.exit_code() as i32
            }
        },
        Command::Bench { rounds, boots } => {
            let start = Instant::now();
            match crate::bench::run(rounds, boots) {
                Ok(r) => {
                    let _ = r.render(&mut out);
                    let _ = writeln!(out, "bench took {:.1} s", start.elapsed().as_secs_f64());
                    0
                }
                Err(e) => {
                    report(err, &e);
                    e.exit_code() as i32
                }
            }
        }
    }
}
