//! The WebAssembly front end: modules decoded and validated by
//! `wasmparser` ([`module`]), each function lowered to pvm code
//! ([`lower`]), linked into an image for `pvm run` ([`image`]) or
//! instantiated into a [`store`] (the test suite's many modules, calls from
//! the embedder). Host functions: [`wasi`] for programs, `spectest` for the
//! test suite ([`host`]). [`wast`] runs `.wast` scripts.
//!
//! The engines never know a program came from WebAssembly: what it needs
//! (32-bit arithmetic, f32, conversions, linear-memory accesses checked
//! against r14) is in the one ISA table.

pub mod code;
pub mod host;
pub mod image;
pub mod link;
pub mod lower;
pub mod module;
pub mod store;
mod strict;
pub mod value;
pub mod wasi;
pub mod wast;

pub use image::{compile, Compiled, Options};
pub use link::{LinkError, WasmError};

use crate::trap::TrapKind;

/// `trap n` codes the lowering raises (see `docs/isa.md`).
pub const TRAP_UNREACHABLE: u32 = 0;
pub const TRAP_MISMATCH: u32 = 1;
pub const TRAP_UNDEFINED: u32 = 2;
pub const TRAP_UNINITIALIZED: u32 = 3;
pub const TRAP_EXHAUSTED: u32 = 4;

/// True if `bytes` look like a WebAssembly binary.
pub fn is_wasm(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm")
}

/// The WebAssembly trap a pvm trap is, in the spec's words.
pub fn trap_message(kind: &TrapKind) -> &'static str {
    match kind {
        TrapKind::DivisionByZero => "integer divide by zero",
        TrapKind::IntegerOverflow => "integer overflow",
        TrapKind::InvalidConversion => "invalid conversion to integer",
        TrapKind::LinearOutOfBounds { .. } => "out of bounds memory access",
        TrapKind::StackOverflow => "call stack exhausted",
        TrapKind::Raised(TRAP_UNREACHABLE) => "unreachable",
        TrapKind::Raised(TRAP_MISMATCH) => "indirect call type mismatch",
        TrapKind::Raised(TRAP_UNDEFINED) => "undefined element",
        TrapKind::Raised(TRAP_UNINITIALIZED) => "uninitialized element",
        TrapKind::Raised(TRAP_EXHAUSTED) => "call stack exhausted",
        _ => "a pvm trap no WebAssembly code raises (a front-end bug)",
    }
}
