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

pub use image::{compile, CompileInfo, Compiled, Options};
pub use link::{LinkError, WasmError};

use crate::trap::TrapKind;

/// `trap n` codes the lowering raises (see `docs/isa.md`).
pub const TRAP_UNREACHABLE: u32 = 0;
pub const TRAP_MISMATCH: u32 = 1;
pub const TRAP_UNDEFINED: u32 = 2;
pub const TRAP_UNINITIALIZED: u32 = 3;
pub const TRAP_EXHAUSTED: u32 = 4;

/// The function `symbols` (entry address, name; sorted) says `pc` is in,
/// with the offset into it.
pub fn symbolize(symbols: &[(u64, String)], pc: u64) -> Option<(&str, u64)> {
    let i = symbols.partition_point(|(at, _)| *at <= pc).checked_sub(1)?;
    Some((symbols[i].1.as_str(), pc - symbols[i].0))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pc_is_named_by_the_function_it_falls_in() {
        let syms = vec![(0x1000, "f".to_string()), (0x1100, "g".to_string())];
        assert_eq!(symbolize(&syms, 0xfff), None);
        assert_eq!(symbolize(&syms, 0x1000), Some(("f", 0)));
        assert_eq!(symbolize(&syms, 0x10f8), Some(("f", 0xf8)));
        assert_eq!(symbolize(&syms, 0x1100), Some(("g", 0)));
        assert_eq!(symbolize(&[], 0x1100), None);
    }

    #[test]
    fn compiled_commands_carry_their_function_names() {
        let wasm = wat::parse_str(
            r#"(module (func $helper (result i32) i32.const 1 i32.const 0 i32.div_s)
                 (func (export "_start") call $helper drop))"#,
        )
        .unwrap();
        let c = compile(&wasm, &Options::default()).unwrap();
        let names: Vec<&str> = c.info.symbols.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["helper", "func[1]"]);
        let mut io = crate::machine::BufferIo::default();
        let cfg = crate::run::RunConfig { mem_mib: c.info.mem_mib, ..Default::default() };
        let r = crate::run::run_image(&c.image, &cfg, None, None, &mut io).unwrap();
        let crate::interp::Outcome::Trapped(t) = r.outcome else { panic!("{:?}", r.outcome) };
        assert_eq!(trap_message(&t.kind), "integer divide by zero");
        assert_eq!(symbolize(&c.info.symbols, t.pc).map(|s| s.0), Some("helper"));
    }
}
