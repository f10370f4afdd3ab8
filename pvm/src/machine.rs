//! The machine state both engines run on: 16 registers, a pc, and one flat
//! byte-addressed memory holding code and data, every access bounds-checked.

use std::io::{Read, Write};
use std::sync::atomic::Ordering::SeqCst;

use crate::image::Image;
use crate::isa::{INSTR_SIZE, NUM_REGS, SP};
use crate::memory::{GuestMemory, MemoryError};
use crate::trap::TrapKind;

/// Default memory size in MiB (`--mem`).
pub const DEFAULT_MEM_MIB: u64 = 16;
/// Largest memory `--mem` accepts, in MiB (translated code compares
/// addresses with 32-bit immediates).
pub const MAX_MEM_MIB: u64 = 2047;

/// Syscall numbers of `sys`.
pub mod sys {
    /// exit(r1): ends the program with status r1 & 0xff.
    pub const EXIT: i32 = 0;
    /// write(r1 = address, r2 = length) to stdout; r0 = bytes written.
    pub const WRITE: i32 = 1;
    /// read(r1 = address, r2 = length) from stdin; r0 = bytes read, 0 at end of input.
    pub const READ: i32 = 2;
    /// print_int(r1): signed decimal.
    pub const PRINT_INT: i32 = 3;
    /// print_float(r1): the f64 with these bits, shortest round-trip form.
    pub const PRINT_FLOAT: i32 = 4;
    /// putc(r1): one byte.
    pub const PUTC: i32 = 5;
    /// return: hands control back to the embedder, which may set registers
    /// and a pc and run the machine on (how a WebAssembly store calls
    /// functions).
    pub const RETURN: i32 = 6;
    /// sleep(r1 = microseconds): blocks the calling thread (with `--jacket`,
    /// parks only the guest thread while others run); r0 = 0.
    pub const SLEEP: i32 = 7;
    /// time: r0 = monotonic microseconds since the program started.
    pub const TIME: i32 = 8;
    /// `HOST + n`: host function `n` of the embedder ([`super::SysIo::host_call`]):
    /// arguments in r0.., results in r0.. (WebAssembly imports).
    pub const HOST: i32 = 0x1000;
}

/// What a syscall did, as far as the engine running it must know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// Done; the program goes on.
    Done,
    /// Done, and it wrote `len` bytes of guest memory at `addr` (a store,
    /// as far as code in that range is concerned).
    Wrote { addr: u64, len: u64 },
    /// The program ends with this status.
    Exit(i32),
    /// The program hands control back to its embedder (`sys return`).
    Return,
}

/// Errors placing an image into memory.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("memory of {mib} MiB is out of range: use 1 to {MAX_MEM_MIB} MiB")]
    BadMemSize { mib: u64 },
    #[error("section at {addr:#x}+{len:#x} does not fit in {mem} bytes of memory: raise --mem")]
    SectionTooLarge { addr: u64, len: u64, mem: u64 },
    #[error("cannot set up guest memory")]
    Memory(#[source] MemoryError),
}

/// The guest's stdin and stdout.
pub trait SysIo {
    fn write(&mut self, bytes: &[u8]);
    /// Reads up to `buf.len()` bytes; 0 at end of input.
    fn read(&mut self, buf: &mut [u8]) -> usize;
    /// Pushes buffered output out (before a report on stderr).
    fn flush(&mut self) {}
    /// Whether a `read` would return at once (input there, or its end):
    /// a jacketed `sys 2` parks its thread until it would.
    fn read_ready(&mut self) -> bool {
        true
    }
    /// Writes to the program's stderr (WASI's fd 2).
    fn write_err(&mut self, bytes: &[u8]) {
        self.flush();
        let _ = std::io::stderr().write_all(bytes);
    }
    /// A blocking `sys 7`: sleeps the calling OS thread. An embedder that
    /// must not wait (a fuzzer, a simulation) records the time instead.
    fn sleep(&mut self, time: std::time::Duration) {
        std::thread::sleep(time);
    }
    /// Host function `n` (`sys HOST + n`): reads its arguments from
    /// `regs`, writes its results there, may read and write `mem`. Without
    /// an embedder that provides it, a bad syscall.
    ///
    /// # Errors
    ///
    /// The trap the call raises.
    fn host_call(&mut self, n: u32, regs: &mut [u64; NUM_REGS], mem: &mut [u8]) -> Result<Syscall, TrapKind> {
        let _ = (regs, mem);
        Err(TrapKind::BadSyscall(sys::HOST.saturating_add_unsigned(n)))
    }
}

