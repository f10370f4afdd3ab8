//! The block cache: translated blocks by guest pc, in one code buffer, with
//! chaining, invalidation by guest address range, and a flush when full.

use crate::addr_map::AddrMap;

use super::block::{Translated, TrapSite};
use super::code_memory::{CodeMemory, CodeMemoryError};
use super::context::{lookup_slot, LookupEntry};
use crate::isa::INSTR_SIZE;

/// One translated block.
#[derive(Clone, Debug)]
pub struct Block {
    pub guest_start: u64,
    /// Guest instructions.
    pub len: u32,
    /// What its count add at the start adds (see `Translated::entry_count`).
    pub entry_count: u32,
    /// Offset of its code in the buffer.
    pub offset: usize,
    /// Offset (in the block) of the code after its own count add, if
    /// chained exits may go there (see `Translated::body_offset`).
    pub body: Option<usize>,
    pub host_len: usize,
    /// Its trap table, sorted by offset (see `jit::fault`).
    pub traps: Vec<TrapSite>,
    /// Exit ids of its direct exits.
    pub exits: Vec<u32>,
    /// Exit ids (of other blocks) chained to this block.
    pub incoming: Vec<u32>,
    pub valid: bool,
}

impl Block {
    /// Guest bytes the block was translated from.
    pub fn guest_end(&self) -> u64 {
        self.guest_start + u64::from(self.len) * INSTR_SIZE
    }
}

/// A direct exit: where its jump is, where its stub is, where it goes.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub block: usize,
    pub jump: usize,
    pub stub: usize,
    pub target: u64,
    /// The count adjustment of its `add r13, imm32` (see `ExitSite`).
    pub retired: Option<i32>,
    /// The block it is chained to, if any.
    pub chained: Option<usize>,
}

/// Translated blocks and their code.
#[derive(Debug)]
pub struct BlockCache {
    mem: CodeMemory,
    /// Bytes at the start of the buffer that survive a flush (the trampoline).
    reserved: usize,
    by_pc: AddrMap<usize>,
    blocks: Vec<Block>,
    exits: Vec<Exit>,
    lookup: Box<[LookupEntry]>,
    pub flushes: u64,
    pub invalidations: u64,
    pub chains: u64,
}

impl BlockCache {
    /// A cache of `size` bytes of code.
    pub fn new(size: usize) -> Result<Self, CodeMemoryError> {
        Ok(BlockCache {
            mem: CodeMemory::new(size)?,
            reserved: 0,
            by_pc: AddrMap::default(),
            blocks: Vec::new(),
            exits: Vec::new(),
            lookup: LookupEntry::empty_table(),
            flushes: 0,
            invalidations: 0,
            chains: 0,
        })
    }

    /// Puts code that survives flushes at the start (the trampoline);
    /// returns its offset.
    pub fn reserve(&mut self, code: &[u8]) -> Option<usize> {
        let at = self.mem.append(code)?;
        self.reserved = self.mem.used();
        Some(at)
    }

    /// The code buffer.
    pub fn memory(&self) -> &CodeMemory {
        &self.mem
    }

    /// Where the next block will execute.
    pub fn next_exec_addr(&self) -> u64 {
        self.mem.next_exec_addr()
    }

    /// The id the next block's first exit gets.
    pub fn next_exit_id(&self) -> u32 {
        self.exits.len() as u32
    }

    /// The valid block starting at `pc`.
    pub fn get(&self, pc: u64) -> Option<usize> {
        self.by_pc.get(&pc).copied()
    }

    pub fn block(&self, id: usize) -> &Block {
        &self.blocks[id]
    }

    pub fn exit(&self, id: u32) -> Option<Exit> {
        self.exits.get(id as usize).copied()
    }

    /// Executable address of a block's entry.
    pub fn entry(&self, id: usize) -> u64 {
        self.mem.exec_addr(self.blocks[id].offset)
    }

