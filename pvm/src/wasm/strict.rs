//! Encodings WebAssembly 1.0 forbids that `wasmparser` reads the way
//! later proposals allow: a memory index byte other than 0x00 after
//! `memory.size`/`memory.grow` (multi-memory), and memory limits and
//! memory-access offsets longer than a 5-byte LEB128 (memory64). Checked
//! only while those features are off.

use std::ops::Range;

use wasmparser::{Operator, WasmFeatures};

use super::module::ModuleError;

const TOO_LONG: &str = "integer representation too long (a u32 takes at most 5 LEB128 bytes without memory64)";

/// Length of the LEB128 number at `at` (its bytes up to the last one
/// without the continuation bit), if it ends in `bytes`.
fn leb_len(bytes: &[u8], at: usize) -> Option<usize> {
    bytes.get(at..)?.iter().position(|b| b & 0x80 == 0).map(|p| p + 1)
}

/// A u32 LEB128 at `at`: its length, or the 1.0 error.
fn u32_leb(bytes: &[u8], at: usize) -> Result<usize, ModuleError> {
    match leb_len(bytes, at) {
        Some(n) if n <= 5 => Ok(n),
        _ => Err(ModuleError::Invalid { offset: at, message: TOO_LONG.into() }),
    }
}

/// Checks one operator at `offset` (its opcode's first byte).
pub fn operator(bytes: &[u8], features: WasmFeatures, offset: usize, op: &Operator<'_>) -> Result<(), ModuleError> {
    if !features.multi_memory() && matches!(op, Operator::MemorySize { .. } | Operator::MemoryGrow { .. }) {
        return match bytes.get(offset + 1) {
            Some(0) => Ok(()),
            _ => Err(ModuleError::Invalid {
                offset,
                message: "zero flag expected (memory.size and memory.grow take the byte 0x00 without multi-memory)"
                    .into(),
            }),
        };
    }
    // Every 1.0 load and store is a one-byte opcode 0x28..=0x3e followed
    // by the alignment and the offset.
    if !features.memory64() && (0x28..=0x3e).contains(&bytes.get(offset).copied().unwrap_or(0)) {
        let align = u32_leb(bytes, offset + 1)?;
        u32_leb(bytes, offset + 1 + align)?;
    }
    Ok(())
}

/// Checks the limits of a memory section spanning `range`.
pub fn memory_section(bytes: &[u8], range: Range<usize>, features: WasmFeatures) -> Result<(), ModuleError> {
    if features.memory64() {
        return Ok(());
    }
    let end = range.end.min(bytes.len());
    let mut at = range.start;
    let Some(n) = leb_len(bytes, at) else { return Ok(()) };
    let count = bytes[at..at + n].iter().rev().fold(0u64, |v, b| (v << 7) | u64::from(b & 0x7f));
    at += n;
    for _ in 0..count {
        let Some(&flags) = bytes.get(at) else { return Ok(()) };
        at += 1;
        for _ in 0..1 + usize::from(flags & 1) {
            if at >= end {
                return Ok(());
            }
            at += u32_leb(bytes, at)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_limits_and_offsets_are_refused_in_1_0() {
        let f = super::super::module::WASM1;
        // One memory, no maximum, minimum 2 in six bytes.
        let sec = [0x01, 0x00, 0x82, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert!(memory_section(&sec, 0..sec.len(), f).is_err());
        let ok = [0x01, 0x01, 0x82, 0x80, 0x80, 0x80, 0x00, 0x03];
        assert!(memory_section(&ok, 0..ok.len(), f).is_ok());
        let load = [0x28, 0x02, 0x82, 0x80, 0x80, 0x80, 0x80, 0x00];
        let op = Operator::Nop;
        assert!(operator(&load, f, 0, &op).is_err());
        assert!(operator(&[0x28, 0x02, 0x82, 0x00], f, 0, &op).is_ok());
        let grow = Operator::MemoryGrow { mem: 0 };
        assert!(operator(&[0x40, 0x01], f, 0, &grow).is_err());
        assert!(operator(&[0x40, 0x00], f, 0, &grow).is_ok());
    }
}
