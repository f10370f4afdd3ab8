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