/// Real stdin/stdout, buffered; flushed when dropped.
#[derive(Debug)]
pub struct StdIo {
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Default for StdIo {
    fn default() -> Self {
        StdIo { out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()) }
    }
}

impl SysIo for StdIo {
    fn write(&mut self, bytes: &[u8]) {
        // A closed stdout must not crash the guest: its output is dropped.
        let _ = self.out.write_all(bytes);
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let _ = self.out.flush();
        std::io::stdin().read(buf).unwrap_or(0)
    }
    fn flush(&mut self) {
        let _ = self.out.flush();
    }
    fn read_ready(&mut self) -> bool {
        let mut fd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, a zero timeout; poll writes only revents.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        // (an error or a hang-up: the read will not block either)
        n != 0
    }
}

impl Drop for StdIo {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

/// In-memory stdin and stdout, for tests and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct BufferIo {
    pub input: Vec<u8>,
    pub read_pos: usize,
    pub output: Vec<u8>,
    /// What the program wrote to stderr.
    pub errors: Vec<u8>,
}

impl SysIo for BufferIo {
    fn write(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let rest = &self.input[self.read_pos.min(self.input.len())..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read_pos += n;
        n
    }
    fn write_err(&mut self, bytes: &[u8]) {
        self.errors.extend_from_slice(bytes);
    }
}

/// Registers, pc, memory and counters.
#[derive(Debug, PartialEq, Eq)]
pub struct Machine {
    pub regs: [u64; NUM_REGS],
    pub pc: u64,
    /// Guest memory, with guard regions around it (see [`crate::memory`]).
    pub mem: GuestMemory,
    /// The code section: `[code_start, code_end)`.
    pub code_start: u64,
    pub code_end: u64,
    /// The stack may not grow below this address (the end of the image).
    pub stack_limit: u64,
    /// Instructions retired so far.
    pub retired: u64,
    /// When the program started (what `sys 8` counts from).
    pub started: StartTime,
}

/// The instant a machine was made. Two machines compare equal whatever
/// their start times: it is not part of the guest's state.
#[derive(Clone, Copy, Debug)]
pub struct StartTime(pub std::time::Instant);

impl PartialEq for StartTime {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for StartTime {}

/// An atomic read-modify-write on a guest doubleword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rmw {
    /// Compare-and-swap: store `new` if the old value is `expected`.
    Cas { expected: u64, new: u64 },
    /// Fetch-add (wrapping).
    Add(u64),
    /// Exchange.
    Swap(u64),
}

impl Machine {
    /// Loads `image` into a fresh memory of `mem_mib` MiB; pc at the entry,
    /// sp at the top of memory.
    pub fn new(image: &Image, mem_mib: u64) -> Result<Machine, MachineError> {
        if mem_mib == 0 || mem_mib > MAX_MEM_MIB {
            return Err(MachineError::BadMemSize { mib: mem_mib });
        }
        let size = mem_mib << 20;
        let mut mem = GuestMemory::new(size as usize).map_err(MachineError::Memory)?;
        let mut image_end = 0;
        for s in image.sections() {
            let len = s.bytes.len() as u64;
            let end = s.addr.checked_add(len).filter(|&e| e <= size);
            let end = end.ok_or(MachineError::SectionTooLarge { addr: s.addr, len, mem: size })?;
            mem[s.addr as usize..end as usize].copy_from_slice(&s.bytes);
            image_end = image_end.max(end);
        }
        for r in &image.reserved {
            let end = r.addr.checked_add(r.len).filter(|&e| e <= size);
            let end = end.ok_or(MachineError::SectionTooLarge { addr: r.addr, len: r.len, mem: size })?;
            image_end = image_end.max(end);
        }
        let mut regs = [0u64; NUM_REGS];
        regs[usize::from(SP)] = size;
        Ok(Machine {
            regs,
            pc: image.entry,
            mem,
            code_start: image.code.addr,
            code_end: image.code.addr + image.code.bytes.len() as u64,
            stack_limit: image_end.next_multiple_of(16),
            retired: 0,
            started: StartTime(std::time::Instant::now()),
        })
    }

