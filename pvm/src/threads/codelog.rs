//! The code writes of every thread of a parallel run, in order: a thread
//! publishes the code its engine overwrote and kicks every other engine,
//! which applies the writes at its next block boundary (the memory model
//! of docs/isa.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::engine::SliceEngine;
use crate::kick::Kick;
use crate::machine::Machine;

/// The shared log.
#[derive(Debug, Default)]
pub struct CodeLog {
    writes: Mutex<Vec<(u64, u64)>>,
    len: AtomicU64,
    /// Every engine's kick.
    kicks: Mutex<Vec<Arc<Kick>>>,
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

    /// A kick for a new engine, which the others' writes will reach.
    pub fn enlist(&self) -> Arc<Kick> {
        let k = Arc::new(Kick::default());
        self.kicks.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&k));
        k
    }

    /// Adds the writes of a thread that has seen the first `seen`, and
    /// kicks every engine but `own`, the writer's.
    pub fn publish(&self, writes: Vec<(u64, u64)>, seen: &mut usize, own: Option<&Kick>) {
        if writes.is_empty() {
            return;
        }
        self.append(writes, seen);
        for k in self.kicks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            if !own.is_some_and(|own| std::ptr::eq(own, &**k)) {
                k.kick();
            }
        }
    }

    fn append(&self, writes: Vec<(u64, u64)>, seen: &mut usize) {
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
