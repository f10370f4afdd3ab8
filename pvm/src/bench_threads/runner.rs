//! Running one guest program under one thread model on one engine, its
//! output checked.

use std::fmt;

use super::guest::{split_output, GuestOutput};
use super::ThreadBenchError;
use crate::interp::Outcome;
use crate::machine::BufferIo;
use crate::run::{self, Engine, LoadOptions, RunConfig};

/// A thread model of `pvm run --threads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Many-to-one; a blocking call blocks every thread.
    User,
    /// Many-to-one, blocking calls jacketed (`--jacket`).
    UserJacket,
    /// One-to-one: an OS thread per guest thread.
    Kernel,
    /// `hybrid:K`: guest threads over K OS workers.
    Hybrid { workers: usize, placement: Placement, steal: bool },
}

pub use crate::threads::Placement;

/// Every placement policy, in the order the tables list them.
pub const PLACEMENTS: [Placement; 3] = [Placement::Random, Placement::RoundRobin, Placement::LeastLoaded];

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Model::User => f.write_str("user"),
            Model::UserJacket => f.write_str("user --jacket"),
            Model::Kernel => f.write_str("kernel"),
            Model::Hybrid { workers, placement, steal } => {
                write!(f, "hybrid:{workers} --placement {}", placement.name())?;
                if *steal {
                    f.write_str(" --steal")?;
                }
                Ok(())
            }
        }
    }
}

/// What one run gave.
#[derive(Clone, Debug)]
pub struct GuestRun {
    pub output: GuestOutput,
    /// The thread model's per-thread figures.
    pub threads: Option<crate::threads::ThreadReport>,
}

/// The run configuration of `model` on `engine`.
fn config(model: Model, engine: Engine, seed: u64) -> RunConfig {
    use crate::threads::{Model as M, ThreadConfig};
    let base = ThreadConfig { seed, ..ThreadConfig::default() };
    let threads = match model {
        Model::User => ThreadConfig { model: M::User, ..base },
        Model::UserJacket => ThreadConfig { model: M::User, jacket: true, ..base },
        Model::Kernel => ThreadConfig { model: M::Kernel, ..base },
        Model::Hybrid { workers, placement, steal } => {
            ThreadConfig { model: M::Hybrid(workers), placement, steal, ..base }
        }
    };
    RunConfig { engine, threads, ..Default::default() }
}

/// Assembles `source`, runs it under `model` on `engine`, and checks that
/// it exits with 0 and that its checked output is `want`.
///
/// # Errors
/// If it does not assemble or run, or gives another output or status.
pub fn run_guest(
    name: &str,
    source: &str,
    want: &str,
    model: Model,
    engine: Engine,
    seed: u64,
) -> Result<GuestRun, ThreadBenchError> {
    let load = |source| ThreadBenchError::Load {
        program: name.to_string(),
        model: model.to_string(),
        engine: engine.name(),
        source: Box::new(source),
    };
    let image = run::build(name, "pasm", source.as_bytes(), LoadOptions::default()).map_err(load)?;
    let mut io = BufferIo::default();
    let r = run::run_image(&image, &config(model, engine, seed), None, None, &mut io).map_err(load)?;
    let stdout = String::from_utf8_lossy(&io.output).into_owned();
    let output = split_output(&stdout)?;
    if r.outcome != Outcome::Exited(0) || output.checked != want {
        return Err(ThreadBenchError::WrongOutput(Box::new(super::WrongOutput {
            program: name.to_string(),
            model: model.to_string(),
            engine: engine.name(),
            outcome: format!("{:?}", r.outcome),
            got: output.checked,
            want: want.to_string(),
        })));
    }
    Ok(GuestRun { output, threads: r.threads })
}
