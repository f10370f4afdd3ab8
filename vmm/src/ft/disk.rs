//! Checkpoints in a directory, written incrementally: two slots,
//! `DIR/slot-0` and `DIR/slot-1` (each a snapshot, state file and memory
//! file), used in turn, so the slot not being written always holds the
//! previous checkpoint whole. A slot is rewritten in place with only the
//! pages dirtied since it was last written (KVM's dirty log, accumulated
//! for both slots), and its memory layout is cut into chunks of
//! [`CHUNK_PAGES`] pages whose CRC-32C is computed again only when the
//! guest wrote into them: a checkpoint costs what the guest dirtied, not
//! what it ever wrote. A slot's first write (and every write without the
//! dirty history, as after a restart) writes every page, to a new file
//! renamed into place.
//!
//! The files are snapshots in the ordinary format: `vmm restore
//! DIR/slot-N` and `vmm snapshot-info` read them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::codec::crc32c_append;
use crate::memory::{self, GuestMemoryMmap, PageSet, PAGE_SIZE};
use crate::snapshot::file::{self, SnapshotFileError};
use crate::snapshot::state::{MemoryLayout, PageRange, Snapshot};

/// Pages per range of a slot's memory layout.
pub const CHUNK_PAGES: u64 = 16;

/// The two slots of a checkpoint directory.
#[derive(Debug)]
pub struct Slots {
    dir: PathBuf,
    ram_pages: u64,
    /// The memory-file id each slot holds, once written (or resumed from).
    ids: [Option<u64>; 2],
    /// Pages changed since each slot was written.
    stale: [PageSet; 2],
    /// CRC-32C of each chunk that holds a written page, as memory is now.
    crcs: BTreeMap<u64, u32>,
}

/// What one slot write did.
#[derive(Clone, Copy, Debug)]
pub struct SlotWrite {
    pub pages: u64,
    pub fresh: bool,
}

impl Slots {
    /// Empty slots in `dir` for `ram_pages` pages of RAM.
    pub fn new(dir: &Path, ram_pages: u64) -> Self {
        Slots {
            dir: dir.to_path_buf(),
            ram_pages,
            ids: [None; 2],
            stale: [PageSet::new(ram_pages), PageSet::new(ram_pages)],
            crcs: BTreeMap::new(),
        }
    }

