//! Faults in generated code. Every guest access the translator emits is
//! bounds-checked; should a check be wrong, the access lands in the guard
//! regions around guest memory (see `crate::memory`) and faults. The
//! SIGSEGV handler here maps the faulting host pc back to the guest
//! instruction through the block's trap table (as wasmtime's trap tables
//! do) and resumes at that instruction's interpret stub: the dispatcher
//! then runs the instruction in the interpreter, which reports the trap
//! (or performs the access, had only the check been wrong) exactly as it
//! would have. A fault in generated code that is no guest access is a
//! translator bug: the handler says so on stderr and aborts. Faults
//! anywhere else go to the handler that was there before (Rust's stack
//! overflow handler, or the default action).

use std::cell::Cell;
use std::sync::OnceLock;

use super::cache::BlockCache;

/// What the handler needs while generated code runs on this thread.
#[derive(Debug)]
pub(super) struct Armed {
    cache: Cell<*const BlockCache>,
    /// The reservation of guest memory and its guards.
    guard_start: u64,
    guard_len: u64,
    /// Faults turned into interpret stubs: at checked accesses, and at
    /// accesses that rely on the guard regions.
    recovered: Cell<u64>,
    guarded: Cell<u64>,
}

thread_local! {
    /// The armed translator of this thread, while its code runs (const
    /// initialised and without destructor: a plain TLS slot, safe to read
    /// in a signal handler).
    static ACTIVE: Cell<*const Armed> = const { Cell::new(std::ptr::null()) };
}

/// The handlers that were installed before ours, to pass other faults on.
static PREVIOUS: OnceLock<[libc::sigaction; 2]> = OnceLock::new();
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

impl Armed {
    /// For guest memory reserved at `[guard_start, guard_start + guard_len)`.
    pub(super) fn new(guard_start: u64, guard_len: u64) -> Self {
        install();
        Armed {
            cache: Cell::new(std::ptr::null()),
            guard_start,
            guard_len,
            recovered: Cell::new(0),
            guarded: Cell::new(0),
        }
    }

    /// Runs `code` (generated code of `cache`) with the handler armed on
    /// this thread.
    pub(super) fn run<R>(&self, cache: &BlockCache, code: impl FnOnce() -> R) -> R {
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                ACTIVE.with(|a| a.set(std::ptr::null()));
            }
        }
        self.cache.set(cache);
        ACTIVE.with(|a| a.set(self));
        let _disarm = Disarm;
        code()
    }

    /// Faults at checked accesses recovered so far (0 unless a check is
    /// loosened on purpose, or wrong).
    pub(super) fn recovered(&self) -> u64 {
        self.recovered.get()
    }

    /// Faults at accesses that rely on the guard regions.
    pub(super) fn guarded(&self) -> u64 {
        self.guarded.get()
    }
}

fn install() {
    PREVIOUS.get_or_init(|| {
        SIGNALS.map(|sig| {
            // SAFETY: sigaction with a zeroed struct, a full mask during the
            // handler and SA_SIGINFO | SA_ONSTACK | SA_NODEFER; the old
            // action is kept to pass on the faults that are not ours.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fault as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigfillset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, &action, &mut old);
                old
            }
        })
    });
}

/// What the handler decides for a fault at host pc `rip` on address `addr`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// A guest access: resume at this interpret stub (`true`: an access
    /// that relies on the guard regions, so the fault is expected).
    Resume(u64, bool),
    /// Generated code faulted where it makes no guest access.
    Bug,
    /// Not generated code: not ours.
    PassOn,
}

/// The decision, a pure function of the cache and the guard range.
pub(super) fn decide(cache: &BlockCache, guard_start: u64, guard_len: u64, rip: u64, addr: u64) -> Decision {
    if !cache.memory().contains_exec(rip) {
        return Decision::PassOn;
    }
    let in_guard = addr.wrapping_sub(guard_start) < guard_len;
    match cache.stub_for_fault(rip) {
        Some((stub, guarded)) if in_guard => Decision::Resume(stub, guarded),
        _ => Decision::Bug,
    }
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let armed = ACTIVE.with(Cell::get);
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler; `armed`, when not null, points at the Armed box
    // its guard keeps alive while generated code runs on this thread, and
    // the cache it names is not changed while that code runs.
    unsafe {
        let uc = &mut *context.cast::<libc::ucontext_t>();
        let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
        let addr = (*info).si_addr() as u64;
        if let Some(a) = armed.as_ref() {
            match decide(&*a.cache.get(), a.guard_start, a.guard_len, rip, addr) {
                Decision::Resume(stub, guarded) => {
                    uc.uc_mcontext.gregs[libc::REG_RIP as usize] = stub as i64;
                    let counter = if guarded { &a.guarded } else { &a.recovered };
                    counter.set(counter.get() + 1);
                    return;
                }
                Decision::Bug => report_and_abort(rip, addr),
                Decision::PassOn => {}
            }
        }
        pass_on(sig, info, context);
    }
}

/// Writes a line on stderr (async-signal-safe: no allocation) and aborts.
fn report_and_abort(rip: u64, addr: u64) -> ! {
    let mut line = [0u8; 160];
    let mut n = 0;
    for part in [&b"pvm: translated code faulted at host pc 0x"[..], &hex(rip), b" on address 0x", &hex(addr)] {
        for &b in part.iter() {
            line[n] = b;
            n += 1;
        }
    }
    for &b in b", where it makes no guest access: a translator bug; aborting\n" {
        line[n] = b;
        n += 1;
    }
    // SAFETY: write(2) and abort(3) are async-signal-safe; `line` holds n bytes.
    unsafe {
        libc::write(2, line.as_ptr().cast(), n);
        libc::abort()
    }
}

fn hex(v: u64) -> [u8; 16] {
    let mut out = [b'0'; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let d = (v >> (60 - 4 * i)) & 0xf;
        *o = if d < 10 { b'0' + d as u8 } else { b'a' + d as u8 - 10 };
    }
    out
}

/// Hands a fault that is not ours to the handler that was there before.
///
/// # Safety
///
/// Called from the signal handler with its arguments.
unsafe fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(previous) = PREVIOUS.get() else { return };
    let old = &previous[if sig == libc::SIGSEGV { 0 } else { 1 }];
    let handler = old.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Put the old action back and return: the access faults again
        // and takes it (a core dump, as if we had never been here).
        // SAFETY: restoring an action the kernel gave us.
        unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) };
    } else if old.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler takes these three arguments.
        unsafe {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(handler);
            f(sig, info, context);
        }
    } else {
        // SAFETY: a plain handler takes the signal number.
        unsafe {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_sixteen_digits() {
        assert_eq!(&hex(0x1234_abcd), b"000000001234abcd");
        assert_eq!(&hex(u64::MAX), b"ffffffffffffffff");
    }
}
