//! Traps: run-time faults are outcomes, not panics. Both engines report the
//! same trap at the same guest pc after the same number of retired
//! instructions.

use std::fmt;

use crate::isa::DecodeError;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    DivisionByZero,
    OutOfBounds {
        addr: u64,
        size: u64,
    },
    StackOverflow,
    FuelExhausted,
    BadSyscall(i32),
    InvalidInstruction(DecodeError),
    BadJumpTarget(u64),
    /// A signed division of the minimum by -1 where it traps (`divs32`,
    /// `divst`), or a truncation out of the integer's range.
    IntegerOverflow,
    /// A trapping truncation of NaN to an integer.
    InvalidConversion,
    /// A linear-memory access past the end of the linear memory
    /// (WebAssembly's "out of bounds memory access").
    LinearOutOfBounds {
        addr: u64,
        size: u64,
    },
    /// `trap n`: a trap the program raises (see [`RAISED`] for the codes
    /// the WebAssembly front end uses).
    Raised(u32),
    /// An atomic or futex access at an address not a multiple of 8.
    MisalignedAtomic {
        addr: u64,
    },
    /// A `join` of the calling thread itself, of an id no thread has, or
    /// of a thread already joined.
    BadJoin {
        id: u64,
        why: JoinError,
    },
    /// A `spawn` past the limit on live threads (`--max-threads`).
    TooManyThreads {
        max: u64,
    },
    /// Every live thread waits in `join` or `wait` and none can wake it
    /// (the run's report lists each thread and what it waits on).
    Deadlock {
        threads: u64,
    },
    /// A thread instruction reached outside a thread scheduler (an
    /// embedder that runs the machine itself).
    NoScheduler,
}

/// Why a `join` is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    /// The thread joins itself.
    Itself,
    /// No thread has this id.
    Unknown,
    /// The thread was joined already (or another thread waits for it).
    AlreadyJoined,
}

/// The codes of `trap n` the WebAssembly front end raises, and what they
/// mean.
pub const RAISED: &[(u32, &str)] = &[
    (0, "unreachable executed"),
    (1, "indirect call type mismatch"),
    (2, "undefined element"),
    (3, "uninitialized element"),
    (4, "call stack exhausted"),
];

impl TrapKind {
    /// Process exit status of `pvm run` for this trap.
    pub fn exit_status(&self) -> i32 {
        match self {
            TrapKind::DivisionByZero => 80,
            TrapKind::OutOfBounds { .. } => 81,
            TrapKind::StackOverflow => 82,
            TrapKind::FuelExhausted => 83,
            TrapKind::BadSyscall(_) => 84,
            TrapKind::InvalidInstruction(_) => 85,
            TrapKind::BadJumpTarget(_) => 86,
            TrapKind::IntegerOverflow => 87,
            TrapKind::InvalidConversion => 88,
            TrapKind::LinearOutOfBounds { .. } => 89,
            TrapKind::Raised(_) => 90,
            TrapKind::MisalignedAtomic { .. } => 91,
            TrapKind::BadJoin { .. } => 92,
            TrapKind::TooManyThreads { .. } => 93,
            TrapKind::Deadlock { .. } => 94,
            TrapKind::NoScheduler => 95,
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::DivisionByZero => write!(f, "division by zero"),
            TrapKind::OutOfBounds { addr, size } => {
                write!(f, "out-of-bounds access of {size} bytes at {addr:#x}")
            }
            TrapKind::StackOverflow => write!(f, "stack overflow (the stack reached the program image)"),
            TrapKind::FuelExhausted => write!(f, "fuel exhausted (--fuel limit on retired instructions reached)"),
            TrapKind::BadSyscall(n) => write!(f, "bad syscall number {n}"),
            TrapKind::InvalidInstruction(e) => write!(f, "invalid instruction reached: {e}"),
            TrapKind::BadJumpTarget(t) => {
                write!(f, "jump to {t:#x}, which is not an instruction of the code section")
            }
            TrapKind::IntegerOverflow => write!(f, "integer overflow"),
            TrapKind::InvalidConversion => write!(f, "invalid conversion to integer"),
            TrapKind::LinearOutOfBounds { addr, size } => {
                write!(f, "out of bounds memory access: {size} bytes at {addr:#x}, past the end of the linear memory")
            }
            TrapKind::Raised(code) => match RAISED.iter().find(|(c, _)| c == code) {
                Some((_, what)) => write!(f, "{what} (trap {code})"),
                None => write!(f, "trap {code} raised by the program"),
            },
            TrapKind::MisalignedAtomic { addr } => {
                write!(f, "misaligned atomic access at {addr:#x}: atomics and futexes need an 8-byte aligned address")
            }
            TrapKind::BadJoin { id, why } => match why {
                JoinError::Itself => write!(f, "thread {id} joins itself, which would wait forever"),
                JoinError::Unknown => write!(f, "join of thread {id}, which does not exist"),
                JoinError::AlreadyJoined => write!(f, "join of thread {id}, which was joined already"),
            },
            TrapKind::TooManyThreads { max } => {
                write!(f, "too many threads: {max} are alive already (raise --max-threads)")
            }
            TrapKind::Deadlock { threads } => {
                write!(f, "deadlock: every thread is waiting ({threads} threads, none can wake another)")
            }
            TrapKind::NoScheduler => {
                write!(f, "thread instruction with no thread scheduler (run the program with `pvm run`)")
            }
        }
    }
}

/// A trap with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("trap at pc {pc:#x} ({instruction}): {kind}, after {retired} retired instructions")]
pub struct Trap {
    pub kind: TrapKind,
    pub pc: u64,
    /// The instruction at pc, disassembled (or its bytes if invalid).
    pub instruction: String,
    pub retired: u64,
}
