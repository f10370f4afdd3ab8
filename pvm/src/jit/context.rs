//! The state generated code reads and writes, shared with the dispatcher.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use crate::isa::NUM_REGS;

/// Entries of the in-cache table for indirect jumps (a power of two).
pub const LOOKUP_ENTRIES: usize = 4096;

/// One entry of the indirect-jump table: guest pc to host address.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct LookupEntry {
    pub guest: u64,
    pub host: u64,
}

/// The table slot of a guest pc.
pub fn lookup_slot(pc: u64) -> usize {
    ((pc >> 3) as usize) & (LOOKUP_ENTRIES - 1)
}

impl LookupEntry {
    /// An empty entry for `slot`: its guest value hashes to another slot, so
    /// no jump target can ever match it (a zero entry would match a jump to 0).
    pub fn empty(slot: usize) -> Self {
        LookupEntry { guest: (((slot + 1) & (LOOKUP_ENTRIES - 1)) as u64) << 3, host: 0 }
    }

    /// A table with every entry empty.
    pub fn empty_table() -> Box<[LookupEntry]> {
        (0..LOOKUP_ENTRIES).map(LookupEntry::empty).collect()
    }
}

/// What generated code sees through r15. Field offsets are part of the
/// generated code: see the `OFF_*` constants.
#[derive(Debug)]
#[repr(C)]
pub struct JitContext {
    /// Guest registers not held in host registers (all of them between runs).
    pub regs: [u64; NUM_REGS],
    /// Base of guest memory.
    pub mem: *mut u8,
    /// Retired guest instructions.
    pub retired: u64,
    /// Guest pc where the dispatcher continues.
    pub exit_pc: u64,
    /// The indirect-jump table.
    pub lookup: *const LookupEntry,
    /// Retired-instruction limit; another thread's kick zeroes it while
    /// generated code runs (see `crate::kick`).
    pub fuel: AtomicU64,
    /// The host stack pointer when generated code was entered: no host
    /// frame of a guest call lies below it (set by the trampoline).
    pub host_sp_base: u64,
    /// Lowest host stack pointer guest calls may push frames down to.
    pub host_sp_limit: u64,
}

/// A run's context, on the heap. Another thread may store to its fuel word
/// while generated code runs (a kick), so no `&mut` to the whole context
/// is ever made: fields are written and read through the raw pointer, the
/// fuel word only through its shared `AtomicU64`.
#[derive(Debug)]
pub struct RunContext(NonNull<JitContext>);

impl RunContext {
    pub fn new(ctx: JitContext) -> Self {
        RunContext(NonNull::from(Box::leak(Box::new(ctx))))
    }

    /// What generated code gets in r15.
    pub fn as_ptr(&self) -> *mut JitContext {
        self.0.as_ptr()
    }

    pub fn fuel(&self) -> &AtomicU64 {
        // SAFETY: the context lives until `self` drops; only shared
        // references to its fuel word are ever made (see the type).
        unsafe { &(*self.as_ptr()).fuel }
    }

    /// Sets what a block entered next starts from.
    pub fn load(&self, regs: &[u64; NUM_REGS], retired: u64, lookup: *const LookupEntry) {
        let p = self.as_ptr();
        // SAFETY: valid (see `fuel`); plain writes through the raw pointer
        // to fields no other thread touches, while no generated code runs.
        unsafe {
            (*p).regs = *regs;
            (*p).retired = retired;
            (*p).lookup = lookup;
        }
    }

    /// The registers, retired count and exit pc generated code left.
    pub fn state(&self) -> ([u64; NUM_REGS], u64, u64) {
        let p = self.as_ptr();
        // SAFETY: as in `load`: reads, after generated code returned.
        unsafe { ((*p).regs, (*p).retired, (*p).exit_pc) }
    }
}

impl Drop for RunContext {
    fn drop(&mut self) {
        // SAFETY: made by `Box::leak` in `new`, dropped once; the fuel
        // word's borrows (`fuel`, a kick's attachment) end with `self`'s.
        drop(unsafe { Box::from_raw(self.as_ptr()) });
    }
}

pub const OFF_MEM: i32 = 8 * NUM_REGS as i32;
pub const OFF_RETIRED: i32 = OFF_MEM + 8;
pub const OFF_EXIT_PC: i32 = OFF_RETIRED + 8;
pub const OFF_LOOKUP: i32 = OFF_EXIT_PC + 8;
pub const OFF_FUEL: i32 = OFF_LOOKUP + 8;
pub const OFF_SP_BASE: i32 = OFF_FUEL + 8;
pub const OFF_SP_LIMIT: i32 = OFF_SP_BASE + 8;
/// Host frames (16 bytes each) guest calls may nest before calls fall back
/// to plain jumps.
pub const HOST_FRAMES: i32 = 1024;

/// Exit codes generated code returns in eax.
pub const EXIT_INTERPRET: u32 = 0;
/// A guard of the block's assumptions failed (see `specialize`).
pub const EXIT_DESPECIALIZE: u32 = u32::MAX;
/// Codes from here on name a direct exit: code - EXIT_DIRECT is its id.
pub const EXIT_DIRECT: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn offsets_match_the_layout() {
        assert_eq!(offset_of!(JitContext, mem) as i32, OFF_MEM);
        assert_eq!(offset_of!(JitContext, retired) as i32, OFF_RETIRED);
        assert_eq!(offset_of!(JitContext, exit_pc) as i32, OFF_EXIT_PC);
        assert_eq!(offset_of!(JitContext, lookup) as i32, OFF_LOOKUP);
        assert_eq!(offset_of!(JitContext, fuel) as i32, OFF_FUEL);
        assert_eq!(offset_of!(JitContext, host_sp_base) as i32, OFF_SP_BASE);
        assert_eq!(offset_of!(JitContext, host_sp_limit) as i32, OFF_SP_LIMIT);
        assert_eq!(std::mem::size_of::<LookupEntry>(), 16);
    }

    #[test]
    fn empty_entries_match_no_pc() {
        for slot in [0, 1, LOOKUP_ENTRIES - 1] {
            let e = LookupEntry::empty(slot);
            assert_ne!(lookup_slot(e.guest), slot);
        }
    }
}
