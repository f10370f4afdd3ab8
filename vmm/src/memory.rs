//! Guest memory: the one place that creates guest RAM and registers it with
//! KVM. Everything else reaches guest memory through the re-exported
//! vm-memory types.

use kvm_bindings::kvm_userspace_memory_region;
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

/// Registers every region of `mem` as a KVM memory slot.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|_| MemoryError::OutOfRange { addr: region.start_addr().0, len: 0 })?;
        let slot_region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
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
    fn reads_and_writes_are_bounds_checked() {
        let mem = create(1).unwrap();
        write(&mem, 0x1000, &7u64.to_le_bytes()).unwrap();
        assert_eq!(read_u64(&mem, 0x1000).unwrap(), 7);
        assert!(write(&mem, (1 << 20) - 4, &[0; 8]).is_err());
    }
}
