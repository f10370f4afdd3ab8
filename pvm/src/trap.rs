//! Traps: run-time faults are outcomes, not panics. Both engines report the
//! same trap at the same guest pc after the same number of retired
//! instructions.

use std::fmt;

use crate::isa::DecodeError;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapKind {
    DivisionByZero,
    OutOfBounds { addr: u64, size: u64 },
    StackOverflow,
    FuelExhausted,
    BadSyscall(i32),
    InvalidInstruction(DecodeError),
    BadJumpTarget(u64),
}

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
