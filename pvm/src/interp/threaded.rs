//! The interpreter as a thread of a parallel run (`--threads kernel`,
//! `hybrid`): it stops for other threads' code writes and publishes its
//! own at once (see `crate::kick`).

use std::sync::Arc;

use super::{stopped_at, InterpStats, Interpreter, Outcome};
use crate::kick::Kick;
use crate::machine::{Machine, SysIo};

impl Interpreter {
    /// Lets another OS thread stop [`Interpreter::run_kickable`] at the
    /// next block boundary.
    pub fn set_kick(&mut self, kick: Arc<Kick>) {
        self.kick = Some(kick);
    }

    /// [`Interpreter::run`] for a thread of a parallel run: it also stops
    /// (as at `fuel`) right after an instruction that wrote code, so the
    /// other threads can be told at once, and at the first block boundary
    /// (a taken branch, the end of the translator's block) after a kick.
    pub fn run_kickable(&mut self, m: &mut Machine, io: &mut dyn SysIo, fuel: u64) -> Outcome {
        let (mut st, mut sink) = (InterpStats::default(), std::io::sink());
        self.exec::<false, false, false, true>(m, io, fuel, &mut st, &mut sink).unwrap_or_else(|| stopped_at(m))
    }

    /// The kick `set_kick` gave it.
    pub fn kick(&self) -> Option<&Kick> {
        self.kick.as_deref()
    }

    /// Whether a kick waits (checked at block boundaries).
    pub(super) fn kicked(&self) -> bool {
        self.kick.as_ref().is_some_and(|k| k.pending())
    }
}
