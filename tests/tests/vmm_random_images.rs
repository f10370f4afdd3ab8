//! Random flat images in each entry mode, run through the `vmm` command
//! line under `--timeout`: each must end in a documented exit status (the
//! guest's debug-exit status, or 72-78 with the matching message) within
//! the timeout plus a bound; none may hang or panic.
//!
//! The images are pure random bytes, random bytes after a valid prologue,
//! and sequences of generated instructions: port writes and reads (UART,
//! debug-exit, POST, scratch, unclaimed ports; single and `rep` string
//! I/O), stores to random addresses (RAM, page tables, GDT, the image
//! itself, the MMIO hole, past RAM), HLT with and without interrupts,
//! jumps into the weeds, and random bytes between them.
#![allow(clippy::print_stderr)] // the status distribution is this test's report

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tests::{kvm_available, temp_file, vmm, Rng};

const IMAGES_PER_MODE: usize = 1000;
/// `--timeout` of each run.
const TIMEOUT: Duration = Duration::from_millis(50);
/// What a run may take beyond its timeout: creating the VM, the kick
/// interval, writing the diagnosis (measured: a few ms on a quiet machine,
/// up to 2.7 s with a load average of 8 on 2 cores, three of these tests
/// in parallel). A run that ignored its timeout would take until HANG.
const SLACK: Duration = Duration::from_secs(4);
/// A run that has not ended after this long is a hang.
const HANG: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Real,
    Protected,
    Long,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Real => "real",
            Mode::Protected => "protected",
            Mode::Long => "long",
        }
    }
    /// Where the VMM loads a flat image in this mode.
    fn load(self) -> u64 {
        match self {
            Mode::Real => 0x7c00,
            Mode::Protected | Mode::Long => 0x10_0000,
        }
    }
}

/// Machine code for one mode, a few instructions at a time.
struct Code {
    mode: Mode,
    bytes: Vec<u8>,
}

