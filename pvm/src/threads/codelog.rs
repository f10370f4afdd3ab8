//! The code writes of every thread of a parallel run, in order: a thread
//! publishes the code its engine overwrote, and applies the others' at its
//! next exit to the runtime (the memory model of docs/isa.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::engine::SliceEngine;
use crate::machine::Machine;

/// The shared log.
#[derive(Debug, Default)]
pub struct CodeLog {
    writes: Mutex<Vec<(u64, u64)>>,
    len: AtomicU64,
}

impl CodeLog {
    /// Applies to `engine` the writes after the first `seen`.
    pub fn catch_up(&self, engine: &mut SliceEngine, m: &Machine, seen: &mut usize) {
        if self.len.load(Ordering::Acquire) as usize == *seen {
            return;
        }
        let log = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        for &(addr, len) in &log[*seen..] {
            engine.code_written(m, addr, len);
        }
        *seen = log.len();
    }

    /// Adds the writes of a thread that has seen the first `seen`.
    pub fn publish(&self, writes: Vec<(u64, u64)>, seen: &mut usize) {
        if writes.is_empty() {
            return;
        }
        let mut log = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        // (its own writes need not come back to it)
        let own = log.len() == *seen;
        log.extend(writes);
        if own {
            *seen = log.len();
        }
        self.len.store(log.len() as u64, Ordering::Release);
    }
}
