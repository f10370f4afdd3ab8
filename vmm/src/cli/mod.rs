//! The `vmm` command line, as a library function so tests can drive it
//! in-process with their own output sinks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use crate::arch::x86_64::regs::EntryMode;
use crate::boot::{self, Module, Protocol};
use crate::controller::SnapshotPlan;
use crate::kvmstate::StatePart;
use crate::loader::LoaderError;
use crate::migration::destination::{self, Listener};
use crate::migration::source::MigratePlan;
use crate::migration::Address;
use crate::snapshot::file::{self, SnapshotFileError};
use crate::snapshot::RequestedMachine;
use crate::vm::{ExitCode, Image, RunOptions, RunReport, SerialIo, Vm, VmConfig, VmError};

mod commands;
use commands::{bench, ft_bench, snapshot_info, supervised_child_args};

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
    /// Carry on a guest from a snapshot (`vmm run --snapshot FILE`).
    Restore(RestoreArgs),
    /// Wait for a guest migrating live from `vmm run --migrate-to`, then run it.
    Receive(ReceiveArgs),
    /// Print what a snapshot holds and check its memory file.
    SnapshotInfo {
        /// The state file (its memory file is FILE.mem).
        file: PathBuf,
    },
    /// Run a guest as a child VMM, restarting it from its latest checkpoint when it fails.
    Supervise(SuperviseArgs),
    /// A warm standby of `vmm supervise` (started by it).
    #[command(hide = true)]
    Standby {
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Measure the exit round trip, the boot time, snapshots and migration.
    Bench {
        /// Rounds of the exit benchmark (the fastest is kept).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Boots of `hello` for the boot-time figure.
        #[arg(long, default_value_t = 20)]
        boots: u32,
        /// Only these parts (default: all).
        #[arg(long, value_enum)]
        only: Vec<BenchPart>,
        /// Restores per RAM size, migrations per working set, runs per fault-tolerance figure.
        #[arg(long, default_value_t = 5)]
        repeat: u32,
        /// Where `--only backoff` writes its SVG plot.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct SuperviseArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    policy: crate::ft::supervisor::SuperviseFlags,
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
    /// vCPUs, each on a host thread of its own; more than one implies --timers
    /// (the in-kernel LAPICs) and an MP table. vCPU 0 boots, the others wait for its SIPI.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// The kernel's command line (PVH, Multiboot, Linux).
    #[arg(long, default_value = "")]
    cmdline: String,
    /// A file for the guest: Linux's initramfs, Multiboot's module 0, PVH's module 0.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// CPUID features to hide from the guest, comma-separated (e.g. cx16,xsave).
    #[arg(long, value_name = "LIST", value_parser = parse_cpuid_mask)]
    cpuid_mask: Option<CpuidMask>,
    #[command(flatten)]
    flags: RunFlags,
}

/// The parsed `--cpuid-mask`.
#[derive(Clone, Debug)]
struct CpuidMask(Vec<&'static crate::arch::x86_64::cpuid::Feature>);

fn parse_cpuid_mask(s: &str) -> Result<CpuidMask, String> {
    crate::arch::x86_64::cpuid::parse_mask(s).map(CpuidMask).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// The state file written by `--snapshot FILE` (its memory file is FILE.mem).
    file: PathBuf,
    /// Refuse the snapshot unless it was made with this much RAM.
    #[arg(long)]
    mem: Option<u64>,
    /// Refuse the snapshot unless it was made with --timers.
    #[arg(long)]
    timers: bool,
    /// Do not check the memory file's checksums (faster for large working sets).
    #[arg(long)]
    no_verify_memory: bool,
    /// Leave a part of the state out (a negative control for the tests).
    #[arg(long, value_enum, hide = true)]
    omit: Vec<StatePart>,
    #[command(flatten)]
    flags: RunFlags,
}

#[derive(clap::Args)]
struct ReceiveArgs {
    /// Where to wait: HOST:PORT (port 0 picks one, printed on stderr) or unix:PATH.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    #[command(flatten)]
    flags: RunFlags,
}

/// The options of a run, shared by `run`, `restore` and `receive`.
#[derive(clap::Args)]
struct RunFlags {
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
    /// Write a snapshot to FILE (and FILE.mem) on SIGUSR1 or after --snapshot-after-exits.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Write the snapshot once this many exits are handled (a deterministic point).
    #[arg(long, value_name = "N", requires = "snapshot")]
    snapshot_after_exits: Option<u64>,
    /// End the run once the snapshot is written (exit status 79).
    #[arg(long, requires = "snapshot")]
    snapshot_and_stop: bool,
    /// Migrate the guest live to a `vmm receive` at ADDR (HOST:PORT or unix:PATH), on SIGUSR2 or after --migrate-after-ms.
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    migrate_to: Option<Address>,
    /// Start the migration this many milliseconds into the run.
    #[arg(long, value_name = "MS", requires = "migrate_to")]
    migrate_after_ms: Option<u64>,
    /// Stop and copy once the dirty pages would take at most this long to send.
    #[arg(long, value_name = "MS", default_value_t = 5.0, value_parser = parse_millis)]
    max_downtime_ms: f64,
    /// Stop and copy after this many pre-copy rounds in any case.
    #[arg(long, value_name = "N", default_value_t = 30)]
    max_rounds: u32,
    /// Also write the migration report as JSON to FILE.
    #[arg(long, value_name = "FILE", requires = "migrate_to")]
    json: Option<PathBuf>,
    #[command(flatten)]
    ft: crate::ft::args::FtArgs,
    /// Serve the GDB remote protocol on HOST:PORT (gdb: target remote HOST:PORT), like QEMU's -s.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_socket, conflicts_with_all = ["snapshot", "migrate_to"])]
    gdb: Option<std::net::SocketAddr>,
    /// With --gdb: hold the guest before its first instruction until gdb resumes it, like QEMU's -S.
    #[arg(long, requires = "gdb")]
    gdb_wait: bool,
}

fn parse_socket(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let mut addrs = s.to_socket_addrs().map_err(|e| format!("{s:?} is not HOST:PORT: {e}"))?;
    addrs.next().ok_or_else(|| format!("{s:?} names no address"))
}

fn parse_address(s: &str) -> Result<Address, String> {
    Address::parse(s).map_err(|e| e.to_string())
}

fn parse_millis(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of milliseconds from 0 to 1e9")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchPart {
    Exits,
    /// The IPI round trip between two vCPUs (the `smp` guest).
    Smp,
    Snapshot,
    Migration,
    /// Detection time of each detector.
    Detection,
    /// Failover time, cold and warm standby.
    Failover,
    /// The guest's throughput with checkpoints every 10, 50, 200 ms and none.
    Checkpoint,
    /// Restart delays of each backoff policy (with --plot FILE, an SVG).
    Backoff,
    /// Heartbeat false positives against the timeout with CPU-bound neighbours (minutes; only when asked for).
    Heartbeat,
    /// Lost and duplicated lines in --repeat runs with random failures (only when asked for).
    OutputCommit,
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

/// An error and its chain of causes on one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

fn read_file(name: &str) -> Result<Vec<u8>, VmError> {
    std::fs::read(name).map_err(|source| {
        let path = if guests::GUESTS.iter().all(|g| g.name != name) && !name.contains('/') {
            format!("{name} (not a file, nor a built-in guest: see `vmm list`)")
        } else {
            name.to_string()
        };
        VmError::Loader(LoaderError::Read { path, source })
    })
}

fn boot(args: RunArgs, serial: SerialIo, err: &mut dyn Write) -> Result<(Vm, RunFlags), VmError> {
    let name = args.guest.unwrap_or_else(|| guests::DEFAULT_GUEST.to_string());
    let file_bytes;
    let (image, mut config) = match guests::find(&name) {
        Some(g) if !Path::new(&name).exists() => crate::builtin_image(g),
        _ => {
            file_bytes = read_file(&name)?;
            let protocol = boot::detect(&file_bytes);
            let image = if protocol != Protocol::Flat {
                Image::Kernel(&file_bytes)
            } else {
                let mode = match args.mode {
                    Mode::Real => EntryMode::Real,
                    Mode::Protected => EntryMode::Protected,
                    Mode::Long => EntryMode::Long,
                };
                let load = args.load_addr.unwrap_or_else(|| crate::default_load_addr(mode));
                Image::Flat { bytes: &file_bytes, mode, load, entry: args.entry.unwrap_or(load) }
            };
            // PC kernels (Linux, Multiboot) expect a PC's interrupt controllers and timer.
            (image, VmConfig { timers: protocol.wants_pc(), ..VmConfig::default() })
        }
    };
    config.mem_mib = args.mem;
    config.timers |= args.timers;
    config.vcpus = args.vcpus;
    config.cmdline = args.cmdline;
    config.boot.kernel_name = name;
    config.boot.cpuid_mask = args.cpuid_mask.map(|m| m.0).unwrap_or_default();
    if let Some(path) = args.initrd {
        let name = path.to_string_lossy().into_owned();
        config.boot.initrd = Some(Module { bytes: read_file(&name)?.into(), name });
    }
    let vm = Vm::boot(&config, &image, serial)?;
    let report = vm.boot_report();
    let listed = if args.flags.trace { &report.placed } else { &report.notes };
    for line in listed {
        let _ = writeln!(err, "vmm: boot: {line}");
    }
    Ok((vm, args.flags))
}

fn restore(args: RestoreArgs, serial: SerialIo, err: &mut dyn Write) -> Result<(Vm, RunFlags), VmError> {
    let start = Instant::now();
    let snapshot = file::read_state(&args.file).map_err(VmError::Snapshot)?;
    let requested = RequestedMachine { mem_mib: args.mem, timers: args.timers.then_some(true) };
    snapshot
        .machine
        .check_matches(&requested)
        .map_err(|diff| VmError::Snapshot(SnapshotFileError::OtherOptions(diff)))?;
    let mem = if args.omit.contains(&StatePart::Memory) {
        crate::memory::create(snapshot.machine.ram_mib).map_err(VmError::Memory)?
    } else {
        file::map_memory(&args.file, &snapshot, !args.no_verify_memory).map_err(VmError::Snapshot)?
    };
    let vm = Vm::restore(&snapshot, mem, serial, &args.omit)?;
    if args.flags.stats {
        let _ =
            writeln!(err, "restore: {:.3} ms from reading the state file to the first KVM_RUN", ms(start.elapsed()));
    }
    Ok((vm, args.flags))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(
    mut vm: Vm,
    flags: RunFlags,
    ft: Option<crate::ft::args::FtIo>,
    restored_from: Option<PathBuf>,
    err: &mut (dyn Write + Send),
) -> Result<i32, VmError> {
    let timeout = flags.timeout.map(Duration::from_secs_f64);
    if let Some(io) = ft {
        if vm.vcpu_count() > 1 {
            let what = "fault tolerance (--checkpoint-every, --watchdog-action, --inject-fault)";
            return Err(VmError::Smp(crate::smp::SmpError::Unsupported { what, vcpus: vm.vcpu_count() }));
        }
        if flags.migrate_to.is_some() {
            let why = "--migrate-to cannot be combined with checkpoints, watchdogs or injected faults yet".into();
            return Err(VmError::Ft(Box::new(crate::ft::FtError::Options(why))));
        }
        let snapshot = flags.snapshot.map(|path| SnapshotPlan {
            path,
            after_exits: flags.snapshot_after_exits,
            stop: flags.snapshot_and_stop,
        });
        let opts = crate::ft::session::SessionOptions {
            trace: flags.trace,
            stats: flags.stats,
            timeout,
            seccomp: !flags.no_seccomp,
            snapshot,
        };
        return crate::ft::args::run(vm, &flags.ft, io, restored_from, opts, err);
    }
    let snapshot = flags.snapshot.map(|path| SnapshotPlan {
        path,
        after_exits: flags.snapshot_after_exits,
        stop: flags.snapshot_and_stop,
    });
    let migrate = flags.migrate_to.map(|to| MigratePlan {
        to,
        after: flags.migrate_after_ms.map(Duration::from_millis),
        max_downtime: Duration::from_secs_f64(flags.max_downtime_ms / 1e3),
        max_rounds: flags.max_rounds.max(1),
    });
    let opts = RunOptions {
        trace: flags.trace.then_some(&mut *err),
        stats: flags.stats,
        timeout,
        seccomp: !flags.no_seccomp,
        snapshot: snapshot.clone(),
        migrate,
        gdb: flags.gdb.map(|listen| crate::gdb::GdbPlan {
            listen,
            wait: flags.gdb_wait,
            notes: Box::new(std::io::stderr()),
        }),
    };
    let result = vm.run(opts)?;
    report_run(&result, snapshot.as_ref(), err);
    for m in &result.migrations {
        let _ = m.render(err);
        if let Some(path) = &flags.json {
            if let Err(e) = std::fs::write(path, m.json()) {
                let _ = writeln!(err, "vmm: cannot write the migration report to {}: {e}", path.display());
            }
        }
    }
    Ok(result.status())
}

fn receive(args: ReceiveArgs, serial: SerialIo, err: &mut dyn Write) -> Result<(Vm, RunFlags), VmError> {
    let addr = Address::parse(&args.listen).map_err(VmError::Receive)?;
    let listener = Listener::bind(&addr).map_err(VmError::Receive)?;
    let _ = writeln!(err, "vmm receive: listening on {}", listener.local());
    let received = destination::receive(&listener, serial).map_err(VmError::Receive)?;
    let _ =
        writeln!(err, "vmm receive: the guest from {} runs here ({} pages received)", received.from, received.pages);
    Ok((received.vm, args.flags))
}

fn report_run(result: &RunReport, snapshot: Option<&SnapshotPlan>, err: &mut dyn Write) {
    for (index, stats) in result.per_vcpu.iter().enumerate() {
        let _ = writeln!(err, "vCPU {index}:");
        let _ = stats.render(err, result.wall);
    }
    if let Some(stats) = &result.stats {
        if !result.per_vcpu.is_empty() {
            let _ = writeln!(err, "all {} vCPUs:", result.per_vcpu.len());
        }
        let _ = stats.render(err, result.wall);
    }
    for s in &result.snapshots {
        let _ = writeln!(
            err,
            "vmm: snapshot written to {} after {} exits: {} pages of memory ({} KiB), {} bytes of state, in {:.3} ms",
            s.path.display(),
            s.exits,
            s.written.pages,
            s.written.pages * 4,
            s.written.state_bytes,
            ms(s.took)
        );
    }
    for f in &result.snapshot_failures {
        let _ = writeln!(err, "vmm: snapshot failed, the guest carried on: {f}");
    }
    if let (Some(plan), true) = (snapshot, result.snapshots.is_empty()) {
        if let Some(n) = plan.after_exits {
            let _ = writeln!(
                err,
                "vmm: the guest ended after {} exits, before --snapshot-after-exits {n}: no snapshot written",
                result.exits
            );
        }
    }
}

fn exit_status(result: Result<i32, VmError>, err: &mut dyn Write) -> i32 {
    match result {
        Ok(status) => status,
        Err(e) => {
            report(err, &e);
            e.exit_code() as i32
        }
    }
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
        Command::Run(args) => {
            let (serial, ft) = crate::ft::args::prepare(&args.flags.ft, SerialIo { out, input });
            let result = boot(args, serial, err).and_then(|(vm, flags)| run(vm, flags, ft, None, err));
            exit_status(result, err)
        }
        Command::Restore(args) => {
            let (serial, ft) = crate::ft::args::prepare(&args.flags.ft, SerialIo { out, input });
            let file = args.file.clone();
            let restored = restore(args, serial, err);
            let result = restored.and_then(|(vm, flags)| run(vm, flags, ft, Some(file), err));
            exit_status(result, err)
        }
        Command::Receive(args) => {
            let received = receive(args, SerialIo { out, input }, err);
            let result = received.and_then(|(vm, flags)| run(vm, flags, None, None, err));
            exit_status(result, err)
        }
        Command::Supervise(SuperviseArgs { run, policy }) => {
            crate::ft::supervisor::main(supervised_child_args(args), &policy, &run.flags.ft, out, err)
        }
        Command::Standby { flags } => {
            let opts = crate::ft::session::SessionOptions {
                trace: flags.trace,
                stats: flags.stats,
                timeout: flags.timeout.map(Duration::from_secs_f64),
                seccomp: !flags.no_seccomp,
                snapshot: None,
            };
            let result = crate::ft::standby::run(&flags.ft, opts, input, out, err);
            exit_status(result, err)
        }
        Command::SnapshotInfo { file } => {
            let result = snapshot_info(&file, &mut out);
            exit_status(result, err)
        }
        Command::Bench { rounds, boots, only, repeat, plot } => {
            let start = Instant::now();
            let result = bench(rounds, boots, &only, repeat, &mut out)
                .and_then(|()| ft_bench(&only, repeat, plot.as_deref(), &mut out));
            let _ = writeln!(out, "bench took {:.1} s", start.elapsed().as_secs_f64());
            exit_status(result.map(|()| 0), err)
        }
    }
}
