//! A request, from another OS thread, that an engine leave its run at its
//! next block boundary: how a store into code reaches the other threads of
//! a parallel run (`--threads kernel`, `hybrid`) before their quantum ends.
//!
//! The interpreter polls [`Kick::pending`] at every block boundary (in its
//! kickable loop only). Translated code checks nothing but its fuel word at
//! block entry, so a kick also zeroes the fuel word of the translator's
//! current run, if one is attached: its next block entry fails the check
//! and leaves for the dispatcher, which sees the request. No kick is lost:
//! the request stays pending until the engine takes it, and a run that
//! starts with one pending ends at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// One engine's kick.
#[derive(Debug, Default)]
pub struct Kick {
    pending: AtomicBool,
    /// The fuel word of the translator's run in progress.
    word: Mutex<Option<FuelWord>>,
}

/// A pointer to a running translator's fuel word.
#[derive(Debug, Clone, Copy)]
struct FuelWord(*const AtomicU64);

// SAFETY: the pointer is only dereferenced under `Kick::word`'s lock, and
// the translator detaches it under that lock before its fuel word goes
// away (`Attached`'s drop), so it is valid whichever thread holds it.
unsafe impl Send for FuelWord {}

impl Kick {
    /// Asks the engine to stop at its next block boundary.
    pub fn kick(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let word = self.word.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(FuelWord(p)) = *word {
            // SAFETY: attached, so the fuel word is alive (see `FuelWord`);
            // an `AtomicU64` is shared by design.
            unsafe { &*p }.store(0, Ordering::SeqCst);
        }
    }

    /// Whether a kick is waiting (a relaxed check, for hot loops: the
    /// engine then takes it with [`Kick::take`]).
    #[inline]
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Takes a waiting kick: whether there was one.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }

    /// Lets kicks reach `word`, a translator's fuel word, until the
    /// returned guard drops; a kick already pending zeroes it at once.
    pub fn attach<'w>(&'w self, word: &'w AtomicU64) -> Attached<'w> {
        let mut w = self.word.lock().unwrap_or_else(PoisonError::into_inner);
        *w = Some(FuelWord(word));
        if self.pending.load(Ordering::SeqCst) {
            word.store(0, Ordering::SeqCst);
        }
        Attached { kick: self }
    }
}

/// A fuel word kicks reach; detached on drop.
#[derive(Debug)]
pub struct Attached<'w> {
    kick: &'w Kick,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        *self.kick.word.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_kick_stays_pending_until_taken() {
        let k = Kick::default();
        assert!(!k.pending() && !k.take());
        k.kick();
        assert!(k.pending());
        assert!(k.take());
        assert!(!k.pending() && !k.take());
    }

    #[test]
    fn a_kick_zeroes_the_attached_word_only_while_attached() {
        let k = Kick::default();
        let word = AtomicU64::new(1000);
        {
            let _a = k.attach(&word);
            k.kick();
            assert_eq!(word.load(Ordering::SeqCst), 0);
        }
        assert!(k.take());
        word.store(1000, Ordering::SeqCst);
        k.kick();
        assert_eq!(word.load(Ordering::SeqCst), 1000, "detached: the word is left alone");
        // (pending when attached: zeroed at once)
        let _a = k.attach(&word);
        assert_eq!(word.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn kicks_from_another_thread_reach_a_spinning_reader() {
        let k = Arc::new(Kick::default());
        let word = AtomicU64::new(u64::MAX);
        std::thread::scope(|s| {
            let a = k.attach(&word);
            let k2 = Arc::clone(&k);
            s.spawn(move || k2.kick());
            while word.load(Ordering::Relaxed) != 0 {
                std::hint::spin_loop();
            }
            drop(a);
        });
        assert!(k.take());
    }
}