impl Code {
    fn emit(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }
    /// The operand-size prefix that selects `size` (2 or 4) bytes in this mode.
    fn size_prefix(&mut self, size: u8) -> &mut Self {
        let wants_prefix = match self.mode {
            Mode::Real => size == 4,
            Mode::Protected | Mode::Long => size == 2,
        };
        if wants_prefix {
            self.emit(&[0x66]);
        }
        self
    }
    /// `mov` of an immediate into a general register (encoding `0xb8 + reg`), native width.
    fn mov_reg(&mut self, reg: u8, value: u64) -> &mut Self {
        match self.mode {
            Mode::Real => self.emit(&[0xb8 + reg]).emit(&(value as u16).to_le_bytes()),
            Mode::Protected => self.emit(&[0xb8 + reg]).emit(&(value as u32).to_le_bytes()),
            Mode::Long => self.emit(&[0x48, 0xb8 + reg]).emit(&value.to_le_bytes()),
        }
    }
    /// `mov al/ax/eax, value`.
    fn mov_acc(&mut self, size: u8, value: u32) -> &mut Self {
        match size {
            1 => self.emit(&[0xb0, value as u8]),
            2 => self.size_prefix(2).emit(&[0xb8]).emit(&(value as u16).to_le_bytes()),
            _ => self.size_prefix(4).emit(&[0xb8]).emit(&value.to_le_bytes()),
        }
    }
    fn out_dx(&mut self, port: u16, size: u8, value: u32) -> &mut Self {
        self.mov_reg(2, u64::from(port)).mov_acc(size, value);
        match size {
            1 => self.emit(&[0xee]),
            s => self.size_prefix(s).emit(&[0xef]),
        }
    }
    fn in_dx(&mut self, port: u16, size: u8) -> &mut Self {
        self.mov_reg(2, u64::from(port));
        match size {
            1 => self.emit(&[0xec]),
            s => self.size_prefix(s).emit(&[0xed]),
        }
    }
    /// `rep outsb` (or `rep insb`) of `count` bytes from (to) `addr`.
    fn rep_string(&mut self, port: u16, addr: u64, count: u64, input: bool) -> &mut Self {
        self.mov_reg(2, u64::from(port)).mov_reg(1, count);
        if input {
            self.mov_reg(7, addr).emit(&[0xf3, 0x6c])
        } else {
            self.mov_reg(6, addr).emit(&[0xf3, 0x6e])
        }
    }
    /// A byte or dword store of `value` at `addr` (real mode: through ES).
    fn store(&mut self, addr: u64, dword: bool, value: u32) -> &mut Self {
        match self.mode {
            Mode::Real => {
                // mov ax, seg; mov es, ax; mov bx, offset; es mov [bx], imm
                self.mov_reg(0, (addr >> 4) & 0xffff).emit(&[0x8e, 0xc0]).mov_reg(3, addr & 0xf);
                if dword {
                    self.emit(&[0x26, 0x66, 0xc7, 0x07]).emit(&value.to_le_bytes())
                } else {
                    self.emit(&[0x26, 0xc6, 0x07, value as u8])
                }
            }
            Mode::Protected | Mode::Long => {
                // mov (e/r)bx, addr; mov [(e/r)bx], imm
                self.mov_reg(3, addr);
                if dword {
                    self.emit(&[0xc7, 0x03]).emit(&value.to_le_bytes())
                } else {
                    self.emit(&[0xc6, 0x03, value as u8])
                }
            }
        }
    }
    /// A jump to `addr`: far in real mode, through (e/r)ax otherwise.
    fn jump(&mut self, addr: u64) -> &mut Self {
        match self.mode {
            Mode::Real => {
                self.emit(&[0xea]).emit(&(addr as u16).to_le_bytes()).emit(&((addr >> 16) as u16).to_le_bytes())
            }
            Mode::Protected | Mode::Long => self.mov_reg(0, addr).emit(&[0xff, 0xe0]),
        }
    }
    fn debug_exit(&mut self, status: u8) -> &mut Self {
        self.emit(&[0xb0, status, 0xe6, 0xf4])
    }
    /// A stack, and "hi" on the UART.
    fn prologue(&mut self) -> &mut Self {
        match self.mode {
            // xor ax, ax; mov ds, ax; mov ss, ax; mov sp, 0x7c00
            Mode::Real => self.emit(&[0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x7c]),
            Mode::Protected | Mode::Long => self.emit(&[0xbc, 0x00, 0x00, 0x07, 0x00]), // mov esp, 0x70000
        };
        self.out_dx(0x3f8, 1, u32::from(b'h')).out_dx(0x3f8, 1, u32::from(b'i'))
    }
}

fn random_bytes(rng: &mut Rng, max: u64) -> Vec<u8> {
    (0..1 + rng.below(max)).map(|_| rng.next_u64() as u8).collect()
}

fn port(rng: &mut Rng) -> u16 {
    match rng.below(7) {
        0 => 0x3f8 + rng.below(8) as u16,  // the UART's registers
        1 => 0xf4 + rng.below(4) as u16,   // debug-exit
        2 => 0x80,                         // POST
        3 => 0x700 + rng.below(16) as u16, // scratch
        4 => 0x2f8 + rng.below(8) as u16,  // COM2: unclaimed
        5 => *rng.pick(&[0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61]), // PIC, PIT (with --timers)
        _ => rng.next_u64() as u16,
    }
}

fn address(rng: &mut Rng, mode: Mode) -> u64 {
    let ram: u64 = 128 << 20;
    let a = match rng.below(9) {
        0 => rng.below(ram),
        1 => 0x9000 + rng.below(0x6000),           // the page tables
        2 => 0x500 + rng.below(0x20),              // the GDT
        3 => mode.load() + rng.below(0x200),       // the image itself
        4 => 0x7_0000 - rng.below(0x100),          // the stack
        5 => 0xd000_0000 + rng.below(0x20),        // the scratch device
        6 => 0xd000_0000 + rng.below(0x3000_0000), // the MMIO hole
        7 => ram - rng.below(8),                   // the end of RAM
        _ => rng.next_u64(),
    };
    match mode {
        Mode::Real => a & 0xf_ffff,
        Mode::Protected => a & 0xffff_ffff,
        Mode::Long => a,
    }
}