    /// A machine for another thread of the same program on another OS
    /// thread: the same memory (shared, see [`GuestMemory::share`]) and
    /// code, registers zero, its own retired count.
    pub fn share(&self) -> Machine {
        Machine {
            regs: [0; NUM_REGS],
            pc: self.pc,
            mem: self.mem.share(),
            code_start: self.code_start,
            code_end: self.code_end,
            stack_limit: self.stack_limit,
            retired: 0,
            started: self.started,
        }
    }

    /// True if `addr` is the address of an instruction of the code section.
    #[inline(always)]
    pub fn is_code_addr(&self, addr: u64) -> bool {
        addr >= self.code_start && addr < self.code_end && (addr - self.code_start).is_multiple_of(INSTR_SIZE)
    }

    /// Reads `N` bytes at `addr`, zero-extended to u64.
    #[inline(always)]
    pub fn load<const N: usize>(&self, addr: u64) -> Result<u64, TrapKind> {
        if addr > (self.mem.len() - N) as u64 {
            return Err(TrapKind::OutOfBounds { addr, size: N as u64 });
        }
        Ok(self.mem.read::<N>(addr as usize))
    }

    /// Writes the low `N` bytes of `value` at `addr`.
    #[inline(always)]
    pub fn store<const N: usize>(&mut self, addr: u64, value: u64) -> Result<(), TrapKind> {
        if addr > (self.mem.len() - N) as u64 {
            return Err(TrapKind::OutOfBounds { addr, size: N as u64 });
        }
        self.mem.write::<N>(addr as usize, value);
        Ok(())
    }

    /// True if a store of `n` bytes at `addr` touches the code section.
    #[inline(always)]
    pub fn touches_code(&self, addr: u64, n: u64) -> bool {
        addr < self.code_end && addr.saturating_add(n) > self.code_start
    }

    /// Checks the address of an atomic or futex access: inside memory (as
    /// a store of 8 bytes), then 8-byte aligned.
    #[inline(always)]
    pub fn atomic_addr(&self, addr: u64) -> Result<usize, TrapKind> {
        if addr > (self.mem.len() - 8) as u64 {
            return Err(TrapKind::OutOfBounds { addr, size: 8 });
        }
        if !addr.is_multiple_of(8) {
            return Err(TrapKind::MisalignedAtomic { addr });
        }
        Ok(addr as usize)
    }

    /// Performs `op` atomically (sequentially consistent) on the
    /// doubleword at `addr`; returns the old value.
    pub fn atomic(&mut self, addr: u64, op: Rmw) -> Result<u64, TrapKind> {
        let at = self.atomic_addr(addr)?;
        let cell = self.mem.atomic_u64(at);
        Ok(match op {
            Rmw::Cas { expected, new } => match cell.compare_exchange(expected, new, SeqCst, SeqCst) {
                Ok(old) | Err(old) => old,
            },
            Rmw::Add(v) => cell.fetch_add(v, SeqCst),
            Rmw::Swap(v) => cell.swap(v, SeqCst),
        })
    }

