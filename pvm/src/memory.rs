//! Guest memory, with guard regions: the memory is one read-write
//! anonymous mapping inside a larger reservation that is `PROT_NONE`
//! everywhere else, as wasmtime reserves its linear memories.
//!
//! The translator checks every access against a positive 32-bit limit, so
//! the value it adds to the memory's base is below 2^31 (2^32 for a store,
//! whose check starts at the code end); a linear-memory access (checked
//! against its linear memory's end only) adds the low 32 bits of a register
//! and an imm32, below 2^32 + 2^31; an access is at most 8 bytes wide; and
//! a displacement is an imm32. So no translated access, even one whose
//! check computed the wrong limit, can leave `[base - 2^31, base + 2^33)`:
//! the reservation covers that, and any access outside the memory itself
//! faults instead of reaching host memory. The translator turns such a fault back into the guest trap (see
//! `jit::fault`). All the `unsafe` of guest memory is in this module.

use std::ptr::NonNull;

/// Bytes reserved below the memory: the most a negative imm32 reaches.
pub const GUARD_BELOW: usize = 1 << 31;
/// Bytes reserved above the memory's base: a linear-memory address (the
/// low 32 bits of a register plus an imm32, below 2^32 + 2^31) plus the
/// widest access, and any other checked address (below 2^32), rounded up.
pub const GUARD_ABOVE: usize = (1 << 33) + PAGE;
const PAGE: usize = 4096;

/// Errors of guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "cannot reserve {bytes} bytes of address space for guest memory and its guard regions (is `ulimit -v` set?)"
    )]
    Reserve {
        bytes: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot map {bytes} bytes of guest memory")]
    Map {
        bytes: usize,
        #[source]
        source: std::io::Error,
    },
}

/// A zero-filled guest memory of a fixed size, surrounded by guard regions.
pub struct GuestMemory {
    /// The start of the reservation.
    reservation: NonNull<u8>,
    /// The first byte of guest memory, `GUARD_BELOW` into the reservation.
    base: NonNull<u8>,
    len: usize,
    /// Unmaps the reservation when the last handle on it goes (see
    /// [`GuestMemory::share`]).
    _owner: std::sync::Arc<Mapping>,
}

/// The reservation, unmapped when dropped.
struct Mapping {
    start: NonNull<u8>,
    total: usize,
}

// SAFETY: the mapping is plain memory, owned by this value alone: it is
// unmapped once, when the last Arc on it goes.
unsafe impl Send for Mapping {}
// SAFETY: as for Send; the value itself is never accessed through `&`.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the whole reservation, once, when no handle on
        // it is left (the memory's own mapping is part of it).
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.total) };
    }
}

