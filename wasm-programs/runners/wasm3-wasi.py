"""Runs a WASI (preview1) command module under wasm3, through the
`pywasm3` package from PyPI (pip install pywasm3), as a whole process:
its exit status is the module's.

    python3 wasm3-wasi.py [--env K=V]... FILE.wasm [ARG]...

The module sees FILE.wasm as argv[0], then the ARGs; its environment is
exactly the --env pairs; descriptors 0, 1 and 2 are the process's own and
no others exist (no preopened directories).

pywasm3 0.5.0 links no WASI of its own, so the calls a wasi-libc program
makes are written here in Python. They run only when the module calls out
(printf's flush, a read): the wasm code itself runs in wasm3's interpreter.
"""

import errno
import os
import stat
import struct
import sys
import time

import wasm3

WASI = "wasi_snapshot_preview1"
STACK_BYTES = 1 << 20

# WASI errno values (they are not Linux's).
ESUCCESS, EBADF, EINVAL, EIO, ENOSYS, EPIPE, ESPIPE = 0, 8, 28, 29, 52, 64, 70
FROM_OS = {errno.EBADF: EBADF, errno.EINVAL: EINVAL, errno.EIO: EIO, errno.EPIPE: EPIPE, errno.ESPIPE: ESPIPE}

# fd_fdstat_get: file types and the rights that tell isatty() a file from a terminal.
UNKNOWN, CHARACTER_DEVICE, REGULAR_FILE = 0, 2, 4
RIGHT_FD_SEEK, RIGHT_FD_TELL = 1 << 2, 1 << 5
ALL_RIGHTS = (1 << 30) - 1


