//! The thread options of `pvm run` (flattened into its arguments).

use super::{Model, Placement, ThreadConfig, DEFAULT_MAX_THREADS, DEFAULT_QUANTUM};

/// `--threads`, `--quantum`, `--jacket`, `--max-threads`, `--placement`,
/// `--steal`, `--seed`.
#[derive(Clone, Debug, clap::Args)]
pub struct ThreadArgs {
    /// Thread model: user (many-to-one, deterministic), kernel (one-to-one,
    /// parallel), hybrid:K (many-to-many over K OS workers).
    #[arg(long = "threads", default_value = "user", value_parser = parse_model)]
    pub model: Model,
    /// Instructions a guest thread retires before it is preempted.
    #[arg(long, default_value_t = DEFAULT_QUANTUM, value_parser = clap::value_parser!(u64).range(1..))]
    pub quantum: u64,
    /// Blocking sys 7 (sleep) and sys 2 (read) park only the calling guest
    /// thread while the others run.
    #[arg(long)]
    pub jacket: bool,
    /// Live guest threads at most (a spawn past it traps).
    #[arg(long, default_value_t = DEFAULT_MAX_THREADS)]
    pub max_threads: usize,
    /// Where a new or woken thread goes (hybrid): random, round-robin, least-loaded.
    #[arg(long, default_value = "round-robin", value_parser = parse_placement)]
    pub placement: Placement,
    /// Idle workers steal threads from the longest run queue (hybrid).
    #[arg(long)]
    pub steal: bool,
    /// Seed of --placement random.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_model(s: &str) -> Result<Model, String> {
    s.parse()
}

fn parse_placement(s: &str) -> Result<Placement, String> {
    s.parse()
}

impl ThreadArgs {
    pub fn config(&self) -> ThreadConfig {
        ThreadConfig {
            model: self.model,
            quantum: self.quantum,
            jacket: self.jacket,
            max_threads: self.max_threads,
            placement: self.placement,
            steal: self.steal,
            seed: self.seed,
        }
    }
}
