//! Executable memory, W^X: one memfd mapped twice, read-write for the
//! translator and read-execute for the CPU (QEMU's split-wx scheme). No page
//! is ever writable and executable through the same mapping, and patching a
//! chained jump needs no mprotect. All the `unsafe` of code memory is here.

use std::ptr::NonNull;

/// Cache line size of x86-64 CPUs: blocks start on one.
pub const LINE: usize = 64;

/// Errors of code memory.
#[derive(Debug, thiserror::Error)]
pub enum CodeMemoryError {
    #[error("cannot create the code buffer ({call})")]
    Os {
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn os_err(call: &'static str) -> CodeMemoryError {
    CodeMemoryError::Os { call, source: std::io::Error::last_os_error() }
}

/// Where the rel32 of a `jmp`/`call rel32` (e9/e8) or a `jcc rel32` (0f 8x)
/// starts, from the instruction's first byte.
pub fn rel32_at(first: u8) -> usize {
    if first == 0x0f {
        2
    } else {
        1
    }
}

/// A fixed-size code buffer with a bump allocator.
#[derive(Debug)]
pub struct CodeMemory {
    rw: NonNull<u8>,
    rx: NonNull<u8>,
    /// Bytes mapped (whole pages).
    mapped: usize,
    /// Bytes usable: the requested capacity, which may be below a page.
    size: usize,
    used: usize,
}

// SAFETY: the mappings are owned by this value and only touched through
// `&mut self` (writes) or by executing code the caller published.
unsafe impl Send for CodeMemory {}

impl CodeMemory {
    /// Maps `capacity` bytes (rounded up to pages) twice.
    pub fn new(capacity: usize) -> Result<Self, CodeMemoryError> {
        let size = capacity.max(4096).next_multiple_of(4096);
        // SAFETY: memfd_create with a NUL-terminated name; the fd is closed
        // below once both mappings hold the pages.
        let fd = unsafe { libc::memfd_create(c"pvm-code".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_err("memfd_create"));
        }
        let map = |prot| {
            // SAFETY: a fresh shared mapping of our own memfd; the kernel
            // picks the address, so nothing existing is replaced.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd, 0) };
            if p == libc::MAP_FAILED {
                None
            } else {
                NonNull::new(p.cast::<u8>())
            }
        };
        // SAFETY: fd is a valid memfd we own.
        let sized = unsafe { libc::ftruncate(fd, size as libc::off_t) } == 0;
        let rw = if sized { map(libc::PROT_READ | libc::PROT_WRITE) } else { None };
        let rx = rw.and_then(|_| map(libc::PROT_READ | libc::PROT_EXEC));
        let err = os_err("mmap");
        // SAFETY: closing our own fd; the mappings keep the memory alive.
        unsafe { libc::close(fd) };
        match (rw, rx) {
            (Some(rw), Some(rx)) => Ok(CodeMemory { rw, rx, mapped: size, size: capacity.min(size), used: 0 }),
            (Some(rw), None) => {
                // SAFETY: unmapping the mapping we just made.
                unsafe { libc::munmap(rw.as_ptr().cast(), size) };
                Err(err)
            }
            _ => Err(err),
        }
    }

    /// Capacity in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The executable address of offset `offset`.
    pub fn exec_addr(&self, offset: usize) -> u64 {
        self.rx.as_ptr() as u64 + offset as u64
    }

    /// True if `addr` is the executable address of code written so far.
    pub fn contains_exec(&self, addr: u64) -> bool {
        addr.wrapping_sub(self.exec_addr(0)) < self.used as u64
    }

    /// Where the next allocation of code will execute.
    pub fn next_exec_addr(&self) -> u64 {
        self.exec_addr(self.next_at())
    }

    /// Where the next allocation goes: at the next cache line, as QEMU
    /// aligns its translation blocks, so that how fast a block runs does not
    /// depend on where the blocks before it happened to end.
    fn next_at(&self) -> usize {
        self.used.next_multiple_of(LINE)
    }

    /// Copies `code` in (it must have been assembled for
    /// `next_exec_addr()`); returns its offset, or `None` if it does not fit.
    pub fn append(&mut self, code: &[u8]) -> Option<usize> {
        let at = self.next_at();
        let end = at.checked_add(code.len()).filter(|&e| e <= self.size)?;
        // SAFETY: [at, end) is inside the read-write mapping, which no
        // reference aliases; the CPU does not execute these bytes until the
        // caller publishes the offset we return.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.rw.as_ptr().add(at), code.len()) };
        self.used = end;
        Some(at)
    }

    /// Rewrites the rel32 of the `jmp`/`call rel32` (e9/e8) or `jcc rel32`
    /// (0f 8x) at `offset` to go to the executable address `target`.
    pub fn patch_jump(&mut self, offset: usize, target: u64) {
        let Some(&first) = self.bytes(offset, 1).first() else { return };
        let field = offset + rel32_at(first);
        if field + 4 > self.used {
            return;
        }
        let rel = (target as i64 - self.exec_addr(field + 4) as i64) as i32;
        // SAFETY: field..field+4 lies inside code we wrote (checked above).
        // The 4-byte write is aligned to nothing in particular, but this VM
        // is single-threaded: no CPU executes the jump while we write it.
        unsafe {
            let p = self.rw.as_ptr().add(offset);
            debug_assert!(
                *p == 0xe9 || *p == 0xe8 || (*p == 0x0f && *p.add(1) & 0xf0 == 0x80),
                "patching a jmp, call or jcc rel32"
            );
            std::ptr::copy_nonoverlapping(rel.to_le_bytes().as_ptr(), self.rw.as_ptr().add(field), 4);
        }
    }

    /// Rewrites the 4 bytes at `offset` (the imm32 of an instruction we
    /// wrote) with `value`.
    pub fn patch_imm32(&mut self, offset: usize, value: i32) {
        if offset + 4 > self.used {
            return;
        }
        // SAFETY: offset..offset+4 lies inside code we wrote (checked above);
        // single-threaded, as for `patch_jump`.
        unsafe {
            let p = self.rw.as_ptr().add(offset);
            std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), p, 4);
        }
    }