// SAFETY: the value owns its mappings and hands out access to them only
// through `&self` / `&mut self`, like a `Vec<u8>`.
unsafe impl Send for GuestMemory {}
// SAFETY: as for Send: shared access is read-only.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Reserves the guard regions and maps `len` bytes (a multiple of the
    /// page size, at most 2^31) of zeros at the base.
    ///
    /// # Errors
    ///
    /// The address space cannot be reserved, or the memory not mapped.
    pub fn new(len: usize) -> Result<Self, MemoryError> {
        debug_assert!(len.is_multiple_of(PAGE) && len <= 1 << 31, "guest memory of {len} bytes");
        let total = GUARD_BELOW + GUARD_ABOVE.max(len + PAGE);
        // SAFETY: a fresh anonymous mapping at an address the kernel picks:
        // nothing existing is replaced. PROT_NONE and MAP_NORESERVE: it
        // costs address space only.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(MemoryError::Reserve { bytes: total, source: std::io::Error::last_os_error() });
        }
        let reservation = NonNull::new(r.cast::<u8>()).ok_or_else(|| MemoryError::Reserve {
            bytes: total,
            source: std::io::Error::from(std::io::ErrorKind::AddrNotAvailable),
        })?;
        // SAFETY: GUARD_BELOW < total: the base lies inside the reservation.
        let base = unsafe { reservation.add(GUARD_BELOW) };
        let _owner = std::sync::Arc::new(Mapping { start: reservation, total });
        let mem = GuestMemory { reservation, base, len, _owner };
        if len > 0 {
            // SAFETY: [base, base + len) lies inside our reservation, which
            // nothing else uses; MAP_FIXED replaces only those pages.
            let m = unsafe {
                libc::mmap(
                    base.as_ptr().cast(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if m == libc::MAP_FAILED {
                return Err(MemoryError::Map { bytes: len, source: std::io::Error::last_os_error() });
            }
        }
        Ok(mem)
    }

    fn total(&self) -> usize {
        GUARD_BELOW + GUARD_ABOVE.max(self.len + PAGE)
    }

    /// The host address range of this memory's reservation, guard regions
    /// included: `(start, length)`.
    pub fn reservation(&self) -> (u64, u64) {
        (self.reservation.as_ptr() as u64, self.total() as u64)
    }

    /// True if `addr` (a host address) lies in this memory's reservation.
    pub fn reserves(&self, addr: u64) -> bool {
        let (start, len) = self.reservation();
        addr.wrapping_sub(start) < len
    }

    /// A hash of the contents, a page at a time and the same whatever the
    /// order, to which a page of zeros adds nothing: pages never touched
    /// (not resident) are not even read, so hashing a large, mostly
    /// untouched memory costs what was touched.
    pub fn digest(&self) -> u64 {
        let pages = self.len / PAGE;
        let mut resident = vec![1u8; pages];
        if pages > 0 {
            // SAFETY: base is page-aligned and [base, base + len) is our
            // mapping; `resident` has one byte per page. On failure the
            // vector stays all ones and every page is read.
            unsafe { libc::mincore(self.base.as_ptr().cast(), self.len, resident.as_mut_ptr()) };
        }
        let mut sum = 0u64;
        for (i, _) in resident.iter().enumerate().filter(|(_, &r)| r & 1 != 0) {
            let page = &self[i * PAGE..(i + 1) * PAGE];
            if page.iter().any(|&b| b != 0) {
                sum = sum.wrapping_add(mix(i as u64, page_hash(page)));
            }
        }
        sum
    }
}

impl GuestMemory {
    /// Bytes of guest memory (without making a slice of them).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte of guest memory, for translated code.
    pub fn base_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Another handle on the same memory, for another guest thread's
    /// machine running on another OS thread (`--threads kernel`). The
    /// guest's plain accesses through the handles are raw reads and writes
    /// ([`GuestMemory::read`], [`GuestMemory::write`]) and the translated
    /// code's; a guest data race is the guest's, not a Rust reference
    /// aliasing another (syscall buffers and digests take slices: the
    /// guest must not race with its own `write` or `read`).
    pub fn share(&self) -> GuestMemory {
        GuestMemory { reservation: self.reservation, base: self.base, len: self.len, _owner: self._owner.clone() }
    }

    /// The `N` bytes at `at`, zero-extended (`at + N <= len`, which the
    /// caller checked: else a panic, not UB).
    #[inline(always)]
    pub fn read<const N: usize>(&self, at: usize) -> u64 {
        assert!(N <= 8 && at <= self.len.wrapping_sub(N) && N <= self.len);
        let mut b = [0u8; 8];
        // SAFETY: [base + at, base + at + N) is inside the mapping (checked
        // above); a raw copy creates no reference to guest memory.
        unsafe { std::ptr::copy_nonoverlapping(self.base.as_ptr().add(at), b.as_mut_ptr(), N) };
        u64::from_le_bytes(b)
    }

    /// Writes the low `N` bytes of `value` at `at` (checked as for `read`).
    #[inline(always)]
    pub fn write<const N: usize>(&mut self, at: usize, value: u64) {
        assert!(N <= 8 && at <= self.len.wrapping_sub(N) && N <= self.len);
        let b = value.to_le_bytes();
        // SAFETY: as for `read`, and `&mut self` keeps this handle's own
        // slices from overlapping the write.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.base.as_ptr().add(at), N) };
    }

    /// The doubleword at byte `at` as an atomic (`at` a multiple of 8 with
    /// `at + 8 <= len`, which the caller checked: else a panic, not UB).
    pub fn atomic_u64(&mut self, at: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(at.is_multiple_of(8) && at.checked_add(8).is_some_and(|e| e <= self.len), "atomic at {at}");
        // SAFETY: [base + at, base + at + 8) is inside the mapping (checked
        // above) and 8-byte aligned (base is page-aligned); `&mut self`
        // makes the access exclusive for the borrow's life, so viewing
        // those bytes as an AtomicU64 aliases no other Rust reference.
        // Other threads reach them only through atomic operations or the
        // raw accesses of translated code (see `crate::threads`).
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.base.as_ptr().add(at).cast()) }
    }
}

fn page_hash(page: &[u8]) -> u64 {
    page.chunks_exact(8).fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29)
    })
}

fn mix(i: u64, h: u64) -> u64 {
    let x = (h ^ i.wrapping_mul(0xff51_afd7_ed55_8ccd)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl std::ops::Deref for GuestMemory {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: [base, base + len) is mapped read-write for as long as
        // self lives; `&self` gives shared access only.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for GuestMemory {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }
}

impl PartialEq for GuestMemory {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for GuestMemory {}

impl std::fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMemory").field("len", &self.len).field("base", &self.base).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_back_and_its_guards_are_reserved() {
        let mut m = GuestMemory::new(1 << 20).unwrap();
        assert_eq!(m.len(), 1 << 20);
        assert!(m.iter().all(|&b| b == 0));
        m[0] = 1;
        m[(1 << 20) - 1] = 2;
        assert_eq!((m[0], m[(1 << 20) - 1]), (1, 2));
        let base = m.as_ptr() as u64;
        assert!(m.reserves(base - (1 << 31)) && m.reserves(base + (1 << 33) + 7));
        assert!(!m.reserves(base - (1 << 31) - 1) && !m.reserves(base + (1 << 33) + PAGE as u64));
        // The guard pages are not mapped for access.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let above = maps.lines().find(|l| {
            let start = u64::from_str_radix(l.split('-').next().unwrap(), 16).unwrap();
            start == base + (1 << 20)
        });
        assert!(above.is_some_and(|l| l.split_whitespace().nth(1) == Some("---p")), "{above:?}");
    }

    #[test]
    fn digests_agree_whatever_was_touched() {
        let (mut a, b) = (GuestMemory::new(4 << 20).unwrap(), GuestMemory::new(4 << 20).unwrap());
        assert_eq!(a.digest(), b.digest());
        // writing zeros makes a page resident without changing the digest
        a[3 * PAGE] = 0;
        let _ = b[5 * PAGE];
        assert_eq!(a.digest(), b.digest());
        a[3 * PAGE + 8] = 1;
        assert_ne!(a.digest(), b.digest());
        let mut c = GuestMemory::new(4 << 20).unwrap();
        c.copy_from_slice(&a);
        assert_eq!((c.digest(), c == a), (a.digest(), true));
        // the same bytes in another page are another memory
        c[3 * PAGE + 8] = 0;
        c[4 * PAGE + 8] = 1;
        assert_ne!(c.digest(), a.digest());
    }
}