    /// Adds a block translated for `next_exec_addr()` with exit ids from
    /// `next_exit_id()`. `None` if the buffer is full (flush, retranslate).
    pub fn insert(&mut self, t: &Translated) -> Option<usize> {
        let offset = self.mem.append(&t.code)?;
        let id = self.blocks.len();
        let exits: Vec<u32> = t
            .exits
            .iter()
            .map(|e| {
                self.exits.push(Exit {
                    block: id,
                    jump: offset + e.jump_offset,
                    stub: offset + e.stub_offset,
                    target: e.target,
                    retired: e.retired,
                    chained: None,
                });
                self.exits.len() as u32 - 1
            })
            .collect();
        self.blocks.push(Block {
            guest_start: t.guest_start,
            len: t.len,
            entry_count: t.entry_count,
            offset,
            body: t.body_offset,
            host_len: t.code.len(),
            traps: t.traps.clone(),
            exits,
            incoming: Vec::new(),
            valid: true,
        });
        self.by_pc.insert(t.guest_start, id);
        self.publish(t.guest_start, id);
        Some(id)
    }

    /// The executable address of the interpret stub for a fault of the
    /// guest access at executable address `rip`, if a block has one there,
    /// and whether the access relies on the guard regions.
    /// (No allocation, no lock: the fault handler calls it.)
    pub fn stub_for_fault(&self, rip: u64) -> Option<(u64, bool)> {
        let off = rip.checked_sub(self.mem.exec_addr(0))?;
        // Blocks lie in the buffer in the order they were inserted.
        let i = self.blocks.partition_point(|b| b.offset as u64 <= off).checked_sub(1)?;
        let b = &self.blocks[i];
        let within = u32::try_from(off - b.offset as u64).ok()?;
        let t = b.traps[b.traps.binary_search_by_key(&within, |t| t.at).ok()?];
        Some((self.mem.exec_addr(b.offset + t.stub as usize), t.guarded))
    }

    /// Makes the block reachable from indirect jumps.
    pub fn publish(&mut self, pc: u64, id: usize) {
        self.lookup[lookup_slot(pc)] = LookupEntry { guest: pc, host: self.entry(id) };
    }

    /// The indirect-jump table, for the context.
    pub fn lookup_table(&self) -> *const LookupEntry {
        self.lookup.as_ptr()
    }

    /// Patches direct exit `exit` to jump straight to block `to`.
    pub fn chain(&mut self, exit: u32, to: usize) {
        let Some(e) = self.exits.get_mut(exit as usize) else { return };
        if e.chained.is_some() || !self.blocks[to].valid || !self.blocks[e.block].valid {
            return;
        }
        e.chained = Some(to);
        let (jump, retired) = (e.jump, e.retired);
        let b = &self.blocks[to];
        if let (Some(n), Some(body)) = (retired, b.body) {
            // The target's count add moves into this exit's own.
            self.mem.patch_imm32(jump - 4, n + b.entry_count as i32);
            self.mem.patch_jump(jump, self.mem.exec_addr(b.offset + body));
        } else {
            self.mem.patch_jump(jump, self.mem.exec_addr(b.offset));
        }
        self.blocks[to].incoming.push(exit);
        self.chains += 1;
    }