class Exit(Exception):
    """proc_exit: unwinds out of wasm3 back to main()."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def parse(argv):
    env = []
    while len(argv) > 1 and argv[0] == "--env":
        key, eq, value = argv[1].partition("=")
        if not key or not eq:
            sys.exit(f"wasm3-wasi: --env wants KEY=VALUE, got {argv[1]}")
        env.append(f"{key}={value}")
        argv = argv[2:]
    if not argv:
        sys.exit("usage: python3 wasm3-wasi.py [--env K=V]... FILE.wasm [ARG]...")
    return env, argv


def os_errno(e):
    return FROM_OS.get(e.errno, EIO)


class Wasi:
    def __init__(self, runtime, argv, env):
        self.runtime = runtime
        self.argv = [a.encode() + b"\0" for a in argv]
        self.env = [e.encode() + b"\0" for e in env]

    def mem(self):
        # Fetched on every call: memory.grow may move it.
        return self.runtime.get_memory(0)

    def put_u32(self, ptr, value):
        struct.pack_into("<I", self.mem(), ptr, value)

    def put_u64(self, ptr, value):
        struct.pack_into("<Q", self.mem(), ptr, value)

    def sizes(self, items, count_ptr, size_ptr):
        self.put_u32(count_ptr, len(items))
        self.put_u32(size_ptr, sum(len(s) for s in items))
        return ESUCCESS

    def strings(self, items, ptrs, buf):
        mem = self.mem()
        for i, s in enumerate(items):
            struct.pack_into("<I", mem, ptrs + 4 * i, buf)
            mem[buf : buf + len(s)] = s
            buf += len(s)
        return ESUCCESS

    def args_sizes_get(self, count_ptr, size_ptr):
        return self.sizes(self.argv, count_ptr, size_ptr)

    def args_get(self, ptrs, buf):
        return self.strings(self.argv, ptrs, buf)

    def environ_sizes_get(self, count_ptr, size_ptr):
        return self.sizes(self.env, count_ptr, size_ptr)

    def environ_get(self, ptrs, buf):
        return self.strings(self.env, ptrs, buf)

    def iovecs(self, iovs, count):
        mem = self.mem()
        return [struct.unpack_from("<II", mem, iovs + 8 * i) for i in range(count)]

    def fd_write(self, fd, iovs, count, nwritten_ptr):
        if fd not in (1, 2):
            return EBADF
        mem = self.mem()
        data = b"".join(bytes(mem[p : p + n]) for p, n in self.iovecs(iovs, count))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:
            return os_errno(e)
        self.put_u32(nwritten_ptr, len(data))
        return ESUCCESS

    def fd_read(self, fd, iovs, count, nread_ptr):
        if fd != 0:
            return EBADF
        total = 0
        for p, n in self.iovecs(iovs, count):
            try:
                chunk = os.read(0, n)
            except OSError as e:
                return os_errno(e)
            self.mem()[p : p + len(chunk)] = chunk
            total += len(chunk)
            if len(chunk) < n:
                break
        self.put_u32(nread_ptr, total)
        return ESUCCESS

    def fd_seek(self, fd, offset, whence, newoffset_ptr):
        if fd not in (0, 1, 2):
            return EBADF
        if whence not in (0, 1, 2):  # WASI's SET, CUR, END are Linux's
            return EINVAL
        try:
            pos = os.lseek(fd, offset, whence)
        except OSError as e:
            return os_errno(e)
        self.put_u64(newoffset_ptr, pos)
        return ESUCCESS

    def fd_tell(self, fd, offset_ptr):
        return self.fd_seek(fd, 0, os.SEEK_CUR, offset_ptr)

    def fd_close(self, fd):
        # The process's own descriptors stay open: the runner needs them.
        return ESUCCESS if fd in (0, 1, 2) else EBADF

    def fd_fdstat_get(self, fd, buf):
        if fd not in (0, 1, 2):
            return EBADF
        try:
            st = os.fstat(fd)
        except OSError as e:
            return os_errno(e)
        if stat.S_ISREG(st.st_mode):
            kind, rights = REGULAR_FILE, ALL_RIGHTS
        elif os.isatty(fd):
            kind, rights = CHARACTER_DEVICE, ALL_RIGHTS & ~(RIGHT_FD_SEEK | RIGHT_FD_TELL)
        else:
            kind, rights = UNKNOWN, ALL_RIGHTS & ~(RIGHT_FD_SEEK | RIGHT_FD_TELL)
        mem = self.mem()
        mem[buf : buf + 24] = bytes(24)
        struct.pack_into("<BxHxxxxQQ", mem, buf, kind, 0, rights, rights)
        return ESUCCESS

    def fd_prestat_get(self, fd, buf):
        return EBADF  # no preopened directories

    def fd_prestat_dir_name(self, fd, path, length):
        return EBADF

    def proc_exit(self, code):
        raise Exit(code)

    def clock(self, clock_id):
        return {
            0: time.time_ns,
            1: time.monotonic_ns,
            2: time.process_time_ns,
            3: time.thread_time_ns,
        }.get(clock_id)

    def clock_time_get(self, clock_id, precision, time_ptr):
        clock = self.clock(clock_id)
        if clock is None:
            return EINVAL
        self.put_u64(time_ptr, clock())
        return ESUCCESS

    def clock_res_get(self, clock_id, res_ptr):
        if self.clock(clock_id) is None:
            return EINVAL
        self.put_u64(res_ptr, 1)
        return ESUCCESS

    def random_get(self, buf, length):
        self.mem()[buf : buf + length] = os.urandom(length)
        return ESUCCESS

    def sched_yield(self):
        return ESUCCESS


# (name, wasm3 signature: i = i32, I = i64, v = no result)
SIGNATURES = [
    ("args_get", "i(ii)"),
    ("args_sizes_get", "i(ii)"),
    ("environ_get", "i(ii)"),
    ("environ_sizes_get", "i(ii)"),
    ("fd_write", "i(iiii)"),
    ("fd_read", "i(iiii)"),
    ("fd_seek", "i(iIii)"),
    ("fd_tell", "i(ii)"),
    ("fd_close", "i(i)"),
    ("fd_fdstat_get", "i(ii)"),
    ("fd_prestat_get", "i(ii)"),
    ("fd_prestat_dir_name", "i(iii)"),
    ("proc_exit", "v(i)"),
    ("clock_time_get", "i(iIi)"),
    ("clock_res_get", "i(ii)"),
    ("random_get", "i(ii)"),
    ("sched_yield", "i()"),
]


def main():
    env, argv = parse(sys.argv[1:])
    with open(argv[0], "rb") as f:
        wasm = f.read()
    environment = wasm3.Environment()
    runtime = environment.new_runtime(STACK_BYTES)
    module = environment.parse_module(wasm)
    runtime.load(module)
    wasi = Wasi(runtime, argv, env)
    for name, signature in SIGNATURES:
        # Functions the module does not import are skipped by link_function.
        module.link_function(WASI, name, signature, getattr(wasi, name))
    start = runtime.find_function("_start")
    try:
        start()
    except Exit as e:
        return e.code
    except RuntimeError as e:
        print(f"wasm3-wasi: {e}", file=sys.stderr)
        return 134
    return 0


if __name__ == "__main__":
    sys.exit(main())
