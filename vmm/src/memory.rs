//! Guest memory: the one place that creates guest RAM and registers it with
//! KVM, and that asks KVM which pages the guest wrote (the dirty log).
//! Everything else reaches guest memory through the re-exported vm-memory
//! types.

use std::fs::File;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
pub use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::arch::x86_64::layout::{MMIO_START, RAM_START};

/// Guest RAM: anonymous, private, `MAP_NORESERVE` mappings, so a page costs
/// host memory only once the guest (or the loader) touches it.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;

/// Errors of guest memory set-up and access.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest RAM of {mib} MiB is out of range: use 1 to {max} MiB (RAM ends at the MMIO hole at {MMIO_START:#x})", max = MMIO_START >> 20)]
    BadSize { mib: u64 },
    #[error("cannot map {mib} MiB of guest RAM")]
    Map {
        mib: u64,
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("cannot register guest RAM with KVM (KVM_SET_USER_MEMORY_REGION)")]
    Register(#[source] kvm_ioctls::Error),
    #[error("guest-physical range {addr:#x}+{len:#x} is outside guest RAM")]
    OutOfRange { addr: u64, len: usize },
    #[error("cannot map the memory file as {mib} MiB of guest RAM")]
    MapFile {
        mib: u64,
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("cannot read KVM's dirty log (KVM_GET_DIRTY_LOG) of memory slot {slot}")]
    DirtyLog {
        slot: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot ask the kernel which pages of guest RAM are resident (mincore)")]
    Resident(#[source] std::io::Error),
}

/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;

/// A set of guest-physical pages, one bit each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSet {
    bits: Vec<u64>,
    pages: u64,
}

impl PageSet {
    /// The empty set over `pages` pages.
    pub fn new(pages: u64) -> Self {
        PageSet { bits: vec![0; pages.div_ceil(64) as usize], pages }
    }

    /// Pages the set can hold.
    pub fn capacity(&self) -> u64 {
        self.pages
    }

    /// Adds `page` (ignored past the end).
    pub fn insert(&mut self, page: u64) {
        if page < self.pages {
            self.bits[(page / 64) as usize] |= 1 << (page % 64);
        }
    }

    /// Adds `count` pages from `first`.
    pub fn insert_run(&mut self, first: u64, count: u64) {
        for page in first..first.saturating_add(count).min(self.pages) {
            self.insert(page);
        }
    }

    /// True if `page` is in the set.
    pub fn contains(&self, page: u64) -> bool {
        page < self.pages && self.bits[(page / 64) as usize] & (1 << (page % 64)) != 0
    }

    /// Adds every page of `other`.
    pub fn union_with(&mut self, other: &PageSet) {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
    }

    /// Number of pages in the set.
    pub fn len(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// True if no page is in the set.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// The set as sorted runs of consecutive pages: (first page, count).
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (i, &word) in self.bits.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                let page = i as u64 * 64 + u64::from(w.trailing_zeros());
                w &= w - 1;
                match runs.last_mut() {
                    Some((first, count)) if *first + *count == page => *count += 1,
                    _ => runs.push((page, 1)),
                }
            }
        }
        runs
    }
}

/// Maps `mib` MiB of guest RAM starting at guest-physical 0.
pub fn create(mib: u64) -> Result<GuestMemoryMmap, MemoryError> {
    if mib == 0 || mib > (MMIO_START >> 20) {
        return Err(MemoryError::BadSize { mib });
    }
    let len = usize::try_from(mib << 20).map_err(|_| MemoryError::BadSize { mib })?;
    GuestMemoryMmap::from_ranges(&[(GuestAddress(RAM_START), len)]).map_err(|source| MemoryError::Map { mib, source })
}

/// Size of guest RAM in bytes.
pub fn ram_size(mem: &GuestMemoryMmap) -> u64 {
    mem.iter().map(|r| r.len()).sum()
}

/// Maps `mib` MiB of guest RAM from `file` at byte `offset`, private:
/// the guest's writes stay in this process, and a page costs only when the
/// guest touches it (a snapshot's memory file; holes read as zero).
pub fn map_file(file: File, offset: u64, mib: u64) -> Result<GuestMemoryMmap, MemoryError> {
    if mib == 0 || mib > (MMIO_START >> 20) {
        return Err(MemoryError::BadSize { mib });
    }
    let len = usize::try_from(mib << 20).map_err(|_| MemoryError::BadSize { mib })?;
    let region = vm_memory::mmap::MmapRegionBuilder::new(len)
        .with_file_offset(vm_memory::FileOffset::new(file, offset))
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
        .build()
        .map_err(|source| MemoryError::MapFile { mib, source })?;
    let region = vm_memory::GuestRegionMmap::new(region, GuestAddress(RAM_START))
        .ok_or(MemoryError::OutOfRange { addr: RAM_START, len })?;
    GuestMemoryMmap::from_regions(vec![region]).map_err(|_| MemoryError::OutOfRange { addr: RAM_START, len })
}

/// Registers every region of `mem` as a KVM memory slot; with `dirty_log`,
/// KVM logs the pages the guest writes ([`take_dirty`]).
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap, dirty_log: bool) -> Result<(), MemoryError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|_| MemoryError::OutOfRange { addr: region.start_addr().0, len: 0 })?;
        let slot_region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: if dirty_log { KVM_MEM_LOG_DIRTY_PAGES } else { 0 },
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the host range [host, host + len) is a live mapping owned by
        // `mem`, which the caller keeps alive for as long as the VM exists
        // (`Vm` owns both), and slots do not overlap: each region gets its own.
        unsafe { vm.set_user_memory_region(slot_region) }.map_err(MemoryError::Register)?;
    }
    Ok(())
}

