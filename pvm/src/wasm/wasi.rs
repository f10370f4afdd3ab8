//! WASI preview 1, as much as wasi-libc programs need: arguments and
//! environment, stdin, stdout and stderr, clocks, random bytes, exit.
//! Everything else answers ENOSYS; there are no preopened directories.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::host::WASI;
use crate::isa::NUM_REGS;
use crate::machine::{SysIo, Syscall};
use crate::trap::TrapKind;

const ESUCCESS: u64 = 0;
const EBADF: u64 = 8;
const EFAULT: u64 = 21;
const EINVAL: u64 = 28;
const EIO: u64 = 29;
const ENOSYS: u64 = 52;
const ESPIPE: u64 = 70;

/// A WASI host around the program's stdin and stdout.
pub struct Wasi<'a> {
    io: &'a mut dyn SysIo,
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    /// Address of the linear memory's descriptor (end, base).
    desc: Option<u64>,
    started: Instant,
}

impl std::fmt::Debug for Wasi<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wasi").field("args", &self.args.len()).field("env", &self.env.len()).finish()
    }
}

/// The linear memory as the host sees it: `[base, end)` of guest memory.
struct View<'m> {
    mem: &'m mut [u8],
    base: u64,
    end: u64,
}

impl View<'_> {
    fn range(&self, ptr: u64, len: u64) -> Result<std::ops::Range<usize>, u64> {
        let start = self.base.checked_add(ptr & 0xffff_ffff).ok_or(EFAULT)?;
        let end = start.checked_add(len).ok_or(EFAULT)?;
        if end > self.end || end > self.mem.len() as u64 {
            return Err(EFAULT);
        }
        Ok(start as usize..end as usize)
    }

    fn bytes(&mut self, ptr: u64, len: u64) -> Result<&mut [u8], u64> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.mem[r])
    }

    fn u32(&mut self, ptr: u64) -> Result<u64, u64> {
        let b = self.bytes(ptr, 4)?;
        Ok(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    fn put(&mut self, ptr: u64, v: &[u8]) -> Result<(), u64> {
        self.bytes(ptr, v.len() as u64)?.copy_from_slice(v);
        Ok(())
    }

    /// The (buffer, length) pairs of an iovec array.
    fn iovecs(&mut self, iovs: u64, n: u64) -> Result<Vec<(u64, u64)>, u64> {
        (0..n.min(1024)).map(|i| Ok((self.u32(iovs + 8 * i)?, self.u32(iovs + 8 * i + 4)?))).collect()
    }
}

impl<'a> Wasi<'a> {
    /// `args[0]` is the program's name.
    pub fn new(io: &'a mut dyn SysIo, args: Vec<String>, env: Vec<String>, desc: Option<u64>) -> Self {
        Wasi {
            io,
            args: args.into_iter().map(String::into_bytes).collect(),
            env: env.into_iter().map(String::into_bytes).collect(),
            desc,
            started: Instant::now(),
        }
    }

    fn view<'m>(&self, mem: &'m mut [u8]) -> Result<View<'m>, u64> {
        let desc = self.desc.ok_or(EFAULT)? as usize;
        let word = |m: &[u8], at: usize| {
            m.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).ok_or(EFAULT)
        };
        let end = word(mem, desc)?;
        let base = word(mem, desc + 8)?;
        Ok(View { mem, base, end })
    }

    /// `*_sizes_get`: the count and the bytes with NULs.
    fn sizes(list: &[Vec<u8>], v: &mut View<'_>, count: u64, size: u64) -> Result<u64, u64> {
        let bytes: usize = list.iter().map(|a| a.len() + 1).sum();
        v.put(count, &(list.len() as u32).to_le_bytes())?;
        v.put(size, &(bytes as u32).to_le_bytes())?;
        Ok(ESUCCESS)
    }

    /// `args_get`/`environ_get`: the pointers and the NUL-terminated strings.
    fn strings(list: &[Vec<u8>], v: &mut View<'_>, ptrs: u64, buf: u64) -> Result<u64, u64> {
        let mut at = buf;
        for (i, s) in list.iter().enumerate() {
            v.put(ptrs + 4 * i as u64, &(at as u32).to_le_bytes())?;
            v.put(at, s)?;
            v.put(at + s.len() as u64, &[0])?;
            at += s.len() as u64 + 1;
        }
        Ok(ESUCCESS)
    }

    fn clock(&self, id: u64) -> Result<u64, u64> {
        match id {
            0 => Ok(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)),
            1..=3 => Ok(self.started.elapsed().as_nanos() as u64),
            _ => Err(EINVAL),
        }
    }

    fn fd_write(&mut self, v: &mut View<'_>, fd: u64, iovs: u64, n: u64, out: u64) -> Result<u64, u64> {
        if fd != 1 && fd != 2 {
            return Err(EBADF);
        }
        let mut total = 0u64;
        for (buf, len) in v.iovecs(iovs, n)? {
            let bytes = v.bytes(buf, len)?;
            if fd == 1 {
                self.io.write(bytes);
            } else {
                self.io.write_err(bytes);
            }
            total += len;
        }
        v.put(out, &(total as u32).to_le_bytes())?;
        Ok(ESUCCESS)
    }

    fn fd_read(&mut self, v: &mut View<'_>, fd: u64, iovs: u64, n: u64, out: u64) -> Result<u64, u64> {
        if fd != 0 {
            return Err(EBADF);
        }
        let mut total = 0u64;
        for (buf, len) in v.iovecs(iovs, n)? {
            let got = self.io.read(v.bytes(buf, len)?) as u64;
            total += got;
            if got < len {
                break;
            }
        }
        v.put(out, &(total as u32).to_le_bytes())?;
        Ok(ESUCCESS)
    }

    /// fd_fdstat_get: stdio as files of unknown type (so wasi-libc
    /// buffers stdout fully, as for a pipe), with every right but seeking.
    fn fdstat(v: &mut View<'_>, fd: u64, out: u64) -> Result<u64, u64> {
        if fd > 2 {
            return Err(EBADF);
        }
        const SEEK_TELL: u64 = (1 << 2) | (1 << 5);
        let mut stat = [0u8; 24];
        stat[8..16].copy_from_slice(&(!SEEK_TELL).to_le_bytes());
        stat[16..24].copy_from_slice(&(!SEEK_TELL).to_le_bytes());
        v.put(out, &stat)?;
        Ok(ESUCCESS)
    }

    fn call(&mut self, n: u32, a: &[u64; NUM_REGS], mem: &mut [u8]) -> Result<u64, u64> {
        let name = WASI.get(n as usize).map_or("", |f| f.0);
        let mut v = match name {
            "sched_yield" => return Ok(ESUCCESS),
            "fd_close" => return if a[0] <= 2 { Ok(ESUCCESS) } else { Err(EBADF) },
            "fd_seek" | "fd_tell" => return if a[0] <= 2 { Err(ESPIPE) } else { Err(EBADF) },
            "fd_prestat_get" | "fd_prestat_dir_name" => return Err(EBADF),
            _ => self.view(mem)?,
        };
        match name {
            "args_sizes_get" => Self::sizes(&self.args, &mut v, a[0], a[1]),
            "args_get" => Self::strings(&self.args, &mut v, a[0], a[1]),
            "environ_sizes_get" => Self::sizes(&self.env, &mut v, a[0], a[1]),
            "environ_get" => Self::strings(&self.env, &mut v, a[0], a[1]),
            "clock_res_get" => {
                self.clock(a[0])?;
                v.put(a[1], &1u64.to_le_bytes())?;
                Ok(ESUCCESS)
            }
            "clock_time_get" => {
                let t = self.clock(a[0])?;
                v.put(a[2], &t.to_le_bytes())?;
                Ok(ESUCCESS)
            }
            "fd_write" => self.fd_write(&mut v, a[0], a[1], a[2], a[3]),
            "fd_read" => self.fd_read(&mut v, a[0], a[1], a[2], a[3]),
            "fd_fdstat_get" => Self::fdstat(&mut v, a[0], a[1]),
            "random_get" => {
                let buf = v.bytes(a[0], a[1])?;
                fill_random(buf).map_err(|_| EIO)?;
                Ok(ESUCCESS)
            }
            _ => Err(ENOSYS),
        }
    }
}

/// Random bytes from the kernel.
fn fill_random(buf: &mut [u8]) -> Result<(), ()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`,
        // a valid, exclusively borrowed buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(());
        }
        done += n as usize;
    }
    Ok(())
}

impl SysIo for Wasi<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.io.write(bytes);
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        self.io.read(buf)
    }
    fn flush(&mut self) {
        self.io.flush();
    }
    fn write_err(&mut self, bytes: &[u8]) {
        self.io.write_err(bytes);
    }
    fn sleep(&mut self, time: std::time::Duration) {
        self.io.sleep(time);
    }
    fn host_call(&mut self, n: u32, regs: &mut [u64; NUM_REGS], mem: &mut [u8]) -> Result<Syscall, TrapKind> {
        if WASI.get(n as usize).is_some_and(|f| f.0 == "proc_exit") {
            self.io.flush();
            return Ok(Syscall::Exit(regs[0] as u32 as i32));
        }
        if WASI.get(n as usize).is_none() {
            return Err(TrapKind::BadSyscall(crate::machine::sys::HOST.saturating_add_unsigned(n)));
        }
        let args = *regs;
        regs[0] = self.call(n, &args, mem).unwrap_or_else(|e| e);
        Ok(Syscall::Done)
    }
}