    /// The doubleword at `addr`, read atomically (a futex's check).
    pub fn atomic_load(&mut self, addr: u64) -> Result<u64, TrapKind> {
        let at = self.atomic_addr(addr)?;
        Ok(self.mem.atomic_u64(at).load(SeqCst))
    }

    /// The 8 bytes at `addr`, if in memory.
    pub fn fetch(&self, addr: u64) -> Option<[u8; 8]> {
        let a = usize::try_from(addr).ok()?;
        self.mem.get(a..a.checked_add(8)?)?.try_into().ok()
    }

    /// Pushes `value`; the stack may not reach the image.
    #[inline(always)]
    pub fn push(&mut self, value: u64) -> Result<(), TrapKind> {
        let sp = self.regs[usize::from(SP)].wrapping_sub(8);
        if sp < self.stack_limit || sp > self.mem.len() as u64 - 8 {
            return Err(TrapKind::StackOverflow);
        }
        self.store::<8>(sp, value)?;
        self.regs[usize::from(SP)] = sp;
        Ok(())
    }

    /// Pops a value.
    #[inline(always)]
    pub fn pop(&mut self) -> Result<u64, TrapKind> {
        let sp = self.regs[usize::from(SP)];
        let v = self.load::<8>(sp)?;
        self.regs[usize::from(SP)] = sp.wrapping_add(8);
        Ok(v)
    }

    /// A hash of all of memory, to compare final states cheaply (what was
    /// never touched is not read: see [`GuestMemory::digest`]).
    pub fn mem_checksum(&self) -> u64 {
        self.mem.digest()
    }