    /// Reads back bytes (for disassembly and tests).
    pub fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        let len = len.min(self.used.saturating_sub(offset));
        // SAFETY: [offset, offset + len) is within the bytes written so far.
        unsafe { std::slice::from_raw_parts(self.rx.as_ptr().add(offset), len) }
    }

    /// Forgets every allocation (a cache flush).
    pub fn reset(&mut self, keep: usize) {
        self.used = keep.min(self.used);
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping the two mappings this value owns.
        unsafe {
            libc::munmap(self.rw.as_ptr().cast(), self.mapped);
            libc::munmap(self.rx.as_ptr().cast(), self.mapped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_through_one_view_read_through_the_other() {
        let mut m = CodeMemory::new(8192).unwrap();
        assert_eq!(CodeMemory::new(100).unwrap().size(), 100);
        let at = m.append(&[0xe9, 0, 0, 0, 0, 0xc3]).unwrap();
        assert_eq!(m.bytes(at, 6), &[0xe9, 0, 0, 0, 0, 0xc3]);
        m.patch_jump(at, m.exec_addr(at + 5));
        assert_eq!(m.bytes(at, 5), &[0xe9, 0, 0, 0, 0]);
        m.patch_jump(at, m.exec_addr(at + 0x105));
        assert_eq!(m.bytes(at, 5), &[0xe9, 0, 1, 0, 0]);
        assert!(m.append(&vec![0; 9000]).is_none());
        m.reset(0);
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn no_mapping_is_writable_and_executable() {
        let m = CodeMemory::new(4096).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let rx = format!("{:x}-", m.exec_addr(0));
        let line = maps.lines().find(|l| l.starts_with(&rx)).expect("rx mapping listed");
        assert!(line.split_whitespace().nth(1).unwrap().starts_with("r-x"), "{line}");
        assert!(!maps.lines().any(|l| l.split_whitespace().nth(1).is_some_and(|p| p.starts_with("rwx"))));
    }
}