/// One generated instruction sequence.
fn action(rng: &mut Rng, c: &mut Code) {
    let mode = c.mode;
    let size = *rng.pick(&[1u8, 1, 2, 4]);
    match rng.below(10) {
        0 | 1 => {
            let (p, v) = (port(rng), rng.next_u64() as u32);
            c.out_dx(p, size, v);
        }
        2 => {
            let p = port(rng);
            c.in_dx(p, size);
        }
        3 => {
            let (p, a, n, input) = (port(rng), address(rng, mode), rng.below(64), rng.below(2) == 0);
            c.rep_string(p, a, n, input);
        }
        4 | 5 => {
            let (a, dword, v) = (address(rng, mode), rng.below(2) == 0, rng.next_u64() as u32);
            c.store(a, dword, v);
        }
        6 => {
            let hlt = *rng.pick(&[&[0xf4][..], &[0xfa, 0xf4], &[0xfb, 0xf4]]);
            c.emit(hlt);
        }
        7 => {
            let a = address(rng, mode);
            c.jump(a);
        }
        8 => {
            let b = random_bytes(rng, 16);
            c.emit(&b);
        }
        _ => {
            let status = rng.next_u64() as u8;
            c.emit(&[0xb0, status, 0xe6, 0x80]); // a POST code
        }
    }
}

/// A random image for `mode`.
fn image(rng: &mut Rng, mode: Mode) -> Vec<u8> {
    let mut c = Code { mode, bytes: Vec::new() };
    match rng.below(4) {
        0 => return random_bytes(rng, 512),
        1 => {
            let b = random_bytes(rng, 256);
            c.prologue().emit(&b);
        }
        _ => {
            c.prologue();
            for _ in 0..1 + rng.below(12) {
                action(rng, &mut c);
            }
            match rng.below(6) {
                0 | 1 => {
                    let status = rng.next_u64() as u8;
                    c.debug_exit(status);
                }
                2 => {
                    c.emit(&[0xfa, 0xf4]); // cli; hlt
                }
                3 => {
                    c.emit(&[0xeb, 0xfe]); // jmp $
                }
                4 => {
                    let b = random_bytes(rng, 32);
                    c.emit(&b);
                }
                _ => {} // fall off the end into zeroed RAM
            }
        }
    }
    c.bytes
}

/// The documented statuses the VMM itself ends a run with, and the words
/// its message must contain.
fn vmm_status_message(status: i32) -> Option<&'static str> {
    Some(match status {
        72 => "cannot load the guest image",
        73 => "KVM_EXIT_SHUTDOWN",
        74 => "KVM_EXIT_INTERNAL_ERROR",
        75 => "KVM_EXIT_FAIL_ENTRY",
        76 => "did not finish within",
        77 => "HLT with interrupts disabled",
        78 => "this VMM does not handle it",
        _ => return None,
    })
}

/// What one run ended in, checked against the documented statuses.
fn classify(mode: Mode, index: usize, path: &str, o: &tests::Outcome) -> String {
    if !o.stderr.contains("vmm: error:") {
        assert!((0..=255).contains(&o.status), "{} #{index} ({path}): status {}", mode.name(), o.status);
        return "guest exit".into();
    }
    let words = vmm_status_message(o.status)
        .unwrap_or_else(|| panic!("{} #{index} ({path}): undocumented status {}: {}", mode.name(), o.status, o.stderr));
    assert!(
        o.stderr.contains(words),
        "{} #{index} ({path}): status {} without {words:?}: {}",
        mode.name(),
        o.status,
        o.stderr
    );
    o.status.to_string()
}

struct Tally {
    statuses: BTreeMap<String, u32>,
    slowest: Duration,
    total: Duration,
}