/// The pages the guest wrote since the last call (or since registration),
/// from KVM's dirty log; the log starts over. Needs `register(.., true)`.
pub fn take_dirty(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<PageSet, MemoryError> {
    let mut set = PageSet::new(ram_size(mem) / PAGE_SIZE);
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let len = usize::try_from(region.len()).map_err(|_| MemoryError::OutOfRange { addr: 0, len: usize::MAX })?;
        let bitmap = vm.get_dirty_log(slot, len).map_err(|source| MemoryError::DirtyLog { slot, source })?;
        let base = region.start_addr().0 / PAGE_SIZE;
        for (i, &word) in bitmap.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                set.insert(base + i as u64 * 64 + u64::from(w.trailing_zeros()));
                w &= w - 1;
            }
        }
    }
    Ok(set)
}

/// The pages of guest RAM that are resident (`mincore`): before the guest
/// first runs, exactly those the VMM wrote while loading it, which KVM's
/// dirty log does not see.
pub fn resident(mem: &GuestMemoryMmap) -> Result<PageSet, MemoryError> {
    let mut set = PageSet::new(ram_size(mem) / PAGE_SIZE);
    for region in mem.iter() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|_| MemoryError::OutOfRange { addr: region.start_addr().0, len: 0 })?;
        let len = usize::try_from(region.len()).map_err(|_| MemoryError::OutOfRange { addr: 0, len: usize::MAX })?;
        let mut vec = vec![0u8; len.div_ceil(PAGE_SIZE as usize)];
        // SAFETY: [host, host + len) is a live mapping owned by `mem` (page
        // aligned: vm-memory maps it with mmap), and `vec` has one byte per page.
        let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(MemoryError::Resident(std::io::Error::last_os_error()));
        }
        let base = region.start_addr().0 / PAGE_SIZE;
        for (i, _) in vec.iter().enumerate().filter(|(_, &b)| b & 1 != 0) {
            set.insert(base + i as u64);
        }
    }
    Ok(set)
}

/// Writes `data` at guest-physical `addr`, failing if any byte is outside RAM.
pub fn write(mem: &GuestMemoryMmap, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
    mem.write_slice(data, GuestAddress(addr)).map_err(|_| MemoryError::OutOfRange { addr, len: data.len() })
}

/// Reads `buf.len()` bytes at guest-physical `addr`.
pub fn read(mem: &GuestMemoryMmap, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
    mem.read_slice(buf, GuestAddress(addr)).map_err(|_| MemoryError::OutOfRange { addr, len: buf.len() })
}

/// Reads a little-endian u64 at guest-physical `addr`.
pub fn read_u64(mem: &GuestMemoryMmap, addr: u64) -> Result<u64, MemoryError> {
    let mut b = [0u8; 8];
    read(mem, addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(create(0), Err(MemoryError::BadSize { .. })));
        assert!(matches!(create(4096), Err(MemoryError::BadSize { .. })));
        let mem = create(2).unwrap();
        assert_eq!(ram_size(&mem), 2 << 20);
    }

    #[test]
    fn page_sets_count_and_give_runs() {
        let mut s = PageSet::new(200);
        for p in [0, 1, 2, 63, 64, 65, 130, 199, 500] {
            s.insert(p);
        }
        assert_eq!(s.len(), 8);
        assert!(s.contains(64) && !s.contains(3) && !s.contains(500));
        assert_eq!(s.runs(), vec![(0, 3), (63, 3), (130, 1), (199, 1)]);
        let mut t = PageSet::new(200);
        t.insert_run(3, 2);
        t.union_with(&s);
        assert_eq!(t.runs()[0], (0, 5));
        assert!(PageSet::new(10).is_empty());
    }

    #[test]
    fn resident_pages_are_the_ones_written() {
        let mem = create(4).unwrap();
        assert!(resident(&mem).unwrap().is_empty());
        write(&mem, 0x3000, &[1]).unwrap();
        write(&mem, 0x20_0000, &[1; 8192]).unwrap();
        assert_eq!(resident(&mem).unwrap().runs(), vec![(3, 1), (0x200, 2)]);
    }

    #[test]
    fn a_file_maps_privately_as_guest_ram() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("vmm-map-file-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        f.write_all(b"page zero").unwrap();
        f.set_len(4096 + (1 << 20)).unwrap();
        let mem = map_file(File::open(&path).unwrap(), 4096, 1).unwrap();
        let mut b = [0u8; 9];
        read(&mem, 0, &mut b).unwrap();
        assert_eq!(&b, b"page zero");
        write(&mem, 0, b"changed!!").unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[4096..4105], b"page zero", "private: the file is unchanged");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn reads_and_writes_are_bounds_checked() {
        let mem = create(1).unwrap();
        write(&mem, 0x1000, &7u64.to_le_bytes()).unwrap();
        assert_eq!(read_u64(&mem, 0x1000).unwrap(), 7);
        assert!(write(&mem, (1 << 20) - 4, &[0; 8]).is_err());
    }
}