    /// The state file of checkpoint `seq`.
    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("slot-{}", seq % 2))
    }

    /// The VM was restored from checkpoint `seq`, `snapshot`: its slot
    /// holds the memory as it is now, and its ranges' CRCs are known.
    pub fn resume(&mut self, seq: u64, snapshot: &Snapshot) {
        let slot = (seq % 2) as usize;
        self.ids[slot] = Some(snapshot.memory.id);
        for r in &snapshot.memory.ranges {
            if r.first % CHUNK_PAGES == 0 && r.count == self.chunk_len(r.first / CHUNK_PAGES) {
                self.crcs.insert(r.first / CHUNK_PAGES, r.crc);
            }
        }
    }

    fn chunk_len(&self, chunk: u64) -> u64 {
        CHUNK_PAGES.min(self.ram_pages.saturating_sub(chunk * CHUNK_PAGES))
    }

    /// Forgets what any slot holds of `pages` (guest memory was changed behind the dirty log).
    pub fn invalidate(&mut self, pages: &PageSet) {
        for s in &mut self.stale {
            s.union_with(pages);
        }
        for (first, count) in pages.runs() {
            for chunk in first / CHUNK_PAGES..=(first + count - 1) / CHUNK_PAGES {
                self.crcs.remove(&chunk);
            }
        }
    }

    /// The CRC-32C of chunk `chunk` of `mem`.
    fn chunk_crc(&self, mem: &GuestMemoryMmap, chunk: u64, buf: &mut [u8]) -> Result<u32, memory::MemoryError> {
        let len = (self.chunk_len(chunk) * PAGE_SIZE) as usize;
        memory::read(mem, chunk * CHUNK_PAGES * PAGE_SIZE, &mut buf[..len])?;
        Ok(crc32c_append(0, &buf[..len]))
    }

    /// Writes checkpoint `seq` (`state`) to its slot: the pages that slot
    /// lacks, given the pages ever `written` and those `dirty` since the
    /// previous checkpoint.
    ///
    /// # Errors
    ///
    /// Guest memory out of range, or a file that cannot be written.
    pub fn write(
        &mut self,
        seq: u64,
        state: Snapshot,
        mem: &GuestMemoryMmap,
        written: &PageSet,
        dirty: &PageSet,
    ) -> Result<SlotWrite, SnapshotFileError> {
        let mut buf = vec![0u8; (CHUNK_PAGES * PAGE_SIZE) as usize];
        for s in &mut self.stale {
            s.union_with(dirty);
        }
        for (first, count) in dirty.runs() {
            for chunk in first / CHUNK_PAGES..=(first + count - 1) / CHUNK_PAGES {
                self.crcs.remove(&chunk);
            }
        }
        let mut ranges = Vec::new();
        let mut last = None;
        for (first, count) in written.runs() {
            for chunk in first / CHUNK_PAGES..=(first + count - 1) / CHUNK_PAGES {
                if last == Some(chunk) {
                    continue;
                }
                last = Some(chunk);
                let crc = match self.crcs.get(&chunk) {
                    Some(&c) => c,
                    None => {
                        let c = self.chunk_crc(mem, chunk, &mut buf).map_err(SnapshotFileError::Memory)?;
                        self.crcs.insert(chunk, c);
                        c
                    }
                };
                ranges.push(PageRange { first: chunk * CHUNK_PAGES, count: self.chunk_len(chunk), crc });
            }
        }
        let slot = (seq % 2) as usize;
        let fresh = self.ids[slot].is_none();
        let id = self.ids[slot].unwrap_or_else(file::random_id);
        let pages = if fresh { written } else { &self.stale[slot] };
        let n = pages.len();
        file::update(&self.path(seq), state, mem, pages, MemoryLayout { id, ranges }, fresh)?;
        self.ids[slot] = Some(id);
        self.stale[slot] = PageSet::new(self.ram_pages);
        Ok(SlotWrite { pages: n, fresh })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::sample;

    fn state() -> Snapshot {
        let mut s = sample(false);
        s.machine.ram_mib = 1;
        s
    }

    #[test]
    fn slots_alternate_are_restorable_and_rewrite_only_what_changed() {
        let dir = std::env::temp_dir().join(format!("vmm-slots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mem = memory::create(1).unwrap();
        let mut slots = Slots::new(&dir, 256);
        let mut written = PageSet::new(256);
        memory::write(&mem, 0x1000, b"one").unwrap();
        memory::write(&mem, 0x40000, b"far").unwrap();
        written.insert(1);
        written.insert(0x40);
        let first = slots.write(0, state(), &mem, &written, &written).unwrap();
        assert!(first.fresh && first.pages == 2);
        let second = slots.write(1, state(), &mem, &written, &PageSet::new(256)).unwrap();
        assert!(second.fresh, "the other slot's first write is whole");
        // Page 1 changes: slot 0 gets only that page.
        memory::write(&mem, 0x1000, b"two").unwrap();
        let mut dirty = PageSet::new(256);
        dirty.insert(1);
        let third = slots.write(2, state(), &mem, &written, &dirty).unwrap();
        assert_eq!((third.fresh, third.pages), (false, 1));
        for (path, expected) in [(slots.path(2), b"two"), (slots.path(1), b"one")] {
            let snap = file::read_state(&path).unwrap();
            let back = file::map_memory(&path, &snap, true).expect("the checksums hold for the memory as written");
            let mut b = [0u8; 3];
            memory::read(&back, 0x1000, &mut b).unwrap();
            assert_eq!(&b, expected, "{}", path.display());
            assert_eq!(
                snap.memory.ranges.iter().map(|r| (r.first, r.count)).collect::<Vec<_>>(),
                vec![(0, 16), (0x40, 16)]
            );
        }
        // Slot 1 lacks page 1's change: it is written when slot 1 comes round again.
        let fourth = slots.write(3, state(), &mem, &written, &PageSet::new(256)).unwrap();
        assert_eq!((fourth.fresh, fourth.pages), (false, 1));
        // A restart that resumes from slot 1 knows its CRCs and writes slot 0 whole.
        let mut again = Slots::new(&dir, 256);
        again.resume(3, &file::read_state(&slots.path(3)).unwrap());
        assert_eq!(again.crcs, slots.crcs);
        let fifth = again.write(4, state(), &mem, &written, &PageSet::new(256)).unwrap();
        assert!(fifth.fresh);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