/// Runs `IMAGES_PER_MODE` images of `mode` on a thread of their own, so a
/// run that hangs fails the test (naming the image) instead of hanging it.
fn run_mode(mode: Mode, seed: u64) -> Tally {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rng = Rng(seed);
        for index in 0..IMAGES_PER_MODE {
            let bytes = image(&mut rng, mode);
            let path = temp_file(&format!("random-{}-{index}.bin", mode.name()), &bytes);
            let path = path.to_str().expect("a UTF-8 temp path").to_string();
            let timeout = format!("{}", TIMEOUT.as_secs_f64());
            let mut args = vec!["run", &path, "--mode", mode.name(), "--timeout", &timeout];
            // Some runs also go through the tracer and the statistics.
            // Some runs also go through the tracer, the statistics, KVM's
            // in-kernel PIC and PIT, and a small RAM.
            match index % 8 {
                1 => args.extend(["--mem", "2"]),
                3 => args.push("--trace"),
                5 => args.push("--timers"),
                6 => args.push("--stats"),
                _ => {}
            }
            if tx.send((index, path.clone(), None)).is_err() {
                return;
            }
            let started = Instant::now();
            let o = vmm(&args);
            let elapsed = started.elapsed();
            let status = classify(mode, index, &path, &o);
            let _ = std::fs::remove_file(&path);
            if tx.send((index, path, Some((status, elapsed)))).is_err() {
                return;
            }
        }
    });
    let mut tally = Tally { statuses: BTreeMap::new(), slowest: Duration::ZERO, total: Duration::ZERO };
    let mut current = String::from("(none yet)");
    for _ in 0..2 * IMAGES_PER_MODE {
        let (index, path, done) = match rx.recv_timeout(HANG) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{} {current} has not ended after {HANG:?}", mode.name()),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{} {current} failed (see above)", mode.name()),
        };
        current = format!("#{index} ({path})");
        let Some((status, elapsed)) = done else { continue };
        assert!(elapsed <= TIMEOUT + SLACK, "{} {current} ended in {status} after {elapsed:?}", mode.name());
        *tally.statuses.entry(status).or_default() += 1;
        tally.slowest = tally.slowest.max(elapsed);
        tally.total += elapsed;
    }
    tally
}

/// Runs the images of one mode and checks that they reach the outcomes the
/// generator aims at, not just one kind.
fn check_mode(mode: Mode, seed: u64) {
    if !kvm_available() {
        return;
    }
    let t = run_mode(mode, seed);
    eprintln!(
        "{} mode: {IMAGES_PER_MODE} images, statuses {:?}; wall time per image: mean {:.1} ms, slowest {:.1} ms (timeout {} ms)",
        mode.name(),
        t.statuses,
        t.total.as_secs_f64() * 1e3 / IMAGES_PER_MODE as f64,
        t.slowest.as_secs_f64() * 1e3,
        TIMEOUT.as_millis()
    );
    let seen = |k: &str| t.statuses.get(k).copied().unwrap_or(0) > 0;
    // The guest's own exit, the timeout, HLT with interrupts off, and a
    // fault (a triple fault on hardware KVM, an emulation failure where KVM
    // cannot emulate what the guest ran).
    for want in ["guest exit", "76", "77"] {
        assert!(seen(want), "{} mode: no run ended in {want}: {:?}", mode.name(), t.statuses);
    }
    assert!(seen("73") || seen("74"), "{} mode: no fault: {:?}", mode.name(), t.statuses);
}

#[test]
fn random_real_mode_images_end_in_a_documented_status_within_the_timeout() {
    check_mode(Mode::Real, 0x243f_6a88_85a3_08d3);
}

#[test]
fn random_protected_mode_images_end_in_a_documented_status_within_the_timeout() {
    check_mode(Mode::Protected, 0x1319_8a2e_0370_7344);
}

#[test]
fn random_long_mode_images_end_in_a_documented_status_within_the_timeout() {
    check_mode(Mode::Long, 0xa409_3822_299f_31d0);
}