    /// Drops every block whose guest code overlaps `[addr, addr + len)` and
    /// unchains the jumps into them. Returns the guest starts of the
    /// blocks dropped.
    pub fn invalidate(&mut self, addr: u64, len: u64) -> Vec<u64> {
        let end = addr.saturating_add(len);
        let hit: Vec<usize> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.valid && b.guest_start < end && b.guest_end() > addr)
            .map(|(i, _)| i)
            .collect();
        let mut starts = Vec::with_capacity(hit.len());
        for &id in &hit {
            self.blocks[id].valid = false;
            let start = self.blocks[id].guest_start;
            starts.push(start);
            if self.by_pc.get(&start) == Some(&id) {
                self.by_pc.remove(&start);
            }
            // Indirect jumps must not reach a dropped block: its slot goes
            // (in place, so the table's address generated code holds stays).
            let slot = lookup_slot(start);
            if self.lookup[slot].guest == start {
                self.lookup[slot] = LookupEntry::empty(slot);
            }
            for exit in std::mem::take(&mut self.blocks[id].incoming) {
                let e = &mut self.exits[exit as usize];
                if e.chained == Some(id) {
                    e.chained = None;
                    let (jump, stub, retired) = (e.jump, e.stub, e.retired);
                    self.mem.patch_jump(jump, self.mem.exec_addr(stub));
                    if let Some(n) = retired {
                        self.mem.patch_imm32(jump - 4, n);
                    }
                }
            }
        }
        self.invalidations += hit.len() as u64;
        starts
    }

    /// Forgets every block (the buffer is full); the trampoline stays.
    pub fn flush(&mut self) {
        self.mem.reset(self.reserved);
        self.by_pc.clear();
        self.blocks.clear();
        self.exits.clear();
        for (slot, e) in self.lookup.iter_mut().enumerate() {
            *e = LookupEntry::empty(slot);
        }
        self.flushes += 1;
    }

    /// Blocks currently valid.
    pub fn len(&self) -> usize {
        self.by_pc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pc.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jit::block::ExitSite;

    /// A fake block: a jmp rel32 to its own stub (a ret) at offset 5.
    fn fake(pc: u64, len: u32) -> Translated {
        Translated {
            code: vec![0xe9, 0, 0, 0, 0, 0xc3],
            guest_start: pc,
            len,
            entry_count: len,
            body_offset: None,
            exits: vec![ExitSite { jump_offset: 0, stub_offset: 5, target: pc + 0x100, retired: None }],
            traps: vec![],
        }
    }

    fn jump_target(c: &BlockCache, offset: usize) -> u64 {
        let b = c.memory().bytes(offset, 5);
        let rel = i32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        (c.memory().exec_addr(offset + 5) as i64 + i64::from(rel)) as u64
    }

    #[test]
    fn insert_and_lookup() {
        let mut c = BlockCache::new(4096).unwrap();
        let a = c.insert(&fake(0x1000, 4)).unwrap();
        let b = c.insert(&fake(0x1100, 2)).unwrap();
        assert_eq!((c.get(0x1000), c.get(0x1100), c.get(0x1008)), (Some(a), Some(b), None));
        assert_eq!(c.block(b).guest_end(), 0x1110);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_chained_jump_lands_on_its_block_and_unchains_on_invalidation() {
        let mut c = BlockCache::new(4096).unwrap();
        let a = c.insert(&fake(0x1000, 4)).unwrap();
        let b = c.insert(&fake(0x1100, 2)).unwrap();
        let exit = c.block(a).exits[0];
        let site = c.exit(exit).unwrap();
        assert_eq!(jump_target(&c, site.jump), c.memory().exec_addr(site.stub));
        c.chain(exit, b);
        assert_eq!(jump_target(&c, site.jump), c.entry(b));
        assert_eq!(c.chains, 1);
        // a store into block b's guest code drops it and restores a's jump
        assert_eq!(c.invalidate(0x1108, 1).len(), 1);
        assert_eq!(c.get(0x1100), None);
        assert_eq!(jump_target(&c, site.jump), c.memory().exec_addr(site.stub));
        assert_eq!(c.get(0x1000), Some(a));
        assert_eq!(c.invalidate(0x2000, 8).len(), 0);
    }

    #[test]
    fn invalidation_empties_the_dropped_blocks_lookup_slot_in_place() {
        let mut c = BlockCache::new(4096).unwrap();
        let a = c.insert(&fake(0x1000, 4)).unwrap();
        let b = c.insert(&fake(0x1100, 2)).unwrap();
        let table = c.lookup_table();
        let slot = |pc| c.lookup[lookup_slot(pc)];
        assert_eq!((slot(0x1000).guest, slot(0x1000).host), (0x1000, c.entry(a)));
        assert_eq!(slot(0x1100).guest, 0x1100);
        assert_eq!(c.invalidate(0x1100, 8), vec![0x1100]);
        // (generated code holds the table's address: it must not move)
        assert_eq!(c.lookup_table(), table);
        assert_ne!(c.lookup[lookup_slot(0x1100)].guest, 0x1100, "a dropped block stays reachable");
        assert_eq!(c.lookup[lookup_slot(0x1000)].host, c.entry(a));
        let _ = b;
        c.flush();
        assert_eq!(c.lookup_table(), table);
        assert_ne!(c.lookup[lookup_slot(0x1000)].guest, 0x1000);
    }

    /// A block that adds to the count before its exit: `add r13, -2`, then a
    /// jmp rel32 to its stub (a ret); its body starts after its own first
    /// instruction (7 bytes).
    fn counting(pc: u64, len: u32) -> Translated {
        Translated {
            code: vec![0x49, 0x81, 0xc5, 0xfe, 0xff, 0xff, 0xff, 0xe9, 0, 0, 0, 0, 0xc3],
            guest_start: pc,
            len,
            entry_count: len,
            body_offset: Some(7),
            exits: vec![ExitSite { jump_offset: 7, stub_offset: 12, target: pc + 0x100, retired: Some(-2) }],
            traps: vec![TrapSite { at: 0, stub: 12, guarded: false }],
        }
    }

    #[test]
    fn a_chained_exit_takes_in_the_targets_count_and_skips_its_add() {
        let mut c = BlockCache::new(4096).unwrap();
        let a = c.insert(&counting(0x1000, 4)).unwrap();
        let b = c.insert(&counting(0x1100, 5)).unwrap();
        let exit = c.block(a).exits[0];
        let site = c.exit(exit).unwrap();
        let imm = |c: &BlockCache| {
            let b = c.memory().bytes(site.jump - 4, 4);
            i32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        assert_eq!(imm(&c), -2);
        c.chain(exit, b);
        assert_eq!(imm(&c), -2 + 5);
        assert_eq!(jump_target(&c, site.jump), c.entry(b) + 7);
        c.invalidate(0x1100, 8);
        assert_eq!(imm(&c), -2);
        assert_eq!(jump_target(&c, site.jump), c.memory().exec_addr(site.stub));
    }

    #[test]
    fn a_fault_maps_to_the_stub_of_its_block_only_at_an_access() {
        let mut c = BlockCache::new(4096).unwrap();
        let a = c.insert(&counting(0x1000, 4)).unwrap();
        let b = c.insert(&counting(0x1100, 5)).unwrap();
        for id in [a, b] {
            let entry = c.entry(id);
            assert_eq!(c.stub_for_fault(entry), Some((entry + 12, false)));
            assert_eq!(c.stub_for_fault(entry + 7), None, "the jump is no access");
        }
        assert_eq!(c.stub_for_fault(c.memory().exec_addr(0) - 1), None);
        let fake = c.insert(&fake(0x1200, 1)).unwrap();
        assert_eq!(c.stub_for_fault(c.entry(fake)), None, "a block without a trap table");
        let (start, len) = (0x1000_0000u64, 0x1000u64);
        let entry = c.entry(a);
        assert_eq!(
            super::super::fault::decide(&c, start, len, entry, start + 8),
            super::super::fault::Decision::Resume(entry + 12, false)
        );
        assert_eq!(super::super::fault::decide(&c, start, len, entry, start - 8), super::super::fault::Decision::Bug);
        assert_eq!(super::super::fault::decide(&c, start, len, entry + 7, start), super::super::fault::Decision::Bug);
        assert_eq!(super::super::fault::decide(&c, start, len, 0x10, start), super::super::fault::Decision::PassOn);
    }

    #[test]
    fn invalidation_by_range_hits_only_overlapping_blocks() {
        let mut c = BlockCache::new(4096).unwrap();
        c.insert(&fake(0x1000, 4)).unwrap(); // 0x1000..0x1020
        c.insert(&fake(0x1020, 4)).unwrap(); // 0x1020..0x1040
        assert_eq!(c.invalidate(0x101c, 8).len(), 2);
        assert!(c.is_empty());
    }

    #[test]
    fn flush_empties_the_cache_but_keeps_the_reserved_code() {
        let mut c = BlockCache::new(16384).unwrap();
        c.reserve(&[0xc3; 32]).unwrap();
        while c.insert(&fake(0x1000 + c.len() as u64 * 8, 1)).is_some() {}
        assert!(c.len() > 100);
        c.flush();
        assert!(c.is_empty());
        assert_eq!(c.flushes, 1);
        assert_eq!(c.memory().used(), 32);
        // (blocks start on cache lines)
        let b = c.insert(&fake(0x1000, 1)).unwrap();
        assert_eq!(c.block(b).offset, 64);
    }
}
