//! Snapshots: a running guest saved to two files and restored in another
//! process, where it carries on at its next instruction.
//!
//! - [`state`]: what a snapshot holds (plain data);
//! - [`format`]: the versioned, checksummed state file; [`format::parse`]
//!   is a pure function over untrusted bytes (the fuzz target's entry);
//! - [`file`]: writing both files and mapping the memory file back.
//!
//! The KVM ioctls that read and write the state are in [`crate::kvmstate`];
//! the pause that makes it consistent is in the run loop ([`crate::vm`]).

pub mod file;
pub mod format;
pub mod state;

pub use format::{parse, reseal, SnapshotError};
pub use state::{Machine, Snapshot};

/// Machine options a restore asks for; `None` takes the snapshot's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestedMachine {
    pub mem_mib: Option<u64>,
    pub timers: Option<bool>,
}

impl Machine {
    /// Checks the options a restore asks for against those of the snapshot.
    ///
    /// # Errors
    ///
    /// A sentence naming each option that differs.
    pub fn check_matches(&self, requested: &RequestedMachine) -> Result<(), String> {
        let mut diffs = Vec::new();
        if let Some(mib) = requested.mem_mib.filter(|&m| m != self.ram_mib) {
            diffs.push(format!("the snapshot was made with --mem {}, this restore asks for --mem {mib}", self.ram_mib));
        }
        if requested.timers.is_some_and(|t| t != self.timers) {
            let (made, asked) = if self.timers { ("with", "without") } else { ("without", "with") };
            diffs.push(format!(
                "the snapshot was made {made} --timers (in-kernel irqchip and PIT), this restore asks for it {asked}"
            ));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("; "))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
