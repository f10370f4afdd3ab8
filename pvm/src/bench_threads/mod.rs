//! `pvm bench threads`: the classic material on threads, measured.
//!
//! - [`costs`]: the textbook table (Anderson et al. 1992: null fork and
//!   signal-wait for user-level threads, kernel-level threads and
//!   processes) for pvm's thread models on both engines and for native
//!   threads and processes ([`native`]), with the 1992 figures, the
//!   ratios, and a CPU-bound program's speedup on two kernel threads;
//! - [`servers`]: a simulated file server in the three classic shapes
//!   (dispatcher/worker threads, one blocking thread, a finite-state
//!   machine) under each thread model;
//! - [`balance`]: the placement policies of the hybrid model (and
//!   stealing) on uniform, heavy-tailed and bursty task lists ([`workload`]).
//!
//! Every figure is the median over `--rounds` rounds; every guest output
//! is checked against what it must be ([`guest`]).

pub mod balance;
pub mod costs;
pub mod guest;
pub mod native;
pub mod render;
pub mod runner;
pub mod servers;
pub mod stats;
pub mod workload;

use std::io::Write;

/// Errors of `pvm bench threads`.
#[derive(Debug, thiserror::Error)]
pub enum ThreadBenchError {
    #[error("native baseline: {0} failed")]
    Native(&'static str, #[source] std::io::Error),
    #[error("a native baseline's thread panicked")]
    NativePanic,
    #[error("native parsum gave {got}, want {want}")]
    NativeWrong { got: u64, want: u64 },
    #[error("a native baseline's child process failed (wait status {0})")]
    ChildFailed(i32),
    #[error("guest program has no `{0}: .quad` line to set (the program and the bench disagree)")]
    NoParam(String),
    #[error("{n} {what}: the guest program's tables hold 1 to {max}")]
    Size { what: &'static str, n: usize, max: usize },
    #[error("guest program printed no `@{0}` timing line")]
    NoTiming(String),
    #[error("guest program printed a malformed timing line {0:?} (want `@name number`)")]
    BadTiming(String),
    #[error("{program} under {model} on {engine} did not load or run")]
    Load {
        program: String,
        model: String,
        engine: &'static str,
        #[source]
        source: Box<crate::run::LoadError>,
    },
    #[error(transparent)]
    WrongOutput(Box<WrongOutput>),
    #[error("a threaded run reported no per-thread figures for every thread (each must have run)")]
    NoThreadStats,
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A guest program that ran but did not give what it must.
#[derive(Debug, thiserror::Error)]
#[error("{program} under {model} on {engine}: got {outcome} with output {got:?}, want status 0 and {want:?}")]
pub struct WrongOutput {
    pub program: String,
    pub model: String,
    pub engine: &'static str,
    pub outcome: String,
    pub got: String,
    pub want: String,
}

/// How big a run is: the full bench, or `--quick` (small and fast, for
/// the test that checks every row appears).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Null forks per pvm run.
    pub pvm_forks: u64,
    /// Round trips (two hand-offs each) per pvm signal-wait run.
    pub pvm_rounds_sw: u64,
    pub native_thread_forks: u32,
    pub native_process_forks: u32,
    /// Round trips of the native futex and condvar ping-pongs.
    pub native_sw: u32,
    /// Round trips of the pipe ping-pong.
    pub pipe_sw: u32,
    /// Items parsum adds up.
    pub parsum_items: u64,
    /// File server: requests, dispatcher's workers, disk delay (µs) and
    /// rounds of compute per request.
    pub requests: usize,
    pub workers: usize,
    pub disk_us: u64,
    pub request_work: u64,
    /// Load balancing: tasks per list, compute rounds per work unit, mean
    /// work units per task.
    pub tasks: usize,
    pub task_unit: u64,
    pub task_mean_work: u64,
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        pvm_forks: 20_000,
        pvm_rounds_sw: 20_000,
        native_thread_forks: 2_000,
        native_process_forks: 500,
        native_sw: 20_000,
        pipe_sw: 5_000,
        parsum_items: 4_000_000,
        requests: 200,
        workers: 16,
        disk_us: 1_500,
        request_work: 2_000,
        tasks: 64,
        task_unit: 1_000,
        task_mean_work: 20,
    };

    pub const QUICK: Sizes = Sizes {
        pvm_forks: 200,
        pvm_rounds_sw: 200,
        native_thread_forks: 50,
        native_process_forks: 10,
        native_sw: 200,
        pipe_sw: 100,
        parsum_items: 100_000,
        requests: 24,
        workers: 4,
        disk_us: 500,
        request_work: 200,
        tasks: 16,
        task_unit: 200,
        task_mean_work: 5,
    };
}

/// A part of the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The cost table (null fork, signal-wait) and the parallel speedup.
    Costs,
    /// The file server in three shapes under each thread model.
    Servers,
    /// Placement policies and stealing on three workloads.
    Balance,
}

/// The command line of `pvm bench threads`.
#[derive(Clone, Debug, clap::Args)]
pub struct ThreadsArgs {
    /// Rounds of every measurement (the median is kept).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// A small, fast configuration (to check that everything runs).
    #[arg(long)]
    pub quick: bool,
    /// Seed of the request and task lists and of random placement.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only these parts (comma-separated).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub parts: Vec<Part>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<String>,
    /// Also draw the load-balancing chart as SVG to this file.
    #[arg(long)]
    pub plot: Option<String>,
}

/// Everything one `pvm bench threads` measured.
#[derive(Clone, Debug, Default)]
pub struct ThreadReport {
    pub load_before: String,
    pub load_after: String,
    pub costs: Option<costs::CostTable>,
    pub servers: Option<Vec<servers::ServerRow>>,
    pub balance: Option<Vec<balance::BalanceRow>>,
}

/// Runs the parts `args` asks for.
///
/// # Errors
/// If a measurement fails or a guest program's output is wrong.
pub fn run(args: &ThreadsArgs) -> Result<ThreadReport, ThreadBenchError> {
    let sizes = if args.quick { Sizes::QUICK } else { Sizes::FULL };
    let rounds = args.rounds.max(1);
    let want = |p: Part| args.parts.is_empty() || args.parts.contains(&p);
    let mut report = ThreadReport { load_before: stats::machine_load(), ..Default::default() };
    if want(Part::Costs) {
        report.costs = Some(costs::measure(&sizes, rounds)?);
    }
    if want(Part::Servers) {
        report.servers = Some(servers::measure(&sizes, rounds, args.seed)?);
    }
    if want(Part::Balance) {
        report.balance = Some(balance::measure(&sizes, rounds, args.seed)?);
    }
    report.load_after = stats::machine_load();
    Ok(report)
}

/// `pvm bench threads`: runs, prints the tables to `out`, writes the JSON
/// and SVG where asked; returns the exit status.
pub fn command(args: &ThreadsArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let report = match run(args) {
        Ok(r) => r,
        Err(e) => {
            crate::cli::report(err, &e);
            return 1;
        }
    };
    let _ = render::render(out, &report, args);
    let mut files = Vec::new();
    files.extend(args.json.as_ref().map(|p| (p.clone(), render::to_json(&report))));
    if let (Some(p), Some(rows)) = (&args.plot, &report.balance) {
        files.push((p.clone(), balance::svg(rows)));
    }
    let mut status = 0;
    for (path, text) in files {
        if let Err(source) = std::fs::write(&path, text) {
            crate::cli::report(err, &ThreadBenchError::Write { path, source });
            status = crate::cli::STATUS_NO_INPUT;
        }
    }
    status
}