    /// Microseconds since the program started (`sys 8`).
    pub fn elapsed_us(&self) -> u64 {
        u64::try_from(self.started.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Performs syscall `n`.
    ///
    /// # Errors
    ///
    /// The trap a bad call raises: an unknown number, or a buffer outside
    /// memory.
    pub fn syscall(&mut self, io: &mut dyn SysIo, n: i32) -> Result<Syscall, TrapKind> {
        let (r1, r2) = (self.regs[1], self.regs[2]);
        match n {
            sys::EXIT => return Ok(Syscall::Exit((r1 & 0xff) as i32)),
            sys::WRITE | sys::READ => {
                let range = usize::try_from(r1)
                    .ok()
                    .zip(usize::try_from(r2).ok())
                    .and_then(|(a, l)| Some(a..a.checked_add(l)?))
                    .filter(|r| r.end <= self.mem.len())
                    .ok_or(TrapKind::OutOfBounds { addr: r1, size: r2 })?;
                if n == sys::WRITE {
                    io.write(&self.mem[range]);
                    self.regs[0] = r2;
                } else {
                    let read = io.read(&mut self.mem[range]) as u64;
                    self.regs[0] = read;
                    return Ok(Syscall::Wrote { addr: r1, len: read });
                }
            }
            sys::PRINT_INT => io.write((r1 as i64).to_string().as_bytes()),
            sys::PRINT_FLOAT => io.write(f64::from_bits(r1).to_string().as_bytes()),
            sys::PUTC => io.write(&[r1 as u8]),
            sys::RETURN => return Ok(Syscall::Return),
            sys::SLEEP => {
                io.sleep(std::time::Duration::from_micros(r1));
                self.regs[0] = 0;
            }
            sys::TIME => self.regs[0] = self.elapsed_us(),
            sys::HOST.. => return io.host_call((n - sys::HOST) as u32, &mut self.regs, &mut self.mem),
            _ => return Err(TrapKind::BadSyscall(n)),
        }
        Ok(Syscall::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Section;

    fn machine() -> Machine {
        let image = Image::new(0x1000, Section { addr: 0x1000, bytes: vec![0; 16] }, vec![]);
        Machine::new(&image, 1).unwrap()
    }

    #[test]
    fn loads_and_stores_are_bounds_checked() {
        let mut m = machine();
        m.store::<8>(0x2000, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.load::<2>(0x2000), Ok(0x7788));
        let top = 1 << 20;
        assert_eq!(m.load::<8>(top - 8), Ok(0));
        assert_eq!(m.load::<8>(top - 7), Err(TrapKind::OutOfBounds { addr: top - 7, size: 8 }));
        assert!(m.store::<1>(u64::MAX, 0).is_err());
        assert!(m.touches_code(0x100f, 1) && !m.touches_code(0x1010, 8) && m.touches_code(0xff9, 8));
    }

    #[test]
    fn stack_grows_down_to_the_image() {
        let mut m = machine();
        m.push(5).unwrap();
        assert_eq!(m.regs[15], (1 << 20) - 8);
        assert_eq!(m.pop(), Ok(5));
        m.regs[15] = 0x1010 + 8;
        assert_eq!(m.push(1), Ok(()));
        assert_eq!(m.push(1), Err(TrapKind::StackOverflow));
    }

    #[test]
    fn syscalls_write_print_and_read() {
        let mut m = machine();
        let mut io = BufferIo { input: b"xy".to_vec(), ..Default::default() };
        m.mem[0x3000..0x3002].copy_from_slice(b"hi");
        m.regs[1] = 0x3000;
        m.regs[2] = 2;
        assert_eq!(m.syscall(&mut io, sys::WRITE), Ok(Syscall::Done));
        m.regs[1] = -42i64 as u64;
        m.syscall(&mut io, sys::PRINT_INT).unwrap();
        m.regs[1] = 2.5f64.to_bits();
        m.syscall(&mut io, sys::PRINT_FLOAT).unwrap();
        assert_eq!(io.output, b"hi-422.5");
        (m.regs[1], m.regs[2]) = (0x4000, 8);
        assert_eq!(m.syscall(&mut io, sys::READ), Ok(Syscall::Wrote { addr: 0x4000, len: 2 }));
        assert_eq!((m.regs[0], &m.mem[0x4000..0x4002]), (2, &b"xy"[..]));
        assert_eq!(m.syscall(&mut io, sys::READ), Ok(Syscall::Wrote { addr: 0x4000, len: 0 }));
        assert_eq!(m.regs[0], 0);
        assert_eq!(m.syscall(&mut io, 99), Err(TrapKind::BadSyscall(99)));
        assert_eq!(m.syscall(&mut io, sys::RETURN), Ok(Syscall::Return));
        assert_eq!(m.syscall(&mut io, sys::HOST + 3), Err(TrapKind::BadSyscall(sys::HOST + 3)));
        (m.regs[1], m.regs[2]) = (u64::MAX, 2);
        assert!(matches!(m.syscall(&mut io, sys::WRITE), Err(TrapKind::OutOfBounds { .. })));
        m.regs[1] = 300;
        assert_eq!(m.syscall(&mut io, sys::EXIT), Ok(Syscall::Exit(44)));
    }

    /// Records the sleeps it is asked for instead of waiting.
    #[derive(Default)]
    struct SleepLog(Vec<std::time::Duration>);

    impl SysIo for SleepLog {
        fn write(&mut self, _: &[u8]) {}
        fn read(&mut self, _: &mut [u8]) -> usize {
            0
        }
        fn sleep(&mut self, time: std::time::Duration) {
            self.0.push(time);
        }
    }

    #[test]
    fn a_sleep_goes_to_the_embedder_whatever_r1_holds() {
        let mut m = machine();
        let mut io = SleepLog::default();
        let asked = [0, 1, 1500, 167_772_160, u64::MAX];
        for us in asked {
            (m.regs[0], m.regs[1]) = (7, us);
            assert_eq!(m.syscall(&mut io, sys::SLEEP), Ok(Syscall::Done));
            assert_eq!(m.regs[0], 0);
        }
        assert_eq!(io.0, asked.map(std::time::Duration::from_micros));
        // The longest sleep is a deadline the clock can hold (a jacketed
        // sleeper parks until now + r1).
        assert!(std::time::Instant::now().checked_add(*io.0.last().unwrap()).is_some());
    }
}
