//! Guest threads: the thread table and futexes ([`table`]), the thread
//! models that run them ([`user`]: many-to-one, deterministic), the
//! placement policies of the many-to-many model ([`placement`]) and the
//! figures a threaded run reports ([`stats`]).
//!
//! The engines know nothing of threads: each runs the machine's current
//! thread until a retired-count limit (the quantum, through the fuel
//! mechanism), or stops before a thread instruction and returns
//! [`Outcome::ThreadOp`](crate::interp::Outcome::ThreadOp); the model
//! performs it ([`table::Table::perform`]) and decides who runs next. A
//! program that never uses a thread instruction never enters a model, and
//! runs exactly as it did before threads existed.
//!
//! ```
//! use pvm::{asm, machine::BufferIo, run::RunConfig, threads};
//!
//! let src = "main: li r2, worker\n li r3, 0x8000\n spawn r4, r2, r3\n join r1, r4\n sys 3\n li r1, 0\n sys 0\n\
//!            worker: li r5, 42\n texit r5\n";
//! let image = asm::assemble("t.pasm", src)?;
//! let mut io = BufferIo::default();
//! let r = threads::run(&image, &RunConfig::default(), &mut io)?;
//! assert_eq!(io.output, b"42");
//! assert_eq!(r.threads.map(|t| t.threads.len()), Some(2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod args;
pub mod codelog;
pub mod engine;
pub mod hybrid;
pub mod kernel;
pub mod parallel;
pub mod placement;
pub mod stats;
pub mod table;
pub mod user;

use crate::image::Image;
use crate::machine::SysIo;
use crate::run::{LoadError, RunConfig, RunResult};

pub use placement::Placement;
pub use stats::{ModelStats, ThreadReport, ThreadStats};

/// Default `--quantum`: instructions a thread retires before a switch.
pub const DEFAULT_QUANTUM: u64 = 10_000;
/// Most OS workers of `hybrid:K`.
pub const MAX_WORKERS: usize = 256;
/// Default `--max-threads`: live threads at most.
pub const DEFAULT_MAX_THREADS: usize = 4096;

/// A thread model (`--threads`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Model {
    /// Many-to-one: one OS thread runs every guest thread, deterministically.
    #[default]
    User,
    /// One-to-one: each guest thread an OS thread, in parallel.
    Kernel,
    /// Many-to-many: guest threads multiplexed over this many OS workers.
    Hybrid(usize),
}

impl Model {
    pub fn name(self) -> String {
        match self {
            Model::User => "user".into(),
            Model::Kernel => "kernel".into(),
            Model::Hybrid(k) => format!("hybrid:{k}"),
        }
    }
}

impl std::str::FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "user" => Ok(Model::User),
            "kernel" => Ok(Model::Kernel),
            _ => match s.strip_prefix("hybrid:").map(str::parse::<usize>) {
                Some(Ok(k)) if (1..=MAX_WORKERS).contains(&k) => Ok(Model::Hybrid(k)),
                Some(_) => Err(format!("{s:?}: hybrid takes 1 to {MAX_WORKERS} workers, as hybrid:K")),
                None => Err(format!("unknown thread model {s:?}: use user, kernel or hybrid:K")),
            },
        }
    }
}

/// How guest threads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadConfig {
    pub model: Model,
    /// Instructions a thread retires before it is preempted.
    pub quantum: u64,
    /// Blocking `sys 7` / `sys 2` park the guest thread only.
    pub jacket: bool,
    /// Live threads at most (a `spawn` past it traps).
    pub max_threads: usize,
    /// Where a new or woken thread goes (`hybrid`).
    pub placement: Placement,
    /// Idle workers steal from busy ones (`hybrid`).
    pub steal: bool,
    /// The seed of `Placement::Random`.
    pub seed: u64,
}

impl Default for ThreadConfig {
    fn default() -> Self {
        ThreadConfig {
            model: Model::User,
            quantum: DEFAULT_QUANTUM,
            jacket: false,
            max_threads: DEFAULT_MAX_THREADS,
            placement: Placement::default(),
            steal: false,
            seed: 1,
        }
    }
}

/// Runs `image` under `cfg` (its `threads` field chooses the model); the
/// result's `threads` holds the per-thread figures if the program used a
/// thread instruction.
///
/// # Errors
///
/// As [`crate::run::run_image`].
pub fn run(image: &Image, cfg: &RunConfig, io: &mut dyn SysIo) -> Result<RunResult, LoadError> {
    crate::run::run_image(image, cfg, None, None, io)
}
