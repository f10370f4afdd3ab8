//! The load-time verifier: rejects a malformed program before anything runs.

use crate::image::Image;
use crate::isa::{Instr, INSTR_SIZE};

/// Why a program was rejected, and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("code section at {addr:#x} is not 8-byte aligned or its length {len} is not a multiple of 8")]
    Misaligned { addr: u64, len: u64 },
    #[error("code section is empty")]
    EmptyCode,
    #[error("at {offset:#x}: {reason}")]
    BadInstruction { offset: u64, reason: crate::isa::DecodeError },
    #[error("at {offset:#x}: branch target {target:#x} is {why}")]
    BadTarget { offset: u64, target: u64, why: &'static str },
    #[error("entry {entry:#x} is {why}")]
    BadEntry { entry: u64, why: &'static str },
    #[error("sections at {a:#x} and {b:#x} overlap")]
    Overlap { a: u64, b: u64 },
}

fn where_is(addr: u64, start: u64, end: u64) -> Option<&'static str> {
    if addr < start || addr >= end {
        Some("outside the code section")
    } else if !(addr - start).is_multiple_of(INSTR_SIZE) {
        Some("not on an instruction boundary")
    } else {
        None
    }
}

/// Checks every instruction, every direct branch target, the entry and the
/// section layout.
pub fn verify(image: &Image) -> Result<(), VerifyError> {
    let start = image.code.addr;
    let len = image.code.bytes.len() as u64;
    if !start.is_multiple_of(INSTR_SIZE) || !len.is_multiple_of(INSTR_SIZE) {
        return Err(VerifyError::Misaligned { addr: start, len });
    }
    if len == 0 {
        return Err(VerifyError::EmptyCode);
    }
    let end = start.checked_add(len).ok_or(VerifyError::Misaligned { addr: start, len })?;
    for (i, chunk) in image.code.bytes.chunks_exact(8).enumerate() {
        let offset = start + i as u64 * INSTR_SIZE;
        let bytes: [u8; 8] = chunk.try_into().unwrap_or_default();
        let instr = Instr::decode(bytes).map_err(|reason| VerifyError::BadInstruction { offset, reason })?;
        if let Some(target) = instr.target() {
            if let Some(why) = where_is(target, start, end) {
                return Err(VerifyError::BadTarget { offset, target, why });
            }
        }
    }
    if let Some(why) = where_is(image.entry, start, end) {
        return Err(VerifyError::BadEntry { entry: image.entry, why });
    }
    let mut ranges: Vec<(u64, u64)> =
        image.sections().map(|s| (s.addr, s.addr.saturating_add(s.bytes.len() as u64))).collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(VerifyError::Overlap { a: w[0].0, b: w[1].0 });
        }
    }
    // Data may lie in a reserved range (it initialises part of it); code may not.
    for r in &image.reserved {
        let r_end = r.addr.checked_add(r.len).ok_or(VerifyError::Overlap { a: r.addr, b: r.addr })?;
        if r.addr < end && r_end > start {
            return Err(VerifyError::Overlap { a: start, b: r.addr });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Section, CODE_BASE};
    use crate::isa::{DecodeError, Opcode};

    fn image(code: &[Instr]) -> Image {
        let bytes = code.iter().flat_map(Instr::encode).collect();
        Image::new(CODE_BASE, Section { addr: CODE_BASE, bytes }, vec![])
    }

    fn jmp(target: u64) -> Instr {
        Instr::new(Opcode::Jmp, 0, 0, 0, target as i32)
    }

    #[test]
    fn accepts_a_good_program() {
        assert_eq!(verify(&image(&[Instr::new(Opcode::Nop, 0, 0, 0, 0), jmp(CODE_BASE)])), Ok(()));
    }

    #[test]
    fn rejects_each_kind_of_malformed_image() {
        let mut unknown = image(&[jmp(CODE_BASE)]);
        unknown.code.bytes[0] = 0xfe;
        assert!(matches!(
            verify(&unknown),
            Err(VerifyError::BadInstruction { offset: 0x1000, reason: DecodeError::UnknownOpcode(0xfe) })
        ));
        let mut reg = image(&[jmp(CODE_BASE)]);
        reg.code.bytes[1] = 16;
        assert!(matches!(verify(&reg), Err(VerifyError::BadInstruction { reason: DecodeError::BadRegister(16), .. })));
        assert!(matches!(
            verify(&image(&[jmp(CODE_BASE + 8)])),
            Err(VerifyError::BadTarget { why: "outside the code section", .. })
        ));
        assert!(matches!(
            verify(&image(&[jmp(CODE_BASE + 4), jmp(CODE_BASE)])),
            Err(VerifyError::BadTarget { why: "not on an instruction boundary", .. })
        ));
        let mut entry = image(&[jmp(CODE_BASE)]);
        entry.entry = 0x5000;
        assert!(matches!(verify(&entry), Err(VerifyError::BadEntry { .. })));
        let mut odd = image(&[jmp(CODE_BASE)]);
        odd.code.bytes.push(0);
        assert!(matches!(verify(&odd), Err(VerifyError::Misaligned { .. })));
        assert_eq!(verify(&image(&[])), Err(VerifyError::EmptyCode));
        let mut overlap = image(&[jmp(CODE_BASE)]);
        overlap.data.push(Section { addr: CODE_BASE + 4, bytes: vec![1] });
        assert!(matches!(verify(&overlap), Err(VerifyError::Overlap { .. })));
        let mut reserved = image(&[jmp(CODE_BASE)]);
        reserved.reserved.push(crate::image::Reserved { addr: 0, len: CODE_BASE + 1 });
        assert!(matches!(verify(&reserved), Err(VerifyError::Overlap { .. })));
        reserved.reserved[0].len = CODE_BASE;
        reserved.data.push(Section { addr: 0x10, bytes: vec![1] });
        assert_eq!(verify(&reserved), Ok(()));
    }
}
